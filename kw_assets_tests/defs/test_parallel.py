"""Partition work in forked workers: same results as inline, logs kept, failures surfaced, and a
backfill computed by two workers writes exactly what one process writes."""

import gc
import logging
import os
import pickle
import weakref

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest

from kw_assets import parallel
from kw_assets.defs.features import minute_panel
from kw_assets.defs.raw import raw_assets
from kw_assets.defs.resources import MarketDataResource, WarehouseResource
from kw_assets.errors import DataError
from kw_assets.schemas import TableInvalid
from kw_assets.sources.http import ApiError, RetriesExhausted
from kw_assets.warehouse import Warehouse
from kw_assets_tests.conftest import SIM_NOW, local_test_instance

pytestmark = pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(), reason="needs fork")


def squares_with_pids(items):
    logging.getLogger("kw_assets.test").warning("slice %s..%s", items[0], items[-1])
    return [(x * x, os.getpid()) for x in items]


def _in_daemon(send):
    try:
        slices = parallel.start(squares_with_pids, list(range(6)), workers=2).result()
        send.send([v for s in slices for v in s])
    except BaseException as exc:  # noqa: BLE001 - the test reports it
        send.send(repr(exc))


def test_a_daemonic_process_computes_inline_instead_of_failing_to_fork():
    """A Celery prefork child is daemonic and may not have children: the job runs in it, with the same values."""
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_in_daemon, args=(send,), daemon=True)
    proc.start()
    assert recv.poll(30), "the daemonic process sent nothing"
    got = recv.recv()
    proc.join(timeout=30)
    assert isinstance(got, list), got
    assert [v for v, _ in got] == [x * x for x in range(6)]
    assert {pid for _, pid in got} == {proc.pid}


def test_workers_give_the_inline_results_in_order_from_other_processes():
    items = list(range(10))
    seen = []
    slices = parallel.start(squares_with_pids, items, workers=2).result(lambda level, msg: seen.append((level, msg)))
    values = [v for s in slices for v, _ in s]
    assert values == [x * x for x in items]
    pids = {pid for s in slices for _, pid in s}
    assert len(pids) == 2 and os.getpid() not in pids
    # the workers' log records come back to the parent, in slice order
    assert seen == [(logging.WARNING, "slice 0..4"), (logging.WARNING, "slice 5..9")]
    inline = parallel.start(squares_with_pids, items, workers=1).result()
    assert [v for s in inline for v, _ in s] == values and {p for s in inline for _, p in s} == {os.getpid()}


def test_interleaved_items_go_to_the_workers_in_turn_and_come_back_in_order():
    # an expanding window's fits cost more along the list: worker k takes items k, k + 2, ... so each gets half
    out = parallel.map_items(lambda x: (x * x, os.getpid()), range(7), workers=2, interleaved=True)
    assert [v for v, _ in out] == [x * x for x in range(7)]
    pids = [pid for _, pid in out]
    assert pids[0::2] == [pids[0]] * 4 and pids[1::2] == [pids[1]] * 3 and pids[0] != pids[1] != os.getpid()
    plain = parallel.map_items(lambda x: (x * x, os.getpid()), range(7), workers=2)
    assert [v for v, _ in plain] == [v for v, _ in out] and len({p for _, p in plain[:4]}) == 1
    assert parallel.map_items(lambda x: x + 1, range(5), workers=1, interleaved=True) == [1, 2, 3, 4, 5]
    assert parallel.map_items(lambda x: x + 1, [], workers=2, interleaved=True) == []


def boom(items):
    raise ZeroDivisionError("worker blew up on purpose")


def test_a_failing_worker_fails_the_parent_with_its_traceback():
    with pytest.raises(RuntimeError, match="ZeroDivisionError: worker blew up on purpose"):
        parallel.start(boom, [1, 2, 3], workers=2).result()


def test_bad_input_errors_survive_the_trip_from_a_worker():
    errors = [DataError("kalshi_candles", "price.close", "not a number: 'abc'", "ny|2025-06-01"),
              RetriesExhausted("/markets", {"event_ticker": "KXHIGHNY-25JUN01"}, 429, "gave up after 10 attempts"),
              ApiError("/events/X", {}, 404, "not found"),
              TableInvalid("kalshi_trades", pd.DataFrame({"column": ["yes_price"], "check": ["le(1)"]}), "chi|2025-06-02")]
    for exc in errors:
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
    assert pickle.loads(pickle.dumps(errors[0])).field == "price.close"


