"""A content hash of every table in a warehouse, independent of row order: run it on the demo's
warehouse before and after a refactor that must not change results.

    python bench/table_hashes.py data/warehouse.duckdb
"""

from __future__ import annotations

import hashlib
import sys

import pandas as pd

from kw_assets.schemas import TABLES
from kw_assets.warehouse import Warehouse


def table_hash(frame: pd.DataFrame) -> str:
    """SHA-256 of the rows sorted on every column, columns in name order (floats to 12 significant digits)."""
    cols = sorted(frame.columns)
    frame = frame[cols].sort_values(cols, na_position="last").reset_index(drop=True)
    return hashlib.sha256(frame.to_csv(index=False, float_format="%.12g").encode()).hexdigest()[:16]


def main(path: str) -> None:
    wh = Warehouse(path)
    for table in TABLES:
        frame = wh.read(table)
        print(f"{table:22s} {len(frame):9d} rows  {table_hash(frame)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/warehouse.duckdb")
