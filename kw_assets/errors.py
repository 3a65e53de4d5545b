"""One error type for bad input, so every message names the partition, the table and the field."""

from __future__ import annotations


class DataError(ValueError):
    def __init__(self, table: str, field: str, message: str, partition: str | None = None):
        self.table, self.field, self.detail, self.partition = table, field, message, partition
        where = f"partition {partition}: " if partition else ""
        super().__init__(f"{where}table {table}, field {field}: {message}")

    def __reduce__(self):  # picklable from worker processes
        return DataError, (self.table, self.field, self.detail, self.partition)
