"""What the limiter of one key reports: events to its listeners and to the active ``track``
scopes, counters to its stats and to those scopes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ccxt_questdb_assets.ratelimit.stats import StatsRecorder, active_scopes

__all__ = ["WAIT_EPSILON_S", "LimiterEvent", "LimiterReporter", "Listener"]

_log = logging.getLogger("ccxt_questdb_assets.ratelimit")

#: Waits shorter than this are not counted as waits in the stats.
WAIT_EPSILON_S = 0.001


@dataclass(frozen=True)
class LimiterEvent:
    """Something a run log or a metrics exporter may want: ``kind`` is one of ``admitted`` (every
    admission; ``seconds`` waited), ``wait`` (an admission that waited), ``cooldown_wait``,
    ``penalty``, ``fallback``, ``resumed``, ``redis_error``, ``timeout``."""

    kind: str
    key: str
    scope: str
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


Listener = Callable[[LimiterEvent], None]


class LimiterReporter:
    """The events and counters of the limiter of ``key`` (its ``scope``: local, process or cluster)."""

    def __init__(self, key: str, scope: str) -> None:
        self.key = key
        self.scope = scope
        self.stats = StatsRecorder()
        self._listeners: list[Listener] = []
        self._listeners_lock = threading.Lock()

    def add_listener(self, listener: Listener) -> None:
        with self._listeners_lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._listeners_lock:
            try:
                self._listeners.remove(listener)
            except ValueError:
                pass

    def notify(self, event: LimiterEvent) -> None:
        for scope in active_scopes():
            scope.notify(event)
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a broken listener must not break rate limiting
                _log.exception("rate limiter listener failed on %s", event.kind)

    def emit(self, kind: str, seconds: float = 0.0, **info: Any) -> None:
        self.notify(LimiterEvent(kind, self.key, self.scope, seconds, info))

    def record(self, **deltas: float) -> None:
        self.stats.add(**deltas)
        for scope in active_scopes():
            scope.record(self.key, **deltas)

    def backend_event(self, kind: str, info: dict[str, Any]) -> None:
        """A backend event (Redis outage and recovery): counted, and passed on with its outage length."""
        deltas: dict[str, float] = {}
        if kind == "fallback":
            deltas["fallback_events"] = 1
        elif kind == "redis_error":
            deltas["redis_errors"] = 1
        if deltas:
            self.record(**deltas)
        self.notify(LimiterEvent(kind, self.key, self.scope, float(info.get("outage_s", 0.0)), dict(info)))

    def admitted(self, weight: float, source: str, waited: float, cooldown_waited: bool) -> None:
        deltas: dict[str, float] = {"requests": 1, "tokens": weight}
        if waited >= WAIT_EPSILON_S:
            deltas.update(waits=1, wait_s=waited, max_wait_s=waited)
        if cooldown_waited:
            deltas["cooldown_waits"] = 1
        if source == "fallback":
            deltas["fallback_requests"] = 1
        self.record(**deltas)
        if waited >= WAIT_EPSILON_S:
            self.emit("wait", waited, weight=weight, source=source, cooldown=cooldown_waited)
        self.emit("admitted", waited, weight=weight, source=source)

    def timed_out(self, timeout: float | None, waited: float) -> None:
        self.record(timeouts=1)
        self.emit("timeout", waited, timeout=timeout)

    def penalized(self, asked: float, applied: float, retry_after: Any, status: int | None) -> None:
        self.record(penalties=1, cooldown_s=asked)
        _log.warning(
            "rate limiter %s: exchange answered %s (Retry-After %s); every holder of the key pauses %.3f s",
            self.key,
            status or "429/418",
            retry_after,
            applied,
        )
        self.emit("penalty", applied, status=status, retry_after=retry_after, requested_s=asked)
