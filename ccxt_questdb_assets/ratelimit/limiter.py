"""RateLimiter: the budget of one key. Concurrency slot, then tokens, then any shared cooldown.

Order of an admission: a slot of the key in this process (``local_semaphore``, default
``max_concurrency``), then a turn from the backend's queue (local bucket or Redis). The caller
sleeps exactly the returned deficit, then passes the gate (see ``bucket.py``): the tokens are
charged at the instant the request really goes, a late waker sleeps the deficit left, and a
cooldown started meanwhile (someone hit a 429) makes it give the turn back and wait it out.
Every exit path that does not reach the request (cancellation, timeout, errors) releases the slot
and refunds the turn.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ccxt_questdb_assets.core.errors import CcxtQuestDBError
from ccxt_questdb_assets.ratelimit.admission import Admission, admission, drive_async, drive_sync
from ccxt_questdb_assets.ratelimit.config import RateLimiterConfig
from ccxt_questdb_assets.ratelimit.local import Grant, Ticket
from ccxt_questdb_assets.ratelimit.primitives import HybridSemaphore
from ccxt_questdb_assets.ratelimit.stats import LimiterStats, StatsRecorder, active_scopes

_log = logging.getLogger("ccxt_questdb_assets.ratelimit")

#: Waits shorter than this are not counted as waits in the stats.
WAIT_EPSILON_S = 0.001


class RateLimitTimeout(CcxtQuestDBError, TimeoutError):
    """``acquire(timeout=...)`` could not be admitted in time; nothing is held."""


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


def parse_retry_after(value: Any, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value: a number, delta-seconds text or an HTTP date."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return max(0.0, float(value)) if math.isfinite(value) else None
    text = str(value).strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _check_weight(weight: float) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
        raise ValueError(f"request weight must be a number > 0, got {weight!r}")
    return float(weight)


@dataclass
class Permit:
    """An admission: hold it while the request runs. ``source``: local, redis or fallback."""

    limiter: RateLimiter
    weight: float
    waited_s: float
    source: str
    _released: bool = False

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self.limiter._semaphore.release()


class _AsyncAcquire:
    def __init__(self, limiter: RateLimiter, weight: float, timeout: float | None) -> None:
        self._limiter, self._weight, self._timeout = limiter, weight, timeout
        self._permit: Permit | None = None

    async def __aenter__(self) -> Permit:
        self._permit = await self._limiter._enter_async(self._weight, self._timeout)
        return self._permit

    async def __aexit__(self, *exc: object) -> None:
        if self._permit is not None:
            self._permit.release()


class _SyncAcquire:
    def __init__(self, limiter: RateLimiter, weight: float, timeout: float | None) -> None:
        self._limiter, self._weight, self._timeout = limiter, weight, timeout
        self._permit: Permit | None = None

    def __enter__(self) -> Permit:
        self._permit = self._limiter._enter_sync(self._weight, self._timeout)
        return self._permit

    def __exit__(self, *exc: object) -> None:
        if self._permit is not None:
            self._permit.release()


class RateLimiter:
    """The budget of one key: get it with ``get_rate_limiter``.

    ``process`` and ``cluster`` scope: one object per key and process, the very one every fetcher,
    session and Dagster resource of that key gets. ``local`` scope: one object per call (fetcher).
    Safe to use from several threads and several event loops at once.
    """

    def __init__(self, key: str, config: RateLimiterConfig, backend: Any, *, exchange_id: str | None = None) -> None:
        self.key = key
        self.config = config
        self.scope = config.scope
        self.exchange_id = exchange_id
        self.signature = config.budget_signature()
        self._backend = backend
        self._semaphore = HybridSemaphore(config.concurrency)
        self._stats = StatsRecorder()
        self._listeners: list[Listener] = []
        self._listeners_lock = threading.Lock()
        self._weights: dict[str | None, Any] = {}

    # ------------------------------------------------------------------ properties
    @property
    def mode(self) -> str:
        """``local``, ``cluster``, or ``fallback`` while Redis is unreachable."""
        return self._backend.mode

    @property
    def stats(self) -> LimiterStats:
        """Counters of everything this limiter admitted in this process (snapshot)."""
        return self._stats.snapshot()

    @property
    def concurrency(self) -> int:
        """Requests of this key allowed in flight at once in this process."""
        return self._semaphore.capacity

    @property
    def in_flight(self) -> int:
        return self._semaphore.capacity - self._semaphore.available

    @property
    def waiting(self) -> int:
        """Callers queued for a slot."""
        return self._semaphore.waiting

    @property
    def weights(self) -> Any:
        """Endpoint weights (``EndpointWeights``) of the first holder's exchange, with the config's
        ``endpoint_weights``. A key shared by several exchanges: use :meth:`weights_for`."""
        return self.weights_for(self.exchange_id)

    def weights_for(self, exchange_id: str | None) -> Any:
        w = self._weights.get(exchange_id)
        if w is None:
            from ccxt_questdb_assets.ratelimit.weights import EndpointWeights

            w = self._weights.setdefault(exchange_id, EndpointWeights(exchange_id, overrides=self.config.weights))
        return w

    def cooldown_remaining(self) -> float:
        """Seconds of shared cooldown this process knows of (cluster: as last seen from Redis)."""
        return self._backend.cooldown_remaining()

    # ------------------------------------------------------------------ events and stats
    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` on every event of this key in this process; returns a remover.

        For one run or asset prefer ``ratelimit.track(listener)``: it sees only that code's events.
        """
        with self._listeners_lock:
            self._listeners.append(listener)
        return lambda: self.remove_listener(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._listeners_lock:
            try:
                self._listeners.remove(listener)
            except ValueError:
                pass

    def _notify(self, event: LimiterEvent, *, scopes: bool = True) -> None:
        if scopes:
            for scope in active_scopes():
                scope.notify(event)
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a broken listener must not break rate limiting
                _log.exception("rate limiter listener failed on %s", event.kind)

    def _emit(self, kind: str, seconds: float = 0.0, **info: Any) -> None:
        self._notify(LimiterEvent(kind, self.key, self.scope, seconds, info))

    def _record(self, **deltas: float) -> None:
        self._stats.add(**deltas)
        for scope in active_scopes():
            scope.record(self.key, **deltas)

    def _on_backend_event(self, kind: str, info: dict[str, Any]) -> None:
        """Backend events (Redis outage and recovery) happen on the backend's threads: they reach
        the process-wide listeners and the scopes active where the backend was called."""
        deltas: dict[str, float] = {}
        if kind == "fallback":
            deltas["fallback_events"] = 1
        elif kind == "redis_error":
            deltas["redis_errors"] = 1
        if deltas:
            self._record(**deltas)
        self._notify(LimiterEvent(kind, self.key, self.scope, float(info.get("outage_s", 0.0)), dict(info)))

    def _admitted(self, weight: float, ticket: Ticket, waited: float, cooldown_waited: bool) -> None:
        deltas: dict[str, float] = {"requests": 1, "tokens": weight}
        if waited >= WAIT_EPSILON_S:
            deltas.update(waits=1, wait_s=waited, max_wait_s=waited)
        if cooldown_waited:
            deltas["cooldown_waits"] = 1
        if ticket.source == "fallback":
            deltas["fallback_requests"] = 1
        self._record(**deltas)
        if waited >= WAIT_EPSILON_S:
            self._emit("wait", waited, weight=weight, source=ticket.source, cooldown=cooldown_waited)
        self._emit("admitted", waited, weight=weight, source=ticket.source)

    def _timeout(self, timeout: float | None, waited: float) -> RateLimitTimeout:
        self._record(timeouts=1)
        self._emit("timeout", waited, timeout=timeout)
        return RateLimitTimeout(
            f"rate limiter {self.key}: not admitted within {timeout} s (waited {waited:.3f} s); nothing is held"
        )

    def _check_deadline(self, deadline: float | None, wait: float, timeout: float | None, started: float) -> None:
        if deadline is not None and time.monotonic() + wait > deadline:
            raise self._timeout(timeout, time.monotonic() - started)

    # ------------------------------------------------------------------ async path
    def acquire(self, weight: float = 1.0, *, timeout: float | None = None) -> _AsyncAcquire:
        """``async with limiter.acquire(weight=2): ...``: slot + tokens + any cooldown.

        ``timeout`` bounds the wait (RateLimitTimeout, nothing held); ``None`` waits as long as needed.
        """
        return _AsyncAcquire(self, _check_weight(weight), timeout)

    async def _call(self, fn: Callable[..., Any], *args: Any, refund_grant: bool = False) -> Any:
        backend = self._backend
        if not backend.blocking:
            return fn(*args)
        cfut = backend.executor.submit(contextvars.copy_context().run, fn, *args)
        try:
            return await asyncio.wrap_future(cfut)
        except asyncio.CancelledError:
            if refund_grant:
                cfut.add_done_callback(self._refund_grant_when_done)
            raise

    def _refund_grant_when_done(self, cfut: Any) -> None:
        if cfut.cancelled() or cfut.exception() is not None:
            return
        grant: Grant = cfut.result()
        if grant.ticket is not None:  # the caller is gone: its turn (and gate token, if charged) too
            self._backend.refund(grant.ticket, grant.admitted)

    def _refund_soon(self, ticket: Ticket, gate: bool = False) -> None:
        backend = self._backend
        if not backend.blocking or ticket.source != "redis":
            backend.refund(ticket, gate)
            return
        try:
            backend.executor.submit(backend.refund, ticket, gate)
        except RuntimeError:  # executor shut down: the bucket refills by itself
            pass

    async def _timed(self, fn: Callable[..., Any], *args: Any, refund_grant: bool = False) -> tuple[Any, float]:
        """``(result, seconds the call took)``: a wait the backend answers counts from when it was
        computed, so the caller sleeps it minus the way back (a slow round trip must not make
        every waiter late)."""
        t0 = time.monotonic()
        result = await self._call(fn, *args, refund_grant=refund_grant)
        return result, time.monotonic() - t0

    def _admission(self, weight: float, deadline: float | None, started: float, timeout: float | None) -> Admission:
        def check_deadline(wait: float) -> None:
            self._check_deadline(deadline, wait, timeout, started)

        return admission(weight, check_deadline=check_deadline, on_cooldown=lambda s: self._emit("cooldown_wait", s))

    async def _admit_async(
        self, weight: float, deadline: float | None, started: float, timeout: float | None
    ) -> tuple[Ticket, bool]:
        machine = self._admission(weight, deadline, started, timeout)
        return await drive_async(machine, self._backend, timed=self._timed, refund_soon=self._refund_soon)

    async def _enter_async(self, weight: float, timeout: float | None) -> Permit:
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        try:
            await self._semaphore.acquire(_remaining(deadline))
            try:
                ticket, cooldown_waited = await self._admit_async(weight, deadline, started, timeout)
            except BaseException:
                self._semaphore.release()
                raise
        except RateLimitTimeout:
            raise
        except TimeoutError:
            raise self._timeout(timeout, time.monotonic() - started) from None
        except asyncio.CancelledError:
            self._record(cancellations=1)
            raise
        waited = time.monotonic() - started
        self._admitted(weight, ticket, waited, cooldown_waited)
        return Permit(self, weight, waited, ticket.source)

    async def penalize(self, retry_after_s: Any = None, *, status: int | None = None) -> float:
        """Start the shared cooldown after a 429/418: ``max(penalty_backoff_ms, Retry-After)``.

        ``retry_after_s`` may be seconds or the raw ``Retry-After`` header. Returns the cooldown
        length now in force (an earlier, longer one is kept).
        """
        seconds = self._penalty_seconds(retry_after_s)
        applied = await self._call(self._backend.penalize, seconds)
        self._penalized(seconds, applied, retry_after_s, status)
        return applied

    # ------------------------------------------------------------------ sync path
    def acquire_sync(self, weight: float = 1.0, *, timeout: float | None = None) -> _SyncAcquire:
        """``with limiter.acquire_sync(weight=1): ...`` for threads.

        Raises RuntimeError inside a running event loop: blocking there could wait forever for a
        permit held by a task of that very loop (use ``async with limiter.acquire()``).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return _SyncAcquire(self, _check_weight(weight), timeout)
        raise RuntimeError(
            f"rate limiter {self.key}: acquire_sync() called inside a running event loop; use `async with acquire()`"
        )

    def _admit_sync(
        self, weight: float, deadline: float | None, started: float, timeout: float | None
    ) -> tuple[Ticket, bool]:
        return drive_sync(self._admission(weight, deadline, started, timeout), self._backend)

    def _enter_sync(self, weight: float, timeout: float | None) -> Permit:
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        if not self._semaphore.acquire_sync(_remaining(deadline)):
            raise self._timeout(timeout, time.monotonic() - started)
        try:
            ticket, cooldown_waited = self._admit_sync(weight, deadline, started, timeout)
        except BaseException:
            self._semaphore.release()
            raise
        waited = time.monotonic() - started
        self._admitted(weight, ticket, waited, cooldown_waited)
        return Permit(self, weight, waited, ticket.source)

    def penalize_sync(self, retry_after_s: Any = None, *, status: int | None = None) -> float:
        seconds = self._penalty_seconds(retry_after_s)
        applied = self._backend.penalize(seconds)
        self._penalized(seconds, applied, retry_after_s, status)
        return applied

    def close(self) -> None:
        """Release the backend's resources (thread pool, Redis client). ``reset_registry`` does it."""
        self._backend.close()

    # ------------------------------------------------------------------ penalties
    def _penalty_seconds(self, retry_after: Any) -> float:
        parsed = parse_retry_after(retry_after)
        return max(self.config.penalty_backoff_s, parsed or 0.0)

    def _penalized(self, asked: float, applied: float, retry_after: Any, status: int | None) -> None:
        self._record(penalties=1, cooldown_s=asked)
        _log.warning(
            "rate limiter %s: exchange answered %s (Retry-After %s); every holder of the key pauses %.3f s",
            self.key,
            status or "429/418",
            retry_after,
            applied,
        )
        self._emit("penalty", applied, status=status, retry_after=retry_after, requested_s=asked)

    def __repr__(self) -> str:
        return f"RateLimiter(key={self.key!r}, scope={self.scope!r}, mode={self.mode!r})"
