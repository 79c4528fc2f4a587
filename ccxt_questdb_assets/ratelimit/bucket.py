"""Token-bucket arithmetic with reservations and a cooldown, in seconds of a monotonic clock.

Pure and not thread-safe: the local backend calls it under its lock, and ``lua.py`` implements the
same rules inside Redis. Rules:

* Each band holds ``tokens`` valid at time ``ts`` and refills at ``rate_per_s`` up to ``capacity``.
* ``reserve`` never refuses: it subtracts the cost now (the level may go negative, i.e. a queue of
  reservations) and returns how long the caller must wait before its slot. Waiters therefore sleep
  exactly for their deficit, first come first served, with no polling.
* A request needs ``min(cost, capacity)`` tokens, so a weight above the burst is admitted when the
  bucket is full and leaves the bucket in debt (the long-run rate still holds).
* ``refund`` gives back a reservation that was not used (cancelled, timed out, cooldown).
* ``penalize`` starts a cooldown: nothing is admitted before it ends, outstanding debt is kept and
  refill restarts at the end of the cooldown, so the exchange sees no burst right after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ccxt_questdb_assets.ratelimit.config import Band

EPSILON_S = 1e-6


@dataclass(frozen=True)
class Reservation:
    """Tokens taken from each band (``(band name, cost)`` pairs)."""

    costs: tuple[tuple[str, float], ...]


@dataclass
class BucketState:
    bands: tuple[Band, ...]
    now: float
    tokens: dict[str, float] = field(init=False)
    ts: dict[str, float] = field(init=False)
    cooldown_until: float = field(init=False, default=float("-inf"))

    def __post_init__(self) -> None:
        self.tokens = {b.name: float(b.capacity) for b in self.bands}
        self.ts = {b.name: self.now for b in self.bands}

    def _level(self, band: Band, now: float) -> tuple[float, float]:
        tokens, ts = self.tokens[band.name], self.ts[band.name]
        if now > ts:
            tokens = min(band.capacity, tokens + (now - ts) * band.rate_per_s)
            ts = now
        return tokens, ts

    def cooldown_remaining(self, now: float) -> float:
        return max(0.0, self.cooldown_until - now)

    def reserve(self, weight: float, now: float) -> tuple[float, Reservation | None]:
        """(wait, reservation); ``reservation`` is None while a cooldown runs (wait = its rest)."""
        cooldown = self.cooldown_remaining(now)
        if cooldown > 0:
            return cooldown, None
        wait = 0.0
        costs = []
        for band in self.bands:
            tokens, ts = self._level(band, now)
            cost = band.cost(weight)
            need = min(cost, band.capacity)
            band_wait = max(0.0, ts - now) + max(0.0, need - tokens) / band.rate_per_s
            wait = max(wait, band_wait)
            self.tokens[band.name] = tokens - cost
            self.ts[band.name] = ts
            costs.append((band.name, cost))
        return (wait if wait > EPSILON_S else 0.0), Reservation(tuple(costs))

    def refund(self, reservation: Reservation) -> None:
        caps = {b.name: b.capacity for b in self.bands}
        for name, cost in reservation.costs:
            if name in self.tokens:
                self.tokens[name] = min(caps[name], self.tokens[name] + cost)

    def penalize(self, seconds: float, now: float) -> float:
        """Start (or extend) the cooldown to at least ``now + seconds``; returns its remaining length."""
        until = max(self.cooldown_until, now + max(0.0, seconds))
        for band in self.bands:
            tokens, _ = self._level(band, now)
            self.tokens[band.name] = min(tokens, 0.0)
            self.ts[band.name] = max(self.ts[band.name], until)
        self.cooldown_until = until
        return until - now
