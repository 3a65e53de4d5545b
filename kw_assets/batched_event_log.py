"""The local instance's event log: Dagster's SQLite storage, writing a batch of asset events in one
transaction per database instead of two to four connections and commits per event.

A step that materializes a range of partitions reports one materialization per partition: a year x 7
cities is 2,555 events per asset, ~36,000 for the graph. Dagster's ``SqliteEventLogStorage`` stores each
with a fresh engine and a commit to the run's database and another to the index (~8-11 ms each, most of
it opening connections and syncing the file): about 8 minutes of a year's run. Dagster hands a step's
partition events over as one batch when ``DAGSTER_EVENT_BATCH_SIZE`` is set (importing this module sets a
default), and this storage writes that batch with one connection per database. What is stored is what
the stock storage stores, row for row (a test compares them); everything else is the stock storage.

Configured in ``dagster.local.yaml`` as the ``event_log_storage``; its files are where Dagster's default
SQLite storage keeps them (``$DAGSTER_HOME/history/runs``) unless ``base_dir`` says otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import dagster as dg

from dagster._core.events import ASSET_EVENTS, DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable

BATCH_SIZE_VARIABLE = "DAGSTER_EVENT_BATCH_SIZE"
DEFAULT_BATCH_SIZE = "1000"
os.environ.setdefault(BATCH_SIZE_VARIABLE, DEFAULT_BATCH_SIZE)

# what a ranged run reports per partition: planned at its start, materialized at the step's end; all of
# them asset events, which the stock store_event mirrors in the index as this storage does
_BATCHED = {DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_OBSERVATION,
            DagsterEventType.ASSET_MATERIALIZATION_PLANNED}
if not _BATCHED <= ASSET_EVENTS:
    raise ImportError("this Dagster stores some of these events differently: use its own SqliteEventLogStorage")


class BatchedSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` whose ``store_event_batch`` uses one transaction per database."""

    @classmethod
    def config_type(cls):
        return {"base_dir": dg.Field(dg.StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data, config_value):  # ty: ignore[invalid-method-override]
        base_dir = config_value.get("base_dir")
        if not base_dir:
            if not os.environ.get("DAGSTER_HOME"):
                raise ValueError("BatchedSqliteEventLogStorage: set base_dir in its config, or DAGSTER_HOME")
            base_dir = os.path.join(os.environ["DAGSTER_HOME"], "history", "runs")
        return cls(base_dir=base_dir, inst_data=inst_data)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        runs = {e.run_id for e in events}
        if len(events) < 2 or len(runs) != 1 or not all(
                e.is_dagster_event and e.dagster_event_type in _BATCHED and e.get_dagster_event().asset_key
                for e in events):
            super().store_event_batch(events)  # one by one, as the stock storage does
            return
        rows = [self._event_to_row(e) for e in events]
        insert = SqlEventLogStorageTable.insert()  # rows as parameters: the statement compiles once
        with self.run_connection(runs.pop()) as conn:
            conn.execute(insert, rows)
        with self.index_transaction() as conn:
            # one by one: each event's id in the index is needed for its tags
            ids = [int(conn.execute(insert, row).inserted_primary_key[0]) for row in rows]
            self._store_asset_event_tags(conn, list(events), ids)
            # the asset's row keeps the latest event of each kind: applying only those, in order, leaves it
            # as applying every event would
            last = {(e.get_dagster_event().asset_key, e.dagster_event_type): i for i, e in enumerate(events)}
            for i in sorted(last.values()):
                self._store_asset_event(conn, events[i], ids[i])
