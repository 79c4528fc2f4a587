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
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ccxt_questdb_assets.core.errors import CcxtQuestDBError
from ccxt_questdb_assets.ratelimit.admission import Admission, admission, drive_async, drive_sync
from ccxt_questdb_assets.ratelimit.config import RateLimiterConfig
from ccxt_questdb_assets.ratelimit.local import Grant, Ticket
from ccxt_questdb_assets.ratelimit.primitives import HybridSemaphore
from ccxt_questdb_assets.ratelimit.reporting import LimiterReporter, Listener
from ccxt_questdb_assets.ratelimit.retry_after import parse_retry_after
from ccxt_questdb_assets.ratelimit.stats import LimiterStats


class RateLimitTimeout(CcxtQuestDBError, TimeoutError):
    """``acquire(timeout=...)`` could not be admitted in time; nothing is held."""


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
        self._report = LimiterReporter(key, self.scope)
        self._weights: dict[str | None, Any] = {}

    # ------------------------------------------------------------------ properties
    @property
    def mode(self) -> str:
        """``local``, ``cluster``, or ``fallback`` while Redis is unreachable."""
        return self._backend.mode

    @property
    def stats(self) -> LimiterStats:
        """Counters of everything this limiter admitted in this process (snapshot)."""
        return self._report.stats.snapshot()

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
        self._report.add_listener(listener)
        return lambda: self.remove_listener(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._report.remove_listener(listener)

    def _on_backend_event(self, kind: str, info: dict[str, Any]) -> None:
        """Backend events (Redis outage and recovery) happen on the backend's threads: they reach
        the process-wide listeners and the scopes active where the backend was called."""
        self._report.backend_event(kind, info)

    def _timeout(self, timeout: float | None, waited: float) -> RateLimitTimeout:
        self._report.timed_out(timeout, waited)
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

        return admission(
            weight, check_deadline=check_deadline, on_cooldown=lambda s: self._report.emit("cooldown_wait", s)
        )

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
            self._report.record(cancellations=1)
            raise
        waited = time.monotonic() - started
        self._report.admitted(weight, ticket.source, waited, cooldown_waited)
        return Permit(self, weight, waited, ticket.source)

    async def penalize(self, retry_after_s: Any = None, *, status: int | None = None) -> float:
        """Start the shared cooldown after a 429/418: ``max(penalty_backoff_ms, Retry-After)``.

        ``retry_after_s`` may be seconds or the raw ``Retry-After`` header. Returns the cooldown
        length now in force (an earlier, longer one is kept).
        """
        seconds = self._penalty_seconds(retry_after_s)
        applied = await self._call(self._backend.penalize, seconds)
        self._report.penalized(seconds, applied, retry_after_s, status)
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
        self._report.admitted(weight, ticket.source, waited, cooldown_waited)
        return Permit(self, weight, waited, ticket.source)

    def penalize_sync(self, retry_after_s: Any = None, *, status: int | None = None) -> float:
        seconds = self._penalty_seconds(retry_after_s)
        applied = self._backend.penalize(seconds)
        self._report.penalized(seconds, applied, retry_after_s, status)
        return applied

    def close(self) -> None:
        """Release the backend's resources (thread pool, Redis client). ``reset_registry`` does it."""
        self._backend.close()

    def _penalty_seconds(self, retry_after: Any) -> float:
        parsed = parse_retry_after(retry_after)
        return max(self.config.penalty_backoff_s, parsed or 0.0)

    def __repr__(self) -> str:
        return f"RateLimiter(key={self.key!r}, scope={self.scope!r}, mode={self.mode!r})"
