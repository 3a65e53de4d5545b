"""The local instance's batched event log stores what Dagster's own SQLite event log stores, without a
connection and a commit per partition."""

import os
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import DagsterEventType
from dagster._core.storage.event_log import SqliteEventLogStorage

from kw_assets.batched_event_log import BatchedSqliteEventLogStorage
from kw_assets.partitions import city_day_partitions, partition_key

REPO = Path(__file__).resolve().parents[1]
CITIES, DAYS = ("ny", "chi", "mia"), ("2025-06-01", "2025-06-04")
KEYS = sorted(k for k in city_day_partitions.get_partition_keys() if k.split("|")[0] in CITIES
              and DAYS[0] <= k.split("|")[1] <= DAYS[1])


@dg.asset(partitions_def=city_day_partitions, backfill_policy=dg.BackfillPolicy.single_run())
def bracket_rows(context: dg.AssetExecutionContext):
    for k in context.partition_keys:
        context.add_asset_metadata({"dagster/row_count": len(k), "city": k.split("|")[0]}, partition_key=k)
    return dg.MaterializeResult(metadata={"step": "whole range"}, tags={"kind": "test"})


def _range_tags(first_city, last_city):
    return {"dagster/asset_partition_range_start": partition_key(first_city, DAYS[0]),
            "dagster/asset_partition_range_end": partition_key(last_city, DAYS[1])}


def _stored(instance: dg.DagsterInstance, run_ids: list[str]) -> dict:
    """Everything a user or the UI reads back about the asset and its runs, without ids and clocks."""
    key = dg.AssetKey("bracket_rows")
    materializations = instance.fetch_materializations(key, limit=1000).records
    planned = instance.fetch_planned_materializations(key, limit=1000).records
    record = instance.get_asset_records([key])[0].asset_entry
    return {
        "materialized": sorted(instance.get_materialized_partitions(key)),
        "latest_by_partition": sorted((r.partition_key, r.run_id == run_ids[-1],
                                       {k: v.value for k, v in r.asset_materialization.metadata.items()})
                                      for r in materializations if r.storage_id in set(
                                          instance.get_latest_storage_id_by_partition(
                                              key, DagsterEventType.ASSET_MATERIALIZATION).values())),
        "materializations": len(materializations),
        "planned": sorted(str(r.event_log_entry.dagster_event.event_specific_data.partition) for r in planned),
        "tags": sorted(tuple(sorted((k, v) for k, v in t.items() if k != "dagster/data_version"))  # a hash of the run
                       for t in instance.get_event_tags_for_asset(key)),
        "last_run": record.last_run_id == run_ids[-1],
        "last_partition": record.last_materialization_record.partition_key,
        "run_events": [[e.dagster_event_type for e in instance.all_logs(r) if e.is_dagster_event] for r in run_ids],
    }


def _materialize_twice(instance) -> list[str]:
    """A range run over all cities, then a rerun of one city: the second updates the asset's stored row."""
    first = dg.materialize([bracket_rows], instance=instance, tags=_range_tags("ny", "mia"))
    again = dg.materialize([bracket_rows], instance=instance, tags=_range_tags("chi", "chi"))
    assert first.success and again.success
    return [first.run_id, again.run_id]


@pytest.mark.parametrize("planned_per_partition", [True, False])
def test_batched_log_stores_what_the_stock_log_stores(tmp_path, monkeypatch, planned_per_partition):
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "5")  # batches end mid-range, and at the range's end
    monkeypatch.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "false" if planned_per_partition else "true")
    calls = {"one_by_one": 0}
    stock_store = SqliteEventLogStorage.store_event

    def counted(self, event):
        calls["one_by_one"] += 1
        return stock_store(self, event)

    monkeypatch.setattr(SqliteEventLogStorage, "store_event", counted)
    results = {}
    for name in ("stock", "batched"):
        home = tmp_path / name
        home.mkdir()
        overrides = {} if name == "stock" else {"event_log_storage": {
            "module": "kw_assets.batched_event_log", "class": "BatchedSqliteEventLogStorage",
            "config": {"base_dir": str(home / "history" / "runs")}}}
        calls["one_by_one"] = 0
        with dg.instance_for_test(temp_dir=str(home), overrides=overrides) as instance:
            assert isinstance(instance.event_log_storage, BatchedSqliteEventLogStorage) == (name == "batched")
            results[name] = (_stored(instance, _materialize_twice(instance)), calls["one_by_one"])
    (stock, stock_calls), (batched, batched_calls) = results["stock"], results["batched"]
    assert stock["materialized"] == KEYS and stock["materializations"] == len(KEYS) + 4
    assert batched == stock
    per_partition = (len(KEYS) + 4) * (2 if planned_per_partition else 1)
    assert stock_calls >= per_partition  # the stock log writes every partition's events one by one ...
    assert batched_calls <= stock_calls - per_partition  # ... the batched one none of them


def test_local_instance_uses_the_batched_log_in_dagster_home(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.local.yaml").read_text())
    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, BatchedSqliteEventLogStorage)
        assert Path(storage._base_dir) == tmp_path / "history" / "runs"  # where the stock storage keeps them
        assert int(os.environ["DAGSTER_EVENT_BATCH_SIZE"]) >= 100
