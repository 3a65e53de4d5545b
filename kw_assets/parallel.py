"""Partition work in forked worker processes, so a backfill uses every core while only the step's own
process opens the DuckDB file (reads and writes stay in the parent).

A job is a function and a list of items. The parent forks one process per slice of items; each child
inherits the job (inputs already in memory, copy-on-write), runs it, and sends back its results and the
log records of the project's loggers, which the parent re-emits in order. A child never writes to the
Dagster instance or to the warehouse. Where fork is unavailable, for a single item, or in a daemonic process
(a Celery prefork pool's child, which may not have children: run Celery workers with ``--pool=solo``), the job
runs inline.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import multiprocessing as mp
import os
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from threadpoolctl import threadpool_limits

LOGGER = "kw_assets"


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def return_large_frees_to_os(threshold: int = 128 * 1024) -> bool:
    """Have glibc serve every allocation of ``threshold`` bytes or more (a column, a block of a frame) by its
    own mmap, returned to the OS when freed. By default glibc raises that threshold after each such free (up
    to 32 MiB), and the arrays of a long backfill then come from the heap, whose freed holes the process keeps:
    setting it fixes it. The year x 7 backfill's memory depends on it (README, Benchmarks). False where there
    is no glibc (nothing changes)."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False


def keep_freed_memory(threshold: int = 32 * 1024 * 1024) -> bool:
    """For a short-lived worker: serve allocations below ``threshold`` from the heap and keep what is freed, so
    the next frame reuses those pages. Each page a process gets from the OS costs a fault the kernel zeroes;
    with every column in its own mapping, returned when freed, a worker faulted in ~450 MB for a chunk of
    16 calibrated partitions, and the faults were a third of its CPU time. The worker's memory goes back at
    its exit. False where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2 * threshold))
    except (OSError, AttributeError):
        return False


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
    gc.freeze()  # the inherited objects: a collection here would write to each one's page, copying them all
    keep_freed_memory()
    logger = logging.getLogger(LOGGER)
    buffer = _Records()
    logger.handlers, logger.propagate = [buffer], False  # the parent's handlers write to the instance: not here
    try:
        # one BLAS thread per worker: with the BLAS default (one per core) the workers oversubscribed the
        # cores and the simulated markets ran 2.7x slower
        with threadpool_limits(limits=1):
            payload = ("ok", job(items), buffer.records)
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        payload = ("error", traceback.format_exc(), buffer.records)
    try:
        conn.send(payload)
    finally:
        conn.close()
        os._exit(0)


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
            status, value, records = conn.recv()
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


def start(job: Callable[[Sequence[Any]], list], items: Sequence[Any], workers: int) -> Pending:
    """Run ``job`` over contiguous slices of ``items`` in up to ``workers`` forked processes;
    ``Pending.result()`` gives ``job``'s value for each slice, in order."""
    if workers <= 1 or len(items) < 2 or "fork" not in mp.get_all_start_methods() or mp.current_process().daemon:
        return Pending(inline=[job(items)])
    ctx = mp.get_context("fork")
    n = min(workers, len(items))
    bounds = [round(i * len(items) / n) for i in range(n + 1)]
    pending = Pending()
    for a, b in zip(bounds[:-1], bounds[1:]):
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(job, items[a:b], send), daemon=True)
        proc.start()
        send.close()
        pending.handles.append((proc, recv))
    return pending


def map_items(fn: Callable[[Any], Any], items: Sequence[Any], workers: int | None = None) -> list:
    """``[fn(x) for x in items]`` computed in ``workers`` forked processes (default one per core), in order."""
    slices = start(lambda part: [fn(x) for x in part], list(items), workers or default_workers()).result()
    return [value for part in slices for value in part]
