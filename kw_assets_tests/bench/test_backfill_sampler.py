"""The backfill bench's memory sampler: the peak it reports is a PSS sum it read, and it skips the costly PSS read
only when the RSS summed (an upper bound) could not beat the peak."""

import importlib.util
import os
import time
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "backfill.py"


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="Linux /proc")
def test_the_sampler_reports_a_peak_it_read_and_skips_reads_that_could_not_beat_it():
    spec = importlib.util.spec_from_file_location("backfill_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    sampler = bench.PssSampler(every_s=0.05)
    before = sampler._pss_kib(os.getpid())
    sampler.start()
    block = np.ones(300 * 2**20 // 8)  # 300 MiB touched
    time.sleep(0.6)
    del block
    time.sleep(0.6)  # smaller now: the RSS bound is below the peak, nothing to read
    sampler.stop()
    assert sampler.peak >= before + 290 * 1024
    assert sampler.peak <= before + 400 * 1024  # this process's PSS: the block, not counted twice
    assert sampler.reads >= 1 and sampler.skipped >= 5
