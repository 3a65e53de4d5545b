"""Rotated Parquet segments of recorded WebSocket messages: ``<root>/<city>/<climate_day>/<segment>.parquet``.

A segment holds the messages of one city's climate day (the day of the event a market belongs to) in the
order they were received, with their receive times. It is written whole when it closes (every
``max_minutes`` of the recorder's clock or ``max_messages`` rows): to a hidden temporary name, flushed to
disk, then renamed, so a reader sees whole segments or none, and a ``kill -9`` loses at most the segments
still open. Segment names sort in recording order.

Rows that are not market data mark what the recorder knew: ``gap`` (the book is unknown from here until the
next snapshot of each market: a disconnect, a skipped ``seq``, a buffer overflow, a start or a stop) and
``heartbeat`` (the recorder was alive and connected at this time).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SEGMENT_SCHEMA = pa.schema([
    ("recv_ns", pa.int64()),  # wall clock, ns
    ("clock_ms", pa.int64()),  # the recorder's clock (the exchange's time; the wall clock when live), ms
    ("connection", pa.int32()),  # the recorder's connection number
    ("kind", pa.string()),  # the message type, or gap / heartbeat
    ("sid", pa.int64()),
    ("seq", pa.int64()),
    ("market_ticker", pa.string()),
    ("side", pa.string()),
    ("price_cents", pa.int16()),
    ("quantity", pa.float64()),  # delta_fp of a delta, count_fp of a trade
    ("ts_ms", pa.int64()),  # the exchange's stamp, where the message has one
    ("raw", pa.string()),  # the message as received (for a gap: its reason)
])
COLUMNS = SEGMENT_SCHEMA.names
NULL_INT = -1


@dataclass
class _Open:
    name: str
    opened_clock_ms: int
    rows: dict[str, list] = field(default_factory=lambda: {c: [] for c in COLUMNS})

    def __len__(self) -> int:
        return len(self.rows["recv_ns"])


def day_folder(root: Path, city: str, day: dt.date) -> Path:
    return Path(root) / city / day.isoformat()


Key = tuple[str, dt.date]  # (city key, climate day)


class SegmentWriter:
    def __init__(self, root: str | Path, max_minutes: float = 15.0, max_messages: int = 50_000):
        self.root = Path(root)
        self.max_ms, self.max_messages = max_minutes * 60_000, max_messages
        self._open: dict[Key, _Open] = {}
        self._counter = 0
        self.closed = 0
        self.rows_written = 0

    def add(self, key: Key, row: dict) -> None:
        seg = self._open.get(key)
        if seg is None:
            self._counter += 1
            stamp = dt.datetime.fromtimestamp(row["recv_ns"] / 1e9, dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
            seg = self._open[key] = _Open(f"{stamp}-{os.getpid()}-{self._counter:06d}", row["clock_ms"])
        for c in COLUMNS:
            seg.rows[c].append(row.get(c))
        if len(seg) >= self.max_messages:
            self.close(key)

    def rotate(self, clock_ms: int) -> None:
        """Close the segments open longer than ``max_minutes`` of the recorder's clock."""
        for key in [k for k, s in self._open.items() if clock_ms - s.opened_clock_ms >= self.max_ms]:
            self.close(key)

    def close(self, key: Key) -> Path | None:
        seg = self._open.pop(key, None)
        if seg is None or not len(seg):
            return None
        folder = day_folder(self.root, *key)
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pydict(seg.rows, schema=SEGMENT_SCHEMA)
        final = folder / f"{seg.name}.parquet"
        partial = folder / f".{seg.name}.parquet.tmp"
        with open(partial, "wb") as f:
            pq.write_table(table, f, compression="zstd")
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, final)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself survives a crash
        finally:
            os.close(fd)
        self.closed += 1
        self.rows_written += table.num_rows
        return final

    def close_all(self) -> None:
        for key in list(self._open):
            self.close(key)

    @property
    def open_keys(self) -> list[Key]:
        return sorted(self._open)


def segment_paths(root: str | Path, city: str, day: dt.date) -> list[Path]:
    """The closed segments of a city's climate day, in recording order (temporary files are not segments)."""
    folder = day_folder(Path(root), city, day)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))


def read_segments(root: str | Path, city: str, day: dt.date) -> pd.DataFrame:
    """Every closed segment of the day, concatenated in recording order (``segment`` and ``row`` say where
    each row came from)."""
    parts = []
    for k, path in enumerate(segment_paths(root, city, day)):
        t = pq.read_table(path, schema=SEGMENT_SCHEMA).to_pandas()
        t.insert(0, "segment", k)
        t.insert(1, "row", range(len(t)))
        parts.append(t)
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in ["segment", "row", *COLUMNS]})
    return pd.concat(parts, ignore_index=True)


def recorded_days(root: str | Path) -> dict[tuple[str, dt.date], float]:
    """(city, climate day) -> the newest closed segment's modification time, for every recorded day."""
    out: dict[tuple[str, dt.date], float] = {}
    root = Path(root)
    if not root.is_dir():
        return out
    for city_dir in root.iterdir():
        if not city_dir.is_dir():
            continue
        for day_dir in city_dir.iterdir():
            try:
                day = dt.date.fromisoformat(day_dir.name)
            except ValueError:
                continue
            mtimes = [p.stat().st_mtime for p in day_dir.glob("*.parquet") if not p.name.startswith(".")]
            if mtimes:
                out[(city_dir.name, day)] = max(mtimes)
    return out
