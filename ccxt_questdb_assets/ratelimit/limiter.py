"""RateLimiter: what a fetcher holds. Concurrency slots, then tokens, then any shared cooldown.

Order of an admission: the fetcher's own slot (``local_semaphore``), the key's shared slot
(``max_concurrency``), then a token reservation from the backend (local bucket or Redis). The
caller sleeps exactly the returned deficit; after sleeping it checks the shared cooldown once more
(someone may have hit a 429 meanwhile) and, if one started, gives the tokens back and waits it out.
Every exit path that does not reach the request (cancellation, timeout, errors) releases the slots
and refunds the tokens.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ccxt_questdb_assets.core.errors import CcxtQuestDBError
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
    """Something a run log should show: ``kind`` is one of ``wait``, ``cooldown_wait``, ``penalty``,
    ``fallback``, ``resumed``, ``redis_error``, ``timeout``."""

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


class SharedCore:
    """The budget of one key in this process: shared slots, the backend, shared stats."""

    def __init__(self, key: str, config: RateLimiterConfig, scope: str) -> None:
        self.key = key
        self.config = config
        self.scope = scope
        self.signature = config.budget_signature()
        self.semaphore = HybridSemaphore(config.max_concurrency)
        self.backend: Any = None
        self.stats = StatsRecorder()
        self._handles: weakref.WeakSet[RateLimiter] = weakref.WeakSet()
        self._lock = threading.Lock()

    def attach(self, handle: RateLimiter) -> None:
        with self._lock:
            self._handles.add(handle)

    def handles(self) -> list[RateLimiter]:
        with self._lock:
            return list(self._handles)

    def on_backend_event(self, kind: str, info: dict[str, Any]) -> None:
        deltas: dict[str, float] = {}
        if kind == "fallback":
            deltas["fallback_events"] = 1
        elif kind == "redis_error":
            deltas["redis_errors"] = 1
        if deltas:
            self.stats.add(**deltas)
        event = LimiterEvent(kind, self.key, self.scope, float(info.get("outage_s", 0.0)), dict(info))
        for handle in self.handles():
            if deltas:
                handle._stats.add(**deltas)
            handle._notify(event, scopes=False)
        for scope in active_scopes():
            if deltas:
                scope.record(self.key, **deltas)
            scope.notify(event)

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()


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
        self.limiter._core.semaphore.release()
        self.limiter._handle_sem.release()


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
    """A fetcher's handle on a key's budget. Get one with ``get_rate_limiter``.

    Safe to use from several threads and several event loops at once.
    """

    def __init__(
        self,
        core: SharedCore,
        *,
        config: RateLimiterConfig | None = None,
        exchange_id: str | None = None,
        listener: Listener | None = None,
    ) -> None:
        self._core = core
        self._config = config if config is not None else core.config
        self._handle_sem = HybridSemaphore(self._config.handle_concurrency)
        self._stats = StatsRecorder()
        self._listener = listener
        self.exchange_id = exchange_id
        self._weights: Any = None
        core.attach(self)

    # ------------------------------------------------------------------ properties
    @property
    def key(self) -> str:
        return self._core.key

    @property
    def scope(self) -> str:
        return self._core.scope

    @property
    def config(self) -> RateLimiterConfig:
        """This fetcher's config (its ``local_semaphore`` and ``endpoint_weights`` apply to it)."""
        return self._config

    @property
    def shared_config(self) -> RateLimiterConfig:
        """The config that defined the key's shared budget (its first holder's)."""
        return self._core.config

    @property
    def mode(self) -> str:
        """``local``, ``cluster``, or ``fallback`` while Redis is unreachable."""
        return self._core.backend.mode

    @property
    def stats(self) -> LimiterStats:
        """This handle's counters (snapshot)."""
        return self._stats.snapshot()

    @property
    def shared_stats(self) -> LimiterStats:
        """Counters of every handle of the key in this process (snapshot)."""
        return self._core.stats.snapshot()

    @property
    def weights(self) -> Any:
        """Endpoint weights of this exchange (``EndpointWeights``), with the config's overrides."""
        if self._weights is None:
            from ccxt_questdb_assets.ratelimit.weights import EndpointWeights

            self._weights = EndpointWeights(self.exchange_id, overrides=self._config.weights)
        return self._weights

    def cooldown_remaining(self) -> float:
        """Seconds of shared cooldown this process knows of (cluster: as last seen from Redis)."""
        return self._core.backend.cooldown_remaining()

    def set_listener(self, listener: Listener | None) -> None:
        self._listener = listener

    # ------------------------------------------------------------------ events and stats
    def _notify(self, event: LimiterEvent, *, scopes: bool = True) -> None:
        if scopes:
            for scope in active_scopes():
                scope.notify(event)
        listener = self._listener
        if listener is None:
            return
        try:
            listener(event)
        except Exception:  # noqa: BLE001 - a broken listener must not break rate limiting
            _log.exception("rate limiter listener failed on %s", event.kind)

    def _emit(self, kind: str, seconds: float = 0.0, **info: Any) -> None:
        self._notify(LimiterEvent(kind, self.key, self.scope, seconds, info))

    def _record(self, **deltas: float) -> None:
        self._stats.add(**deltas)
        self._core.stats.add(**deltas)
        for scope in active_scopes():
            scope.record(self.key, **deltas)

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

    def _timeout(self, timeout: float | None, waited: float) -> RateLimitTimeout:
        self._record(timeouts=1)
        self._emit("timeout", waited, timeout=timeout)
        return RateLimitTimeout(
            f"rate limiter {self.key}: not admitted within {timeout} s (waited {waited:.3f} s); nothing is held"
        )

    # ------------------------------------------------------------------ async path
    def acquire(self, weight: float = 1.0, *, timeout: float | None = None) -> _AsyncAcquire:
        """``async with limiter.acquire(weight=2): ...``: slot + tokens + any cooldown.

        ``timeout`` bounds the wait (RateLimitTimeout, nothing held); ``None`` waits as long as needed.
        """
        return _AsyncAcquire(self, _check_weight(weight), timeout)

    async def _call(self, fn: Callable[..., Any], *args: Any, refund_grant: bool = False) -> Any:
        backend = self._core.backend
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
        if grant.ticket is not None:
            self._core.backend.refund(grant.ticket)

    def _refund_soon(self, ticket: Ticket) -> None:
        backend = self._core.backend
        if not backend.blocking or ticket.source != "redis":
            backend.refund(ticket)
            return
        try:
            backend.executor.submit(backend.refund, ticket)
        except RuntimeError:  # executor shut down: the bucket refills by itself
            pass

    async def _admit_async(
        self, weight: float, deadline: float | None, started: float, timeout: float | None
    ) -> tuple[Ticket, bool]:
        backend = self._core.backend
        cooldown_waited = False
        while True:
            grant: Grant = await self._call(backend.reserve, weight, refund_grant=True)
            if grant.ticket is None:
                if deadline is not None and time.monotonic() + grant.wait_s > deadline:
                    raise self._timeout(timeout, time.monotonic() - started)
                cooldown_waited = True
                self._emit("cooldown_wait", grant.wait_s)
                await asyncio.sleep(grant.wait_s)
                continue
            ticket = grant.ticket
            if grant.wait_s <= 0:
                return ticket, cooldown_waited
            try:
                if deadline is not None and time.monotonic() + grant.wait_s > deadline:
                    raise self._timeout(timeout, time.monotonic() - started)
                await asyncio.sleep(grant.wait_s)
                rest = await self._call(backend.confirm, ticket)
            except BaseException:
                self._refund_soon(ticket)
                raise
            if rest > 0:  # a cooldown started while we slept: give the tokens back, wait it out
                self._refund_soon(ticket)
                cooldown_waited = True
                continue
            return ticket, cooldown_waited

    async def _enter_async(self, weight: float, timeout: float | None) -> Permit:
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        try:
            await self._handle_sem.acquire(_remaining(deadline))
            try:
                await self._core.semaphore.acquire(_remaining(deadline))
                try:
                    ticket, cooldown_waited = await self._admit_async(weight, deadline, started, timeout)
                except BaseException:
                    self._core.semaphore.release()
                    raise
            except BaseException:
                self._handle_sem.release()
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
        applied = await self._call(self._core.backend.penalize, seconds)
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
        backend = self._core.backend
        cooldown_waited = False
        while True:
            grant: Grant = backend.reserve(weight)
            if grant.ticket is None:
                if deadline is not None and time.monotonic() + grant.wait_s > deadline:
                    raise self._timeout(timeout, time.monotonic() - started)
                cooldown_waited = True
                self._emit("cooldown_wait", grant.wait_s)
                time.sleep(grant.wait_s)
                continue
            ticket = grant.ticket
            if grant.wait_s <= 0:
                return ticket, cooldown_waited
            try:
                if deadline is not None and time.monotonic() + grant.wait_s > deadline:
                    raise self._timeout(timeout, time.monotonic() - started)
                time.sleep(grant.wait_s)
                rest = backend.confirm(ticket)
            except BaseException:
                backend.refund(ticket)
                raise
            if rest > 0:
                backend.refund(ticket)
                cooldown_waited = True
                continue
            return ticket, cooldown_waited

    def _enter_sync(self, weight: float, timeout: float | None) -> Permit:
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        if not self._handle_sem.acquire_sync(_remaining(deadline)):
            raise self._timeout(timeout, time.monotonic() - started)
        try:
            if not self._core.semaphore.acquire_sync(_remaining(deadline)):
                raise self._timeout(timeout, time.monotonic() - started)
            try:
                ticket, cooldown_waited = self._admit_sync(weight, deadline, started, timeout)
            except BaseException:
                self._core.semaphore.release()
                raise
        except BaseException:
            self._handle_sem.release()
            raise
        waited = time.monotonic() - started
        self._admitted(weight, ticket, waited, cooldown_waited)
        return Permit(self, weight, waited, ticket.source)

    def penalize_sync(self, retry_after_s: Any = None, *, status: int | None = None) -> float:
        seconds = self._penalty_seconds(retry_after_s)
        applied = self._core.backend.penalize(seconds)
        self._penalized(seconds, applied, retry_after_s, status)
        return applied

    # ------------------------------------------------------------------ penalties
    def _penalty_seconds(self, retry_after: Any) -> float:
        parsed = parse_retry_after(retry_after)
        return max(self._core.config.penalty_backoff_s, parsed or 0.0)

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
