"""What a running emulator holds: the market, the emulated clock, the request log, the armed
faults, a request budget per dialect and the markets listed at runtime; one per server."""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ccxt_questdb_assets.emulator.archive_state import ArchiveState
from ccxt_questdb_assets.emulator.faults import FaultInjector
from ccxt_questdb_assets.emulator.market import SyntheticMarket, listing_spec
from ccxt_questdb_assets.emulator.rendered_pages import RenderedRows
from ccxt_questdb_assets.emulator.weights import DEFAULT_WEIGHT_LIMIT, WeightBudget

__all__ = ["MARKET_STATUSES", "Clock", "EmulatorState"]

#: Market statuses (Binance spot's; ccxt marks a market active only when ``TRADING``); each dialect
#: shows a market listed at runtime with one of them in its own words.
MARKET_STATUSES = ("TRADING", "PRE_TRADING", "BREAK", "HALT", "END_OF_DAY", "POST_TRADING", "AUCTION_MATCH")


class Clock:
    """The emulated "now": wall clock + offset, or frozen at a fixed ms."""

    def __init__(self) -> None:
        self.frozen_ms: int | None = None
        self.offset_ms = 0

    def now_ms(self) -> int:
        if self.frozen_ms is not None:
            return self.frozen_ms
        return int(time.time() * 1000) + self.offset_ms

    def to_dict(self) -> dict[str, Any]:
        return {"now_ms": self.now_ms(), "frozen_ms": self.frozen_ms, "offset_ms": self.offset_ms}


@dataclass
class EmulatorState:
    """Everything a running emulator holds; one per server."""

    market: SyntheticMarket = field(default_factory=SyntheticMarket)
    clock: Clock = field(default_factory=Clock)
    default_weight_limit: int = DEFAULT_WEIGHT_LIMIT
    log_size: int = 200_000

    def __post_init__(self) -> None:
        self.weights = WeightBudget(self.default_weight_limit)
        #: One request budget per dialect (``add_budget``); Binance's is ``weights``, whose limit
        #: ``default_weight_limit`` sets.
        self.budgets: dict[str, WeightBudget] = {"binance": self.weights}
        self._budget_defaults: dict[str, int] = {}
        self.faults = FaultInjector()
        self.archive = ArchiveState()
        #: Kline rows of closed bars already written as JSON (``rendered_pages``).
        self.pages = RenderedRows()
        self.log: deque[dict[str, Any]] = deque(maxlen=self.log_size)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        #: Binance ``status`` per exchange symbol where not ``TRADING`` (markets listed at runtime).
        self.status: dict[str, str] = {}
        #: Markets listed through the control API, delisted again by ``reset()``.
        self.runtime_symbols: list[str] = []

    def list_market(
        self, base: str, quote: str, *, listing_ms: int | None = None, base_price: float = 10.0, status: str = "TRADING"
    ) -> str:
        """List a new synthetic market now (or at ``listing_ms``); returns its exchange symbol."""
        if status not in MARKET_STATUSES:
            raise ValueError(f"status {status!r} must be one of {', '.join(MARKET_STATUSES)}")
        spec = listing_spec(
            base, quote, self.clock.now_ms() if listing_ms is None else listing_ms, base_price=base_price
        )
        self.market.add_symbol(spec)
        self.runtime_symbols.append(spec.symbol)
        if status != "TRADING":
            self.status[spec.symbol] = status
        return spec.symbol

    def add_budget(self, name: str, limit: int, window_s: int) -> None:
        """Give dialect ``name`` a budget of ``limit`` per ``window_s`` seconds (once; Binance has one)."""
        if name not in self.budgets:
            self.budgets[name] = WeightBudget(limit, window_s=window_s)
            self._budget_defaults[name] = limit

    def next_seq(self) -> int:
        with self._lock:
            return next(self._seq)

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.log.append(entry)

    def requests(self, path: str | None = None, since_seq: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.log if (path is None or e["path"] == path) and e["seq"] > since_seq]

    def reset(self) -> None:
        self.faults.clear()
        self.archive = ArchiveState()
        self.pages = RenderedRows()
        with self._lock:
            self.log.clear()
        self.clock.frozen_ms, self.clock.offset_ms = None, 0
        self.weights.limit = self.default_weight_limit
        for name, budget in self.budgets.items():
            if budget is not self.weights:
                budget.limit = self._budget_defaults[name]
            budget.reset()
        for symbol in self.runtime_symbols:
            self.market.remove_symbol(symbol)
        self.runtime_symbols.clear()
        self.status.clear()
