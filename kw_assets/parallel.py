"""Partition work in forked worker processes, so a backfill uses every core while only the step's own
process opens the DuckDB file (reads and writes stay in the parent).

A job is a function and a list of items. ``start`` forks one process per slice of items; each child
inherits the job (inputs already in memory, copy-on-write), runs it, and sends back its results and the
log records of the project's loggers, which the parent re-emits in order. A ``Pool`` forks its workers once,
for a step's many chunks: they inherit the job and receive each chunk's items through a pipe. A child never
writes to the Dagster instance or to the warehouse. Where fork is unavailable, for a single item, or in a daemonic process
(a Celery prefork pool's child, which may not have children: run Celery workers with ``--pool=solo``), the job
runs inline.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import glob
import itertools
import logging
import multiprocessing as mp
import os
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import pyarrow as pa
from threadpoolctl import threadpool_limits

LOGGER = "kw_assets"


_MALLOPT = {"trim_threshold": -1, "mmap_threshold": -3}  # glibc's mallopt parameters (M_TRIM_THRESHOLD, ...)


def _mallopt(**settings: int) -> bool:
    try:
        libc = ctypes.CDLL("libc.so.6")
        return all(bool(libc.mallopt(_MALLOPT[name], value)) for name, value in settings.items())
    except (OSError, AttributeError, KeyError):
        return False


def return_large_frees_to_os(threshold: int = 128 * 1024) -> bool:
    """Have glibc serve every allocation of ``threshold`` bytes or more (a column, a block of a frame) by its
    own mmap, returned to the OS when freed, and trim the heap's free top beyond it. By default glibc raises
    that threshold after each such free (up to 32 MiB), and the arrays of a long backfill then come from the
    heap, whose freed holes the process keeps: setting it fixes it. The year x 7 backfill's memory depends on
    it (bench/HISTORY.md, session 12). False where there is no glibc (nothing changes)."""
    return _mallopt(mmap_threshold=threshold, trim_threshold=threshold)


def keep_freed_memory(threshold: int = 32 * 1024 * 1024) -> bool:
    """Serve allocations below ``threshold`` from the heap and keep what is freed, so the next frame reuses
    those pages. Each page a process gets from the OS costs a fault the kernel zeroes; with every column in
    its own mapping, returned when freed, a worker faulted in ~450 MB for a chunk of 16 calibrated
    partitions, and the faults were a third of its CPU time. A worker's memory goes back at its exit; a
    step's, at the end of ``reusing_freed_memory``. False where there is no glibc."""
    return _mallopt(mmap_threshold=threshold, trim_threshold=2 * threshold)


@contextlib.contextmanager
def reusing_freed_memory() -> Iterator[bool]:
    """A step's partition loop keeps the memory it frees (``keep_freed_memory``), then hands back what it
    holds free and returns to ``return_large_frees_to_os``. The loop reads, hands over and writes a chunk
    every second or so: with each column in a fresh mapping, a third of its process's time went to the
    kernel's page faults."""
    kept = keep_freed_memory()
    try:
        yield kept
    finally:
        if kept:
            return_large_frees_to_os()
            give_back_free_memory()


_frozen_depth = 0


@contextlib.contextmanager
def collecting_only_new_objects() -> Iterator[None]:
    """Inside the block, Python's garbage collector leaves alone every object that was alive when it began
    (``gc.freeze``; ``gc.unfreeze`` at the end, outermost block only). A step's process holds Dagster's, the
    libraries' and the run's objects, and each full collection walked all of them: ~0.2 s a pass in a 30-day run's
    process, ~0.5 s late in a year's (23 passes and 12.3 s in the year's, its imports and its end included). Objects
    made inside are collected as before; a cycle among older objects that dies inside waits for the block's end."""
    global _frozen_depth
    if _frozen_depth == 0:
        gc.freeze()
    _frozen_depth += 1
    try:
        yield
    finally:
        _frozen_depth -= 1
        if _frozen_depth == 0:
            gc.unfreeze()


