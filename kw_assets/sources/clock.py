"""Clocks a source runs on: the wall clock, or a simulated one that starts at a chosen instant and runs
``speed`` times faster, so a simulated exchange's hour can be recorded in a minute. A clock is named by a
spec string (``wall`` or ``sim:<ISO start>@<unix epoch>x<speed>``) so a recorder in another process can
share the exchange's clock exactly."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Clock:
    start_ts: float | None = None  # None: the wall clock
    epoch: float = 0.0  # the wall time at which the simulated clock read start_ts
    speed: float = 1.0

    @classmethod
    def simulated(cls, start: dt.datetime, speed: float = 1.0, epoch: float | None = None) -> "Clock":
        if speed <= 0:
            raise ValueError(f"clock speed must be positive, got {speed}")
        return cls(start.timestamp(), time.time() if epoch is None else epoch, float(speed))

    @classmethod
    def parse(cls, spec: str | None) -> "Clock":
        if not spec or spec == "wall":
            return cls()
        try:
            kind, rest = spec.split(":", 1)
            start, tail = rest.rsplit("@", 1)
            epoch, speed = tail.split("x")
            if kind != "sim":
                raise ValueError(kind)
            return cls.simulated(dt.datetime.fromisoformat(start.replace("Z", "+00:00")), float(speed), float(epoch))
        except ValueError:
            raise ValueError(f"clock spec {spec!r}: expected 'wall' or 'sim:<ISO start>@<unix epoch>x<speed>'") from None

    @property
    def spec(self) -> str:
        if self.start_ts is None:
            return "wall"
        start = dt.datetime.fromtimestamp(self.start_ts, dt.timezone.utc).isoformat()
        return f"sim:{start}@{self.epoch!r}x{self.speed!r}"

    def now_ts(self) -> float:
        if self.start_ts is None:
            return time.time()
        return self.start_ts + self.speed * (time.time() - self.epoch)

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now_ts(), dt.timezone.utc)

    def wall_seconds(self, clock_seconds: float) -> float:
        """Wall time that ``clock_seconds`` of this clock take."""
        return clock_seconds / self.speed


def every(step: Callable[[bool], None], stop: Callable[[], bool], every_s: float, status_every_s: float = 60.0) -> None:
    """Call ``step(due)`` every ``every_s`` wall seconds until ``stop()``; ``due`` is true once every
    ``status_every_s`` (time for a status line). A stop never waits for the next step (the wait is slept in
    half-second pieces)."""
    last_status = -float("inf")
    while not stop():
        started = time.monotonic()
        due = started - last_status >= status_every_s
        step(due)
        if due:
            last_status = started
        while not stop() and time.monotonic() - started < every_s:
            time.sleep(min(0.5, max(0.0, every_s - (time.monotonic() - started))))
