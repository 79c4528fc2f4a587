"""In-process backend: token buckets and cooldown of one key, behind a thread lock.

Non-blocking (every call is a few arithmetic operations under the lock), so it is called directly
from asyncio code and from threads. Used by the ``local`` and ``process`` scopes, and by the
``cluster`` scope as its fallback while Redis is unreachable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ccxt_questdb_assets.ratelimit.bucket import BucketState, Reservation
from ccxt_questdb_assets.ratelimit.config import Band


@dataclass(frozen=True)
class Ticket:
    """What an admission took, so that it can be given back: ``source`` is local, redis or fallback."""

    source: str
    reservation: Reservation


@dataclass(frozen=True)
class Grant:
    """Answer of ``reserve``. Without a ticket a cooldown runs for ``wait_s`` more seconds and the
    caller asks again after it. With a ticket and ``admitted``, go now; otherwise sleep ``wait_s``
    and call ``admit``."""

    wait_s: float
    ticket: Ticket | None
    admitted: bool = False

    @property
    def cooldown(self) -> bool:
        return self.ticket is None


class LocalBackend:
    blocking = False  # calls never do I/O

    def __init__(
        self, bands: tuple[Band, ...], *, source: str = "local", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.bands = bands
        self.source = source
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BucketState(bands, clock())

    @property
    def mode(self) -> str:
        return self.source

    def reserve(self, weight: float) -> Grant:
        with self._lock:
            wait, reservation, admitted = self._state.reserve(weight, self._clock())
        return Grant(wait, Ticket(self.source, reservation) if reservation is not None else None, admitted)

    def admit(self, ticket: Ticket, held_at: float | None = None) -> tuple[str, float, float]:
        """After sleeping for a turn: ``(kind, seconds, slot)``, see ``BucketState.admit``."""
        with self._lock:
            return self._state.admit(ticket.reservation, self._clock(), held_at=held_at)

    def refund(self, ticket: Ticket, gate: bool = False) -> None:
        with self._lock:
            self._state.refund(ticket.reservation, gate=gate)

    def penalize(self, seconds: float) -> float:
        with self._lock:
            return self._state.penalize(seconds, self._clock())

    def cooldown_remaining(self) -> float:
        with self._lock:
            return self._state.cooldown_remaining(self._clock())

    def levels(self) -> dict[str, float]:
        """Current queue level of each band (negative: reservations queued). For tests and stats."""
        with self._lock:
            now = self._clock()
            return {b.name: self._state._level(b, now)[0] for b in self.bands}

    def close(self) -> None:
        pass