def give_back_free_memory() -> None:
    """Return the heap's free pages to the OS (glibc's ``malloc_trim``; nothing elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def default_workers() -> int:
    """``KW_WORKERS`` if set, else one per core."""
    return max(1, int(os.environ.get("KW_WORKERS") or os.cpu_count() or 1))


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelno, record.getMessage()))


def _child(job: Callable[[Any], Any], items: Sequence[Any], conn) -> None:
    buffer = _worker_setup()
    try:
        conn.send(_run(job, items, buffer))
    finally:
        conn.close()
        os._exit(0)


def _worker_setup() -> "_Records":
    global _in_worker
    _in_worker = True
    gc.freeze()  # the inherited objects: a collection here would write to each one's page, copying them all
    keep_freed_memory()
    logger = logging.getLogger(LOGGER)
    buffer = _Records()
    logger.handlers, logger.propagate = [buffer], False  # the parent's handlers write to the instance: not here
    # one BLAS thread per worker, for the worker's life: with the BLAS default (one per core) the workers
    # oversubscribed the cores and the simulated markets ran 2.7x slower. Set once: each setting first finds
    # the process's libraries, ~25 ms, which per chunk was 1.5% of a run's CPU
    threadpool_limits(limits=1)
    # Arrow's own pool likewise: a worker's from_pandas / to_pandas of a chunk's frames ran a thread per core
    # beside the other worker (two such processes at once: 25% more CPU than with one thread each)
    pa.set_cpu_count(1)
    return buffer


def _run(job: Callable[[Any], Any], items: Sequence[Any], buffer: "_Records") -> tuple:
    buffer.records = []
    try:
        return ("ok", job(items), buffer.records)
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        return ("error", traceback.format_exc(), buffer.records)


def _serve(job: Callable[[Any], Any], conn) -> None:
    """A pool worker: run ``job`` on each slice received until told to stop (None) or the parent is gone."""
    buffer = _worker_setup()
    try:
        while True:
            try:
                items = conn.recv()
            except (EOFError, OSError):
                break
            if items is None:
                break
            conn.send(_run(job, items, buffer))
    finally:
        conn.close()
        os._exit(0)


SHARED_DIR = "/dev/shm"  # tmpfs: a file there is memory the parent maps, never a disk write
_in_worker = False
_shared_count = itertools.count()


@dataclass(frozen=True)
class SharedTable:
    """An Arrow table a worker left in shared memory for its parent (``shared``): the parent maps it and
    reads it in place (``opened``), where a pipe made the worker pickle its buffers and write them in 64 KiB
    pieces, each a wake-up of the parent, which copied them again (a 25 MB batch: ~160 ms of CPU through a
    pipe, ~55 ms mapped, DuckDB's insert included)."""

    path: str

    def open(self) -> pa.Table:
        table = pa.ipc.open_file(pa.memory_map(self.path)).read_all()
        os.unlink(self.path)  # the mapping outlives the name: the memory goes when the table does
        return table


def _shared_prefix(parent_pid: int) -> str:
    return os.path.join(SHARED_DIR, f"kw_rows_{parent_pid}_")


def shared(table: pa.Table) -> pa.Table | SharedTable:
    """``table`` as a ``SharedTable`` when this is a forked worker and shared memory is writable with room for it
    twice over; else itself (inline work, no /dev/shm, or a small one: it is pickled through the pipe as before)."""
    if not _in_worker:
        return table
    return _left_shared(table, os.getppid())


SHARED_MIN_BYTES = 1 << 18  # a table smaller than this goes through the pipe: a file costs more than pickling it


def shared_with_workers(table: pa.Table, pool: "Pool") -> pa.Table | SharedTable:
    """``shared`` the other way: a table the step's process leaves for one of ``pool``'s workers, which maps it
    (``opened``) instead of unpickling a copy. Itself when the pool has no processes or the table is small. Named
    like the workers' own, so the pool's ``close`` removes any a worker never opened."""
    if not pool.handles or table.nbytes < SHARED_MIN_BYTES:
        return table
    return _left_shared(table, os.getpid())


def _left_shared(table: pa.Table, parent_pid: int) -> pa.Table | SharedTable:
    if not os.access(SHARED_DIR, os.W_OK):
        return table
    room = os.statvfs(SHARED_DIR)
    if room.f_bavail * room.f_frsize < 2 * table.nbytes:  # e.g. a container's 64 MB /dev/shm: leave it to others
        return table
    path = f"{_shared_prefix(parent_pid)}{os.getpid()}_{next(_shared_count)}.arrow"
    try:  # a new file of this user's alone: /dev/shm is everyone's, and a name found there is nobody's to trust
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError:
        return table
    try:
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    except OSError:  # e.g. the tmpfs is full
        with contextlib.suppress(OSError):
            os.unlink(path)
        return table
    return SharedTable(path)


def opened(value: pa.Table | SharedTable | None) -> pa.Table | None:
    """What ``shared`` gave, as a table (mapped, not copied, if it was left in shared memory)."""
    return value.open() if isinstance(value, SharedTable) else value


def remove_unopened_shared() -> None:
    """Delete the shared tables this process's workers left and it never opened, and those it left for them that
    they never opened (a step that failed part way)."""
    for path in glob.glob(_shared_prefix(os.getpid()) + "*"):
        with contextlib.suppress(OSError):
            os.unlink(path)


@dataclass
class Pending:
    """Results of a job started in workers (or already computed inline)."""

    handles: list = field(default_factory=list)
    inline: list | None = None

    def result(self, log: Callable[[int, str], None] | None = None) -> list:
        """One value per slice, in order (log records of workers are passed to ``log`` first)."""
        if self.inline is not None:
            return self.inline
        out: list = []
        errors = []
        for proc, conn in self.handles:
            try:
                status, value, records = conn.recv()
            except EOFError:  # the worker died without answering (killed, out of memory)
                raise RuntimeError("a partition worker exited without a result (killed?)") from None
            if proc is not None:  # a process of its own, not a pool's worker
                conn.close()
                proc.join()
            for level, message in records:
                if log:
                    log(level, message)
            if status == "ok":
                out.append(value)
            else:
                errors.append(value)
        if errors:
            raise RuntimeError("a partition worker failed:\n" + errors[0])
        return out


def _forkable(workers: int) -> bool:
    return workers > 1 and "fork" in mp.get_all_start_methods() and not mp.current_process().daemon


def slice_bounds(n_items: int, workers: int) -> list[tuple[int, int]]:
    """[start, end) of up to ``workers`` consecutive slices of ``n_items``, as even as they come."""
    n = min(workers, n_items)
    cuts = [round(i * n_items / n) for i in range(n + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


class Pool:
    """Workers forked once, when the pool opens: each inherits ``job`` and what it refers to, then runs it on
    every slice ``submit`` sends it. A step with a chunk of partitions every few seconds forked two processes
    per chunk before; each fork made every page the step's process then wrote (DuckDB's buffers, its frames)
    a copy-on-write fault, and the step's own process, which reads and writes, is what a backfill waits for.
    Inline (no processes) where ``start`` would be. ``submit`` only after the previous ``Pending`` is read:
    a worker answers before it reads its next slice."""

    def __init__(self, job: Callable[[Sequence[Any]], Any], workers: int):
        self.job, self.handles = job, []
        if _forkable(workers):
            give_back_free_memory()  # free pages a worker inherits become its own copies once this process reuses them
            ctx = mp.get_context("fork")
            try:
                for _ in range(workers):
                    here, there = ctx.Pipe(duplex=True)
                    proc = ctx.Process(target=_serve, args=(job, there), daemon=True)
                    proc.start()
                    there.close()
                    self.handles.append((proc, here))
            except BaseException:  # e.g. no memory for the second fork: the first must not wait for work forever
                self.close()
                raise

    def submit(self, items: Sequence[Any]) -> Pending:
        """Contiguous slices of ``items``, one per worker; ``Pending.result()`` gives ``job``'s value for each."""
        if not self.handles or len(items) < 2:
            return Pending(inline=[self.job(items)])
        pending = Pending()
        for (a, b), (_, conn) in zip(slice_bounds(len(items), len(self.handles)), self.handles):
            conn.send(list(items[a:b]))
            pending.handles.append((None, conn))
        return pending

    def close(self) -> None:
        for _, conn in self.handles:
            try:
                conn.send(None)
            except OSError:
                pass
            conn.close()
        for proc, _ in self.handles:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
        if self.handles:
            remove_unopened_shared()
        self.handles = []

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start(job: Callable[[Sequence[Any]], list], items: Sequence[Any], workers: int) -> Pending:
    """Run ``job`` over contiguous slices of ``items`` in up to ``workers`` forked processes;
    ``Pending.result()`` gives ``job``'s value for each slice, in order."""
    if len(items) < 2 or not _forkable(workers):
        return Pending(inline=[job(items)])
    ctx = mp.get_context("fork")
    pending = Pending()
    for a, b in slice_bounds(len(items), workers):
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(job, items[a:b], send), daemon=True)
        proc.start()
        send.close()
        pending.handles.append((proc, recv))
    return pending


def map_items(fn: Callable[[Any], Any], items: Sequence[Any], workers: int | None = None,
              interleaved: bool = False) -> list:
    """``[fn(x) for x in items]`` computed in ``workers`` forked processes (default one per core), in order.
    ``interleaved``: worker k of n takes items k, k + n, ... instead of a consecutive slice, for items whose cost
    grows along the list (walk-forward fits on an expanding window: in halves, the second worker did ~3/4 of it)."""
    items = list(items)
    n = max(1, min(workers or default_workers(), len(items)))
    if not interleaved or n < 2:
        slices = start(lambda part: [fn(x) for x in part], items, n).result()
        return [value for part in slices for value in part]
    strided = [items[k::n] for k in range(n)]  # one slice each: start's slices of n lists are the lists themselves
    parts = start(lambda part: [[fn(x) for x in own] for own in part], strided, n).result()
    out: list = [None] * len(items)
    for k, values in enumerate(value for part in parts for value in part):
        out[k::n] = values
    return out
