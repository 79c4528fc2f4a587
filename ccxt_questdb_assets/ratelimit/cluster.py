"""Cluster backend: the token buckets and cooldown of a key live in Redis (atomic Lua scripts).

Calls block on the network, so async callers run them on this backend's own small thread pool
(one sync Redis client serves every thread and event loop of the process). On a Redis error the
backend either raises (``on_redis_error: raise``) or falls back to an in-process bucket with the
same settings (default), warns once, probes Redis again every ``redis_retry_s`` and resumes
sharing as soon as a probe succeeds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ccxt_questdb_assets.core.errors import ServiceError
from ccxt_questdb_assets.ratelimit import lua
from ccxt_questdb_assets.ratelimit.bucket import COOLDOWN, EPSILON_S, GO, WAIT, Reservation
from ccxt_questdb_assets.ratelimit.config import Band, redact_dsn
from ccxt_questdb_assets.ratelimit.local import Grant, LocalBackend, Ticket

_log = logging.getLogger("ccxt_questdb_assets.ratelimit")

#: What counts as "Redis is unavailable" (everything redis-py raises, plus socket-level errors).
REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, OSError)


class ClusterBackend:
    blocking = True  # async callers go through ``executor``

    def __init__(
        self,
        key: str,
        bands: tuple[Band, ...],
        dsn: str,
        *,
        fallback: LocalBackend,
        on_redis_error: str = "fallback",
        retry_s: float = 1.0,
        timeout_s: float = 1.0,
        max_workers: int = 4,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.key = key
        self.bands = bands
        self.dsn = dsn
        self.fallback = fallback
        self.on_redis_error = on_redis_error
        self.retry_s = retry_s
        self.timeout_s = timeout_s
        self._on_event = on_event or (lambda kind, info: None)
        self._clock = clock
        self._lock = threading.Lock()
        self._cooldown_until = float("-inf")  # local mirror of the shared cooldown
        self._down_since: float | None = None
        self._next_probe = 0.0
        self._probing = False
        self._client: redis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self.executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"ratelimit-{key}")
        self._band_args = [len(bands)]
        for b in bands:
            self._band_args += [b.name, repr(b.rate_per_s / 1000.0), repr(float(b.capacity))]

    def set_event_handler(self, on_event: Callable[[str, dict[str, Any]], None]) -> None:
        self._on_event = on_event

    # ------------------------------------------------------------------ redis plumbing
    def _redis(self) -> redis.Redis:
        with self._lock:
            if self._client is None:
                try:
                    self._client = redis.Redis.from_url(
                        self.dsn,
                        socket_timeout=self.timeout_s,
                        socket_connect_timeout=self.timeout_s,
                        retry=Retry(NoBackoff(), 1),  # one quick reconnect after a Redis restart
                        decode_responses=True,
                        health_check_interval=0,
                    )
                except ValueError as exc:
                    raise ServiceError(f"bad Redis DSN {redact_dsn(self.dsn)!r}: {exc}") from None
                self._scripts = {
                    name: self._client.register_script(src)
                    for name, src in (
                        ("reserve", lua.RESERVE),
                        ("admit", lua.ADMIT),
                        ("refund", lua.REFUND),
                        ("penalize", lua.PENALIZE),
                    )
                }
            return self._client

    def _run(self, script: str, args: list[Any]) -> Any:
        self._redis()
        return self._scripts[script](keys=[self.key], args=args)

    @property
    def mode(self) -> str:
        return "cluster" if self._down_since is None else "fallback"

    def _should_try_redis(self) -> bool:
        with self._lock:
            if self._down_since is None:
                return True
            now = self._clock()
            if now >= self._next_probe and not self._probing:
                self._probing = True
                return True
            return False

    def _ok(self) -> None:
        with self._lock:
            self._probing = False
            if self._down_since is None:
                return
            outage = self._clock() - self._down_since
            self._down_since = None
        _log.warning("rate limiter %s: Redis is back after %.1f s, sharing the budget again", self.key, outage)
        self._on_event("resumed", {"outage_s": outage})

    def _failed(self, exc: BaseException, during: str) -> None:
        self._on_event("redis_error", {"error": f"{type(exc).__name__}: {exc}", "during": during})
        if self.on_redis_error == "raise":
            with self._lock:
                self._probing = False
            if during == "refund":
                return  # never raise from cleanup
            raise ServiceError(
                f"rate limiter {self.key}: Redis at {redact_dsn(self.dsn)} failed during {during}: "
                f"{type(exc).__name__}: {exc} (on_redis_error=raise)"
            ) from exc
        with self._lock:
            self._probing = False
            first = self._down_since is None
            now = self._clock()
            if first:
                self._down_since = now
            self._next_probe = now + self.retry_s
        if first:
            _log.warning(
                "rate limiter %s: Redis at %s unreachable (%s: %s); falling back to the in-process limiter "
                "until it answers again (probing every %.1f s)",
                self.key,
                redact_dsn(self.dsn),
                type(exc).__name__,
                exc,
                self.retry_s,
            )
            self._on_event("fallback", {"error": f"{type(exc).__name__}: {exc}"})

    def _mirror(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._cooldown_until = max(self._cooldown_until, self._clock() + seconds)

    def cooldown_remaining(self) -> float:
        with self._lock:
            local = max(0.0, self._cooldown_until - self._clock())
        return max(local, self.fallback.cooldown_remaining())

    def _refund_args(self, reservation: Reservation, gate: bool) -> list[Any]:
        args: list[Any] = ["1" if gate else "0", len(reservation.costs)]
        caps = {b.name: b.capacity for b in self.bands}
        for name, cost in reservation.costs:
            args += [name, repr(float(caps[name])), repr(float(cost))]
        return args

    def _band_costs(self, costs: tuple[tuple[str, float], ...]) -> list[Any]:
        by_name = {b.name: b for b in self.bands}
        args: list[Any] = [len(costs)]
        for name, cost in costs:
            b = by_name[name]
            args += [name, repr(b.rate_per_s / 1000.0), repr(float(b.capacity)), repr(float(cost))]
        return args

    # ------------------------------------------------------------------ backend protocol
    def reserve(self, weight: float) -> Grant:
        cooldown = self.cooldown_remaining()
        if cooldown > EPSILON_S:
            return Grant(cooldown, None)
        if self._should_try_redis():
            costs = tuple((b.name, b.cost(weight)) for b in self.bands)
            try:
                reply = self._run("reserve", self._band_costs(costs))
            except REDIS_ERRORS as exc:
                self._failed(exc, "reserve")
            except BaseException:
                with self._lock:
                    self._probing = False
                raise
            else:
                self._ok()
                seconds = float(reply[1]) / 1000.0
                if int(reply[0]) == 0:
                    self._mirror(seconds)
                    return Grant(seconds, None)
                admitted = len(reply) > 2 and int(reply[2]) == 1
                ticket = Ticket("redis", Reservation(costs))
                return Grant(0.0 if admitted else max(seconds, EPSILON_S), ticket, admitted)
        return self.fallback.reserve(weight)

    def admit(self, ticket: Ticket, held_at: float | None = None) -> tuple[str, float, float | None]:
        """After sleeping for a turn: ``(kind, seconds, slot)``, see ``BucketState.admit``
        (``slot`` and ``held_at`` in Redis milliseconds)."""
        if ticket.source != "redis":
            return self.fallback.admit(ticket, held_at)
        local = self.cooldown_remaining()
        if local > EPSILON_S:
            return COOLDOWN, local, None
        try:
            reply = self._run(
                "admit", ["" if held_at is None else repr(held_at), *self._band_costs(ticket.reservation.costs)]
            )
        except REDIS_ERRORS as exc:
            self._failed(exc, "admit")
            rest = self.cooldown_remaining()  # the turn stands; honour what we know
            return (COOLDOWN, rest, None) if rest > EPSILON_S else (GO, 0.0, None)
        self._ok()
        status, seconds = int(reply[0]), float(reply[1]) / 1000.0
        if status == 0:
            self._mirror(seconds)
            return COOLDOWN, max(seconds, EPSILON_S), None
        if status == 2:
            return WAIT, max(seconds, EPSILON_S), float(reply[2])
        return GO, 0.0, None

    def refund(self, ticket: Ticket, gate: bool = False) -> None:
        if ticket.source != "redis":
            self.fallback.refund(ticket, gate)
            return
        if not ticket.reservation.costs:
            return
        try:
            self._run("refund", self._refund_args(ticket.reservation, gate))
        except REDIS_ERRORS as exc:  # the bucket refills by itself: a lost refund only costs time
            self._failed(exc, "refund")

    def penalize(self, seconds: float) -> float:
        seconds = max(0.0, seconds)
        self._mirror(seconds)
        applied = self.fallback.penalize(seconds)
        try:
            ms = self._run("penalize", [repr(seconds * 1000.0)] + self._band_args)
        except REDIS_ERRORS as exc:
            self._failed(exc, "penalize")
            return applied
        self._ok()
        shared = float(ms) / 1000.0
        self._mirror(shared)
        return max(applied, shared)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001, S110 - closing a dead connection is not an error
                pass