def test_two_workers_write_what_one_process_writes(tmp_path):
    tags = {"dagster/asset_partition_range_start": "ny|2025-06-01", "dagster/asset_partition_range_end": "chi|2025-06-03"}
    tables = {}
    for workers in (1, 2):
        path = str(tmp_path / f"w{workers}.duckdb")
        with local_test_instance(tmp_path / f"runs{workers}") as instance:
            result = dg.materialize([*raw_assets, minute_panel], instance=instance, tags=tags, resources={
                "market_data": MarketDataResource(simulated_now=SIM_NOW), "warehouse": WarehouseResource(path=path, workers=workers)})
            assert result.success
            meta = result.asset_materializations_for_node("kalshi_markets")[0].metadata
        assert meta["run_requests"].value > 0  # the workers' request counts reach the metadata
        wh = Warehouse(path)
        tables[workers] = {t: wh.read(t).sort_values(["city", "climate_day"], kind="stable").reset_index(drop=True)
                           for t in ("kalshi_markets", "kalshi_candles", "kalshi_trades", "weather_obs", "minute_panel")}
    assert len(Warehouse(str(tmp_path / "w2.duckdb")).partitions("minute_panel")) == 6
    for t, frame in tables[1].items():
        pd.testing.assert_frame_equal(frame, tables[2][t], check_exact=True, obj=t)


FREED_ARRAYS = """
import os, sys
import numpy as np
from kw_assets.parallel import return_large_frees_to_os
def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
if sys.argv[1] == "fixed":
    assert return_large_frees_to_os()
base = rss_mib()
a = np.ones(2 * 2**20); del a  # a 16 MiB array freed: glibc by default then serves 8 MiB ones from its heap
keep = [np.ones(2**20) for _ in range(40)]  # 320 MiB in 8 MiB arrays (a chunk's columns)
last = keep[-1]
del keep  # all freed but the newest
print(round(rss_mib() - base))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/statm") or not parallel.return_large_frees_to_os(), reason="glibc on Linux")
def test_freed_arrays_go_back_to_the_os_once_the_mmap_threshold_is_fixed():
    """What keeps a year's backfill in its memory budget: without the fixed threshold the freed arrays stay
    resident behind the newest one (320 MiB here); with it, they are returned."""
    import subprocess
    import sys
    held = {mode: int(subprocess.run([sys.executable, "-c", FREED_ARRAYS, mode], capture_output=True, text=True,
                                     check=True).stdout) for mode in ("default", "fixed")}
    assert held["default"] >= 250, held  # glibc's own behaviour, which the fix is for
    assert held["fixed"] <= 40, held


CHURN = """
import gc, resource, sys
import numpy as np
from kw_assets import parallel

def churn(items):
    if sys.argv[1] == "returned":  # as the code location's processes: every freed block back to the OS
        parallel.return_large_frees_to_os()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        a = np.ones(3 * 2**17)  # 3 MiB, 768 pages (numpy's huge pages start at 4 MiB)
    del a
    return [(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, gc.get_freeze_count() > 0)]

