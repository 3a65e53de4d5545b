"""Simulated worlds built once per run: the markets, candles and trades steps (and their forked workers)
each need a city-day's whole world (~50 ms to build, ~1 ms to load), so the first to build it leaves a
pickle in the run's folder for the others. The folder belongs to one run (``for_run``) and folders of
runs older than ``KEEP_HOURS`` are removed when a run starts, so no world outlives the code that built it
by more than that."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import pickle
import shutil
import tempfile
import time
from dataclasses import astuple
from pathlib import Path

from kw_assets.cities import City
from kw_assets.sources.simulator.world import Agents, World, build_world

ROOT = Path(tempfile.gettempdir()) / f"kw_simulated_worlds-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
KEEP_HOURS = 12


class WorldStore:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    @classmethod
    def for_run(cls, run_id: str, root: Path = ROOT) -> "WorldStore":
        """The run's folder, after removing those of runs started more than ``KEEP_HOURS`` ago. The root is
        private to this user (mode 0700, owned by us): its pickles are loaded, so no one else may write there."""
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if hasattr(os, "getuid") and (root.stat().st_uid != os.getuid() or root.stat().st_mode & 0o077):
            raise PermissionError(f"{root} must be owned by this user with mode 0700: it holds pickles this run loads")
        horizon = time.time() - KEEP_HOURS * 3600
        for old in root.iterdir():
            if old.is_dir() and old.stat().st_mtime < horizon:
                shutil.rmtree(old, ignore_errors=True)
        folder = root / run_id
        folder.mkdir(exist_ok=True)
        return cls(folder)

    def world(self, city: City, day: dt.date, seed: int, agents: Agents) -> World:
        tag = hashlib.sha1(repr(astuple(agents)).encode()).hexdigest()[:10]
        path = self.folder / f"{city.key}-{day.isoformat()}-{seed}-{tag}.pkl"
        try:
            with open(path, "rb") as f:
                return pickle.load(f)
        except (FileNotFoundError, EOFError, pickle.UnpicklingError):
            pass
        w = build_world(city, day, seed, agents)
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        with open(partial, "wb") as f:
            pickle.dump(w, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(partial, path)  # readers see the whole pickle or none
        return w
