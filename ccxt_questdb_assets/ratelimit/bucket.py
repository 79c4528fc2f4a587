"""Token-bucket arithmetic with reservations, an admission gate and a cooldown, in seconds.

Pure and not thread-safe: the local backend calls it under its lock, and ``lua.py`` implements the
same rules inside Redis. Each band keeps two buckets with the same rate and capacity:

* the **queue** (``tokens``/``ts``) hands out turns. ``reserve`` never refuses: it subtracts the
  cost now (the level may go negative, i.e. a queue of reservations) and returns how long the
  caller must sleep before its turn. Waiters therefore sleep exactly for their deficit, first come
  first served, with no polling.
* the **gate** (``gate_tokens``/``gate_ts``) is charged at the instant a request is really let
  through (``admit``, after the sleep). A caller that wakes late (CPU starvation, a blocked event
  loop, a slow Redis round trip) finds the tokens of the callers that went on time already gone:
  ``admit`` then takes the gate's next token for it (the gate queues too, so several such callers
  get successive slots instead of racing for one) and the caller sleeps that deficit and goes
  after a last cooldown check (or passes the gate again if it came back late once more). So the
  admissions themselves, not only the turns, obey the bucket: in any window of ``T`` seconds at
  most ``capacity + rate * (T + GATE_SLACK_S)`` tokens go through, with at most three backend
  calls per admission.

Other rules:

* A request needs ``min(cost, capacity)`` tokens, so a weight above the burst is admitted when the
  bucket is full and leaves the bucket in debt (the long-run rate still holds).
* ``refund`` gives back a turn that was not used (cancelled, timed out, cooldown).
* ``penalize`` starts a cooldown: nothing is admitted before it ends, outstanding debt is kept and
  refill restarts at the end of the cooldown, so the exchange sees no burst right after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ccxt_questdb_assets.ratelimit.config import Band

EPSILON_S = 1e-6
#: The gate lets a request through this early (sleep and clock granularity, Redis vs host clock,
#: the jitter of a round trip): small lateness does not make the next caller wait again.
GATE_SLACK_S = 0.01
#: A caller whose gate token was held comes back this late at most and still goes on that token;
#: later (it was stalled), it passes the gate again like a new caller. Without this, every caller
#: held during a stall of the whole machine would go at once when it ends.
HELD_LATE_S = 0.05

GO, COOLDOWN, WAIT = "go", "cooldown", "wait"


@dataclass(frozen=True)
class Reservation:
    """Tokens taken from each band (``(band name, cost)`` pairs)."""

    costs: tuple[tuple[str, float], ...]


def _level(band: Band, tokens: float, ts: float, now: float) -> tuple[float, float]:
    if now > ts:
        tokens = min(band.capacity, tokens + (now - ts) * band.rate_per_s)
        ts = now
    return tokens, ts


def _deficit(band: Band, tokens: float, ts: float, now: float, cost: float) -> float:
    need = min(cost, band.capacity)
    return max(0.0, ts - now) + max(0.0, need - tokens) / band.rate_per_s


@dataclass
class BucketState:
    bands: tuple[Band, ...]
    now: float
    tokens: dict[str, float] = field(init=False)
    ts: dict[str, float] = field(init=False)
    gate_tokens: dict[str, float] = field(init=False)
    gate_ts: dict[str, float] = field(init=False)
    cooldown_until: float = field(init=False, default=float("-inf"))

    def __post_init__(self) -> None:
        self.tokens = {b.name: float(b.capacity) for b in self.bands}
        self.ts = {b.name: self.now for b in self.bands}
        self.gate_tokens = dict(self.tokens)
        self.gate_ts = dict(self.ts)

    def _band(self, name: str) -> Band | None:
        for b in self.bands:
            if b.name == name:
                return b
        return None

    def _level(self, band: Band, now: float) -> tuple[float, float]:
        return _level(band, self.tokens[band.name], self.ts[band.name], now)

    def _gate_level(self, band: Band, now: float) -> tuple[float, float]:
        return _level(band, self.gate_tokens[band.name], self.gate_ts[band.name], now)

    def cooldown_remaining(self, now: float) -> float:
        return max(0.0, self.cooldown_until - now)

    def reserve(self, weight: float, now: float) -> tuple[float, Reservation | None, bool]:
        """``(wait, reservation, admitted)``.

        ``reservation`` is None while a cooldown runs (``wait`` is its rest). Otherwise the turn is
        taken; ``admitted`` means the gate let it through at once (``wait`` 0), else the caller
        sleeps ``wait`` and then calls :meth:`admit`.
        """
        cooldown = self.cooldown_remaining(now)
        if cooldown > 0:
            return cooldown, None, False
        wait = 0.0
        costs = []
        for band in self.bands:
            tokens, ts = self._level(band, now)
            cost = band.cost(weight)
            wait = max(wait, _deficit(band, tokens, ts, now, cost))
            self.tokens[band.name] = tokens - cost
            self.ts[band.name] = ts
            costs.append((band.name, cost))
        reservation = Reservation(tuple(costs))
        if wait > EPSILON_S:
            return wait, reservation, False
        gate_wait = self._gate_wait(reservation, now)
        if gate_wait > 0:
            return gate_wait, reservation, False
        self._charge_gate(reservation, now)
        return 0.0, reservation, True

    def _gate_wait(self, reservation: Reservation, now: float) -> float:
        wait = 0.0
        for name, cost in reservation.costs:
            band = self._band(name)
            if band is None:
                continue
            tokens, ts = self._gate_level(band, now)
            wait = max(wait, _deficit(band, tokens, ts, now, cost))
        return wait if wait > GATE_SLACK_S else 0.0

    def _charge_gate(self, reservation: Reservation, now: float) -> None:
        for name, cost in reservation.costs:
            band = self._band(name)
            if band is None:
                continue
            tokens, ts = self._gate_level(band, now)
            self.gate_tokens[name] = tokens - cost
            self.gate_ts[name] = ts

    def admit(self, reservation: Reservation, now: float, *, held_at: float | None = None) -> tuple[str, float, float]:
        """After sleeping for a turn: ``(GO, 0, now)`` (the gate is charged: send now),
        ``(COOLDOWN, rest, now)`` (a cooldown started meanwhile: refund, wait it out, reserve
        again) or ``(WAIT, s, slot)`` (late callers took the gate's tokens: the next one, at
        ``slot``, is now held for this caller; sleep ``s`` and call again with ``held_at=slot``,
        which only checks the cooldown, unless the caller comes back more than ``HELD_LATE_S``
        after its slot)."""
        cooldown = self.cooldown_remaining(now)
        if cooldown > 0:
            return COOLDOWN, cooldown, now
        if held_at is not None and now <= held_at + HELD_LATE_S:
            return GO, 0.0, now
        wait = self._gate_wait(reservation, now)
        self._charge_gate(reservation, now)
        return (WAIT, wait, now + wait) if wait > 0 else (GO, 0.0, now)

    def refund(self, reservation: Reservation, *, gate: bool = False) -> None:
        """Give back a turn (and, with ``gate``, a held gate token) that was never used."""
        for name, cost in reservation.costs:
            band = self._band(name)
            if band is not None:
                self.tokens[name] = min(band.capacity, self.tokens[name] + cost)
                if gate:
                    self.gate_tokens[name] = min(band.capacity, self.gate_tokens[name] + cost)

    def penalize(self, seconds: float, now: float) -> float:
        """Start (or extend) the cooldown to at least ``now + seconds``; returns its remaining length."""
        until = max(self.cooldown_until, now + max(0.0, seconds))
        for band in self.bands:
            tokens, _ = self._level(band, now)
            self.tokens[band.name] = min(tokens, 0.0)
            self.ts[band.name] = max(self.ts[band.name], until)
            gtokens, _ = self._gate_level(band, now)
            self.gate_tokens[band.name] = min(gtokens, 0.0)
            self.gate_ts[band.name] = max(self.gate_ts[band.name], until)
        self.cooldown_until = until
        return until - now