parallel.return_large_frees_to_os()  # the step's process, as definitions.py sets it
[[(faults, frozen)], _] = parallel.start(churn, [0, 1], workers=2).result()
print(faults, frozen)
"""


# the availability check sets the step process's threshold, as the test above does; the worker's setting is never
# applied to the test process itself
@pytest.mark.skipif(not os.path.exists("/proc/self/statm") or not parallel.return_large_frees_to_os(), reason="glibc on Linux")
def test_a_worker_reuses_the_memory_it_frees_instead_of_faulting_it_in_again():
    """Why a worker keeps its freed memory: each page the OS hands over is a fault the kernel zeroes, and a worker
    that returned every column to the OS spent a third of its CPU time on them (bench/HISTORY.md, session 15)."""
    import subprocess
    import sys
    got = {}
    for mode in ("worker", "returned"):
        out = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True).stdout.split()
        got[mode] = (int(out[0]), out[1] == "True")
    assert got["worker"][0] < 5_000, got  # two arrays' pages, then reused
    assert got["returned"][0] > 30_000, got  # 768 pages, 50 times
    assert got["worker"][1]  # the inherited objects are out of the worker's collections


def test_a_pool_forks_its_workers_once_and_gives_every_slice_back_in_order_with_its_logs():
    """A step sends a chunk every second or so: its workers are forked once, not twice per chunk."""
    seen = []
    with parallel.Pool(squares_with_pids, workers=2) as pool:
        rounds = [pool.submit(list(range(a, a + 6))).result(lambda level, msg: seen.append(msg)) for a in (0, 10, 20)]
        procs = [proc for proc, _ in pool.handles]
    for a, slices in zip((0, 10, 20), rounds):
        assert [v for s in slices for v, _ in s] == [x * x for x in range(a, a + 6)]
    pids = {pid for slices in rounds for s in slices for _, pid in s}
    assert pids == {p.pid for p in procs} and os.getpid() not in pids  # the same two processes every round
    assert seen == ["slice 0..2", "slice 3..5", "slice 10..12", "slice 13..15", "slice 20..22", "slice 23..25"]
    assert not any(p.is_alive() for p in procs)  # closing the pool ends them
    with parallel.Pool(squares_with_pids, workers=1) as inline:
        assert not inline.handles and {pid for _, pid in inline.submit([1, 2]).result()[0]} == {os.getpid()}


def table_of(items) -> pa.Table:
    return pa.table({"x": pa.array([float(i) for i in items] + [None]),
                     "at": pa.array([1_741_503_600_000_000_000 + i for i in items] + [None], pa.timestamp("ns", tz="UTC")),
                     "ticker": pa.array([f"KXHIGHNY-25MAR09-B{i}" for i in items] + [None])})


def arrow_rows(items):
    return parallel.shared(table_of(items))


@pytest.mark.skipif(not os.access(parallel.SHARED_DIR, os.W_OK), reason="needs a writable /dev/shm")
def test_a_workers_arrow_rows_cross_in_shared_memory_the_same_and_leave_nothing_behind():
    """A worker leaves its rows in shared memory; the step maps them (no pipe, no copy) and the file is gone; what a
    failed step never opened is removed when its pool closes. Inline, the table stays a table."""
    mine = lambda: [f for f in os.listdir(parallel.SHARED_DIR) if f.startswith(f"kw_rows_{os.getpid()}_")]  # noqa: E731
    with parallel.Pool(arrow_rows, workers=2) as pool:
        handles = pool.submit(list(range(6))).result()
        assert all(isinstance(h, parallel.SharedTable) for h in handles) and len(mine()) == 2
        assert all(os.stat(h.path).st_mode & 0o777 == 0o600 for h in handles)  # this user's alone
        tables = [parallel.opened(h) for h in handles]
        assert mine() == []  # mapped and unlinked: the memory lives as long as the tables
        assert tables[0].equals(table_of([0, 1, 2])) and tables[1].equals(table_of([3, 4, 5]))
        assert tables[0].column("x").to_pylist() == [0.0, 1.0, 2.0, None]
        assert tables[1].column("ticker").to_pylist() == ["KXHIGHNY-25MAR09-B3", "KXHIGHNY-25MAR09-B4", "KXHIGHNY-25MAR09-B5", None]
        assert str(tables[1].column("at").type) == "timestamp[ns, tz=UTC]" and tables[1].column("at")[0].value == 1_741_503_600_000_000_003
        pool.submit(list(range(4))).result()  # a step that fails before writing: never opened
        assert len(mine()) == 2
    assert mine() == []
    with parallel.Pool(arrow_rows, workers=1) as inline:
        assert isinstance(inline.submit([1, 2]).result()[0], pa.Table)


@pytest.mark.skipif(not os.access(parallel.SHARED_DIR, os.W_OK), reason="needs a writable /dev/shm")
def test_a_worker_sends_its_rows_through_the_pipe_when_shared_memory_has_no_room_for_them(monkeypatch):
    """A container's /dev/shm may be 64 MB: a table that would not fit twice over goes through the pipe, whole."""
    real = os.statvfs
    monkeypatch.setattr(parallel.os, "statvfs", lambda path: os.statvfs_result(
        (*real(path)[:4], 0, *real(path)[5:])) if path == parallel.SHARED_DIR else real(path))  # full
    with parallel.Pool(arrow_rows, workers=2) as pool:
        tables = pool.submit(list(range(6))).result()
    assert all(isinstance(t, pa.Table) for t in tables) and tables[1].equals(table_of([3, 4, 5]))


