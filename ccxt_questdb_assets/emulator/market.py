"""Deterministic synthetic market: the emulator's data and the tests' ground truth.

``SyntheticMarket`` answers every query (bars of any timeframe, trades by time or by id, forward
or backward) from the closed-form model of :mod:`.market_model`, at a cost proportional to the
page asked for; complete hours and days are memoised (:mod:`.market_days`), trades are scanned by
:mod:`.market_trades`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np

from ccxt_questdb_assets.emulator.market_days import DayBars, minute_bars
from ccxt_questdb_assets.emulator.market_model import DEFAULT_SYMBOLS, Sym, SymbolSpec, listing_spec
from ccxt_questdb_assets.emulator.market_rows import (
    Bars,
    Trade,
    TradesArr,
    aggregate,
    concat_bars,
    empty_bars,
    empty_trades,
)
from ccxt_questdb_assets.emulator.market_time import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    SECOND_MS,
    TIMEFRAMES,
    bar_open,
    first_open_at_or_after,
    format_decimal,
    next_bar_open,
    shift_bars,
    timeframe_ms,
)
from ccxt_questdb_assets.emulator.market_trades import scan_backward, scan_forward, trades_between

# The market's vocabulary, from the modules that define it: importers need only this one.
__all__ = [
    "DAY_MS",
    "DEFAULT_SYMBOLS",
    "HOUR_MS",
    "MINUTE_MS",
    "TIMEFRAMES",
    "Bars",
    "SymbolSpec",
    "SyntheticMarket",
    "Trade",
    "TradesArr",
    "aggregate",
    "bar_open",
    "format_decimal",
    "listing_spec",
    "next_bar_open",
    "shift_bars",
    "timeframe_ms",
]


class SyntheticMarket:
    """Ground truth for the emulator. All ``now_ms=None`` arguments mean "no cut at now".

    Time ranges of the public methods are half-open ``[start_ms, end_ms)``.
    """

    def __init__(self, specs: Iterable[SymbolSpec] = DEFAULT_SYMBOLS, *, cache_days: int = 12_000) -> None:
        self._syms = {s.symbol: Sym(s) for s in specs}
        self._by_ccxt = {s.ccxt_symbol: s.symbol for s in specs}
        self._days = DayBars(cache_days)
        self._lock = threading.Lock()

    # ---- metadata
    @property
    def symbols(self) -> list[str]:
        """Exchange ids, e.g. ``BTCUSDT``."""
        return list(self._syms)

    def spec(self, symbol: str) -> SymbolSpec:
        return self._sym(symbol).spec

    def _sym(self, symbol: str) -> Sym:
        sid = self._by_ccxt.get(symbol, symbol)
        try:
            return self._syms[sid]
        except KeyError:
            raise KeyError(f"unknown symbol {symbol!r}; known: {', '.join(self._syms)}") from None

    def has_symbol(self, symbol: str) -> bool:
        return symbol in self._syms

    def add_symbol(self, spec: SymbolSpec) -> None:
        """List a new market (the emulator's ``POST /_emulator/market``); ValueError if already listed."""
        sym = Sym(spec)  # validates
        with self._lock:
            if spec.symbol in self._syms or spec.ccxt_symbol in self._by_ccxt:
                raise ValueError(f"symbol {spec.symbol} ({spec.ccxt_symbol}) is already listed")
            self._syms = {**self._syms, spec.symbol: sym}
            self._by_ccxt = {**self._by_ccxt, spec.ccxt_symbol: spec.symbol}

    def remove_symbol(self, symbol: str) -> SymbolSpec:
        """Delist ``symbol`` (exchange id or ccxt symbol) and drop its cached days."""
        sym = self._sym(symbol)
        with self._lock:
            self._syms = {k: v for k, v in self._syms.items() if k != sym.spec.symbol}
            self._by_ccxt = {k: v for k, v in self._by_ccxt.items() if v != sym.spec.symbol}
        self._days.forget(sym.spec.symbol)
        return sym.spec

    def listing_ms(self, symbol: str) -> int:
        return self._sym(symbol).spec.listing_ms

    def outages(self, symbol: str) -> list[tuple[int, int]]:
        return list(self._sym(symbol).spec.outages)

    # ---- bars
    def _base_bars(self, sym: Sym, level: str, a: int, b: int, now_ms: int | None) -> Bars:
        """Bars of ``level`` ('1s', '1m', '1h' or '1d') with open time in [a, b) (aligned)."""
        if level == "1s":
            tr = trades_between(sym, a, b, now_ms)
            if len(tr) == 0:
                return empty_bars()
            one = Bars(
                tr.ts,
                tr.price,
                tr.price,
                tr.price,
                tr.price,
                tr.qty,
                np.ones(len(tr), dtype=np.int64),
                tr.qty * tr.price,
                np.where(tr.buyer_maker, 0, tr.qty),
            )
            return aggregate(one, tr.ts - tr.ts % SECOND_MS)
        if level == "1m":
            return minute_bars(sym, a // MINUTE_MS, -(-b // MINUTE_MS), now_ms)
        entries = self._days.entries(sym, a // DAY_MS, -(-b // DAY_MS), now_ms)
        idx = 0 if level == "1h" else 1
        bars = concat_bars([e[idx] for e in entries])
        if len(bars) and (bars.t[0] < a or bars.t[-1] >= b):
            bars = bars.take((bars.t >= a) & (bars.t < b))
        return bars

    def bars(self, symbol: str, timeframe: str, start_ms: int, end_ms: int, now_ms: int | None = None) -> Bars:
        """Bars whose open time is in ``[start_ms, end_ms)``; empty bars are omitted."""
        sym = self._sym(symbol)
        if timeframe not in TIMEFRAMES:
            raise KeyError(f"unknown timeframe {timeframe!r}; valid: {', '.join(TIMEFRAMES)}")
        lo = max(first_open_at_or_after(start_ms, timeframe), int(bar_open(sym.spec.listing_ms, timeframe)))
        upper = end_ms if now_ms is None else min(end_ms, now_ms + 1)
        if upper <= lo:
            return empty_bars()
        hi = first_open_at_or_after(upper, timeframe)
        dur = TIMEFRAMES[timeframe]
        if timeframe == "1s":
            level = "1s"
        elif dur is not None and dur < HOUR_MS:
            level = "1m"
        elif dur is not None and dur < DAY_MS:
            level = "1h"
        else:
            level = "1d"
        base = self._base_bars(sym, level, lo, hi, now_ms)
        if timeframe == level:
            return base
        return aggregate(base, bar_open(base.t, timeframe))

    def candles(
        self, symbol: str, timeframe: str, start_ms: int, end_ms: int, now_ms: int | None = None
    ) -> list[list[float]]:
        """``[[open_ms, open, high, low, close, volume], ...]`` exactly as ccxt's fetch_ohlcv parses them."""
        return self.bars_to_ohlcv(symbol, self.bars(symbol, timeframe, start_ms, end_ms, now_ms))

    def bars_to_ohlcv(self, symbol: str, bars: Bars) -> list[list[float]]:
        sym = self._sym(symbol)
        cols = [bars.t.tolist()] + [(a / sym.tick_div).tolist() for a in (bars.o, bars.h, bars.l, bars.c)]
        cols.append((bars.v / sym.lot_div).tolist())
        return [list(r) for r in zip(*cols, strict=True)]

    # ---- trades
    def trades_array(self, symbol: str, start_ms: int, end_ms: int, now_ms: int | None = None) -> TradesArr:
        """Aggregate trades with timestamp in ``[start_ms, end_ms)`` (and ``<= now_ms``)."""
        return trades_between(self._sym(symbol), start_ms, end_ms, now_ms)

    def trades(self, symbol: str, start_ms: int, end_ms: int, now_ms: int | None = None) -> list[Trade]:
        """Like :meth:`trades_array` but as :class:`Trade` tuples with ccxt-parsed floats."""
        return self.to_trades(symbol, self.trades_array(symbol, start_ms, end_ms, now_ms))

    def to_trades(self, symbol: str, tr: TradesArr) -> list[Trade]:
        sym = self._sym(symbol)
        prices = (tr.price / sym.tick_div).tolist()
        amounts = (tr.qty / sym.lot_div).tolist()
        sides = np.where(tr.buyer_maker, "sell", "buy").tolist()
        return [Trade(*r) for r in zip(tr.id.tolist(), tr.ts.tolist(), prices, amounts, sides, strict=True)]

    def select_agg_trades(
        self,
        symbol: str,
        *,
        from_id: int | None,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
        now_ms: int | None,
    ) -> TradesArr:
        """Binance ``aggTrades`` selection (params already validated; endTime inclusive)."""
        sym = self._sym(symbol)
        if from_id is not None:
            return scan_forward(sym, sym.id_to_minute(from_id), limit, now_ms, min_id=from_id)
        if start_ms is not None:
            if end_ms is not None and end_ms < start_ms:
                return empty_trades()
            return scan_forward(sym, start_ms // MINUTE_MS, limit, now_ms, t_lo=start_ms, t_hi=end_ms)
        hi = end_ms if end_ms is not None else (now_ms if now_ms is not None else None)
        if now_ms is not None and hi is not None:
            hi = min(hi, now_ms)
        if hi is None:
            raise ValueError("select_agg_trades needs now_ms or a time bound")
        return scan_backward(sym, hi, limit)

    def trades_from_id(self, symbol: str, from_id: int, limit: int, now_ms: int | None = None) -> list[Trade]:
        """Up to ``limit`` trades with id >= ``from_id``, as ccxt parses them."""
        return self.to_trades(
            symbol,
            self.select_agg_trades(symbol, from_id=from_id, start_ms=None, end_ms=None, limit=limit, now_ms=now_ms),
        )

    def select_bars(
        self, symbol: str, timeframe: str, *, start_ms: int | None, end_ms: int | None, limit: int, now_ms: int | None
    ) -> Bars:
        """Binance ``klines`` selection: open time >= startTime, <= endTime (inclusive), ascending."""
        sym = self._sym(symbol)
        upper = end_ms
        if now_ms is not None:
            upper = now_ms if upper is None else min(upper, now_ms)
        if upper is None:
            raise ValueError("select_bars needs now_ms or endTime")
        listing_open = int(bar_open(sym.spec.listing_ms, timeframe))
        parts: list[Bars] = []
        got = 0
        sparse = 20 if timeframe == "1s" else 1  # most seconds have no trade, so no 1s bar
        if start_ms is not None:
            lo = max(first_open_at_or_after(start_ms, timeframe), listing_open)
            while got < limit and lo <= upper:
                hi = shift_bars(lo, (limit - got) * sparse, timeframe)
                b = self.bars(symbol, timeframe, lo, min(hi, upper + 1), now_ms)
                parts.append(b)
                got += len(b)
                lo = hi
                lo = max(lo, self._skip_outage_bar(sym, lo, timeframe))
            return concat_bars(parts).take(slice(0, limit))
        hi = shift_bars(int(bar_open(upper, timeframe)), 1, timeframe)
        while got < limit and hi > listing_open:
            lo = shift_bars(hi, -(limit - got) * sparse, timeframe)
            b = self.bars(symbol, timeframe, lo, min(hi, upper + 1), now_ms)
            parts.insert(0, b)
            got += len(b)
            hi = lo
        out = concat_bars(parts)
        return out.take(slice(max(0, len(out) - limit), None))

    @staticmethod
    def _skip_outage_bar(sym: Sym, lo: int, timeframe: str) -> int:
        for s, e in sym.spec.outages:
            if s <= lo < e:
                return first_open_at_or_after(e, timeframe)
        return lo

    # ---- formatting (Binance wire format)
    def price_str(self, symbol: str, ticks: int) -> str:
        return format_decimal(ticks, self._sym(symbol).spec.price_decimals)

    def qty_str(self, symbol: str, lots: int) -> str:
        return format_decimal(lots, self._sym(symbol).spec.qty_decimals)
