"""Counters of a limiter (thread-safe) and their immutable snapshots."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class LimiterStats:
    """A snapshot. Subtract two snapshots for the activity between them (e.g. one asset run)."""

    requests: int = 0
    tokens: float = 0.0
    waits: int = 0
    wait_s: float = 0.0
    max_wait_s: float = 0.0
    cooldown_waits: int = 0
    penalties: int = 0
    cooldown_s: float = 0.0
    fallback_events: int = 0
    fallback_requests: int = 0
    redis_errors: int = 0
    timeouts: int = 0
    cancellations: int = 0

    def __sub__(self, other: "LimiterStats") -> "LimiterStats":
        values = {}
        for f in fields(self):
            if f.name == "max_wait_s":
                values[f.name] = self.max_wait_s
            else:
                values[f.name] = getattr(self, f.name) - getattr(other, f.name)
        return LimiterStats(**values)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_metadata(self, prefix: str = "rate_limiter/") -> dict[str, int | float]:
        """Flat metadata entries (plain numbers: any Dagster metadata accepts them)."""
        out: dict[str, int | float] = {}
        for name, value in self.as_dict().items():
            out[prefix + name] = round(value, 6) if isinstance(value, float) else value
        return out


class StatsRecorder:
    """Mutable counters behind a lock; :meth:`snapshot` gives a :class:`LimiterStats`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = {f.name: f.default for f in fields(LimiterStats)}

    def add(self, **deltas: float) -> None:
        with self._lock:
            for name, delta in deltas.items():
                if name == "max_wait_s":
                    self._values[name] = max(self._values[name], delta)
                else:
                    self._values[name] += delta

    def snapshot(self) -> LimiterStats:
        with self._lock:
            return LimiterStats(**self._values)