def blas_threads(items):
    from threadpoolctl import threadpool_info
    return [(max((lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"), default=1),
             pa.cpu_count()) for _ in items]


def test_every_slice_a_pool_worker_runs_has_one_blas_thread_per_worker():
    """Two workers on two cores, each with one BLAS thread per core, oversubscribed them: the simulated
    markets ran 2.7x slower (and Arrow's conversions took 25% more CPU with a thread per core). The limits are
    set once, when the worker starts, and hold for every slice."""
    with parallel.Pool(blas_threads, workers=2) as pool:
        rounds = [pool.submit([0, 1, 2, 3]).result() for _ in range(3)]
    assert all(n == (1, 1) for slices in rounds for s in slices for n in s)


def fails_on_13(items):
    if 13 in items:
        raise ZeroDivisionError("13 on purpose")
    return items


def dies_on_13(items):
    if 13 in items:
        os._exit(3)  # as the kernel's OOM killer would leave it: no answer
    return items


def test_a_pool_reports_a_failing_slice_and_keeps_serving_and_a_dead_worker_fails_the_step_instead_of_hanging():
    with parallel.Pool(fails_on_13, workers=2) as pool:
        with pytest.raises(RuntimeError, match="ZeroDivisionError: 13 on purpose"):
            pool.submit([11, 12, 13, 14]).result()
        assert pool.submit([1, 2, 3, 4]).result() == [[1, 2], [3, 4]]
    with parallel.Pool(dies_on_13, workers=2) as pool:
        with pytest.raises(RuntimeError, match="exited without a result"):
            pool.submit([11, 12, 13, 14]).result()


STEP_LOOP = """
import os, resource
import numpy as np
from kw_assets import parallel

def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

parallel.return_large_frees_to_os()  # the step's process, as definitions.py sets it
with parallel.reusing_freed_memory():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        a = np.ones(3 * 2**17)  # 3 MiB, a chunk's column
    del a
    inside = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
base = rss_mib()
keep = [np.ones(2**20) for _ in range(40)]  # 320 MiB, freed but the newest: back to the OS again
last = keep[-1]
del keep
print(inside, round(rss_mib() - base))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/statm") or not parallel.return_large_frees_to_os(), reason="glibc on Linux")
def test_a_steps_loop_reuses_what_it_frees_and_gives_memory_back_to_the_os_once_it_ends():
    import subprocess
    import sys
    inside, held = map(int, subprocess.run([sys.executable, "-c", STEP_LOOP], capture_output=True, text=True,
                                           check=True).stdout.split())
    assert inside < 5_000, inside  # 768 pages, then reused (38,000 faults when each array is a fresh mapping)
    assert held <= 40, held


class _Node:
    def __init__(self):
        self.other = None


def _cycle() -> "weakref.ref":
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_a_steps_full_collections_skip_the_objects_it_began_with_and_find_their_garbage_once_it_ends():
    gc.collect()
    old_a, old_b = _Node(), _Node()
    old_a.other, old_b.other = old_b, old_a
    old = weakref.ref(old_a)
    assert gc.get_freeze_count() == 0
    with parallel.collecting_only_new_objects():
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # the process's objects, old_a and old_b among them
        with parallel.collecting_only_new_objects():  # a nested block (a step's loop in its asset) changes nothing
            pass
        assert gc.get_freeze_count() == frozen
        del old_a, old_b  # a cycle of objects that were alive when the block began
        new = _cycle()  # one made inside
        gc.collect()
        assert new() is None  # collected as before
        assert old() is not None  # left alone: a full pass did not walk the frozen objects
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert old() is None  # handed back to the collector at the end


def test_a_steps_frozen_heap_is_handed_back_even_when_the_step_fails():
    with pytest.raises(RuntimeError):
        with parallel.collecting_only_new_objects():
            raise RuntimeError("the step failed")
    assert gc.get_freeze_count() == 0
