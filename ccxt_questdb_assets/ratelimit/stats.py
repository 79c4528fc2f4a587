"""Counters of a limiter (thread-safe) and their immutable snapshots."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any

_log = logging.getLogger("ccxt_questdb_assets.ratelimit")


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

    def __sub__(self, other: LimiterStats) -> LimiterStats:
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


class StatsScope:
    """Counters (and an optional event listener) of everything one block of code did through any
    limiter, e.g. one asset materialization, however the limiters were obtained."""

    def __init__(self, listener: Callable[[Any], None] | None = None) -> None:
        self.recorder = StatsRecorder()
        self.listener = listener
        self.keys: set[str] = set()
        self._lock = threading.Lock()

    @property
    def stats(self) -> LimiterStats:
        return self.recorder.snapshot()

    def record(self, key: str, **deltas: float) -> None:
        with self._lock:
            self.keys.add(key)
        self.recorder.add(**deltas)

    def notify(self, event: Any) -> None:
        with self._lock:
            self.keys.add(getattr(event, "key", ""))
        if self.listener is None:
            return
        try:
            self.listener(event)
        except Exception:  # noqa: BLE001 - a broken listener must not break rate limiting
            _log.exception("rate limiter scope listener failed")


_SCOPES: contextvars.ContextVar[tuple[StatsScope, ...]] = contextvars.ContextVar("ratelimit_scopes", default=())


def active_scopes() -> tuple[StatsScope, ...]:
    return _SCOPES.get()


@contextmanager
def track(listener: Callable[[Any], None] | None = None) -> Iterator[StatsScope]:
    """Count limiter activity of the code run inside (its threads started with a copied context and
    its asyncio tasks included). Scopes nest; each sees everything inside it."""
    scope = StatsScope(listener)
    token = _SCOPES.set(_SCOPES.get() + (scope,))
    try:
        yield scope
    finally:
        _SCOPES.reset(token)
