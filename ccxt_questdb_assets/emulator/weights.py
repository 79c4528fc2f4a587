"""Binance spot request weights and the per-minute weight budget.

Weights are the ones Binance's spot REST docs declare (see docs/emulator.md for sources).
The budget is a fixed window aligned to the wall-clock minute, like Binance's
``X-MBX-USED-WEIGHT-1M``; it uses the real clock even when the emulated clock is frozen.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

__all__ = ["DEFAULT_WEIGHT_LIMIT", "WEIGHTS", "WeightBudget", "WeightCharge"]

DEFAULT_WEIGHT_LIMIT = 6000

WEIGHTS: dict[str, int] = {
    "/api/v3/ping": 1,
    "/api/v3/time": 1,
    "/api/v3/exchangeInfo": 20,
    "/api/v3/klines": 2,
    "/api/v3/aggTrades": 4,
}


@dataclass(frozen=True)
class WeightCharge:
    ok: bool
    used: int  # weight used in the current minute, including this request
    retry_after_s: int  # seconds until the window resets (meaningful when not ok)


class WeightBudget:
    """Request-weight counter over a fixed window (a minute by default); requests over the limit still count."""

    def __init__(self, limit: int = DEFAULT_WEIGHT_LIMIT, *, window_s: int = 60, clock=time.time) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._window = -1
        self._used = 0
        self._lock = threading.Lock()

    def _roll(self) -> float:
        now = self._clock()
        window = int(now // self.window_s)
        if window != self._window:
            self._window, self._used = window, 0
        return now

    def used(self) -> int:
        with self._lock:
            self._roll()
            return self._used

    def charge(self, weight: int) -> WeightCharge:
        with self._lock:
            now = self._roll()
            self._used += weight
            ok = self._used <= self.limit
            retry = max(1, math.ceil((self._window + 1) * self.window_s - now))
            return WeightCharge(ok, self._used, retry)

    def reset(self) -> None:
        with self._lock:
            self._window, self._used = -1, 0
