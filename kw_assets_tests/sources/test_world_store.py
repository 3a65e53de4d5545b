import datetime as dt
import os
import time

import numpy as np

from kw_assets.cities import get_city
from kw_assets.sources.simulator.exchange import SimulatedExchange
from kw_assets.sources.simulator.world import Agents, build_world
from kw_assets.sources.simulator.world_store import KEEP_HOURS, WorldStore

DAY = dt.date(2025, 6, 10)


def test_a_stored_world_is_the_world_and_is_built_once(tmp_path, monkeypatch):
    store = WorldStore(tmp_path)
    first = store.world(get_city("ny"), DAY, 7, Agents())
    assert len(list(tmp_path.glob("*.pkl"))) == 1
    import kw_assets.sources.simulator.world_store as ws
    monkeypatch.setattr(ws, "build_world", lambda *a: (_ for _ in ()).throw(AssertionError("rebuilt")))
    again = WorldStore(tmp_path).world(get_city("ny"), DAY, 7, Agents())  # another step of the run
    assert np.array_equal(again.bid, first.bid) and np.array_equal(again.trade_ts, first.trade_ts)
    assert again.official_high == build_world(get_city("ny"), DAY, 7, Agents()).official_high


def test_other_agents_or_seeds_get_their_own_world(tmp_path):
    store = WorldStore(tmp_path)
    a = store.world(get_city("ny"), DAY, 7, Agents())
    b = store.world(get_city("ny"), DAY, 7, Agents(obs_delay_min=360))
    store.world(get_city("ny"), DAY, 8, Agents())
    assert len(list(tmp_path.glob("*.pkl"))) == 3
    assert not np.array_equal(a.bid, b.bid)


def test_an_exchange_with_a_store_serves_the_same_json(tmp_path):
    now = lambda: dt.datetime(2025, 6, 12, tzinfo=dt.timezone.utc)  # noqa: E731
    plain, stored = SimulatedExchange(now=now), SimulatedExchange(now=now, store=WorldStore(tmp_path))
    q = {"series_ticker": "KXHIGHNY"}
    assert plain.event({}, "KXHIGHNY-25JUN10") == stored.event({}, "KXHIGHNY-25JUN10")
    assert plain.events(q) == stored.events(q)


def test_a_run_folder_sweeps_away_old_runs(tmp_path):
    old = tmp_path / "old-run"
    old.mkdir()
    stale = time.time() - (KEEP_HOURS + 1) * 3600
    os.utime(old, (stale, stale))
    store = WorldStore.for_run("new-run", root=tmp_path)
    assert store.folder == tmp_path / "new-run" and store.folder.is_dir() and not old.exists()


def test_a_root_others_can_write_to_is_refused(tmp_path):
    import pytest
    root = tmp_path / "shared"
    root.mkdir(mode=0o777)
    os.chmod(root, 0o777)
    with pytest.raises(PermissionError, match="0700"):
        WorldStore.for_run("run", root=root)
