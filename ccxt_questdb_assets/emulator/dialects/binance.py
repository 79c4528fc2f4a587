"""Binance spot's public REST dialect: ``/api/v3/ping | time | exchangeInfo | klines | aggTrades``
with Binance's parameters, error codes, weights and ``X-MBX-USED-WEIGHT-1M`` header (see
docs/emulator.md for the sources)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ccxt_questdb_assets.emulator.decimals import dec_formatter, dec_template, split_units
from ccxt_questdb_assets.emulator.dialects.base import Answer, Dialect, RawJSON, Route, mangle_rows_at
from ccxt_questdb_assets.emulator.dialects.binance_params import (
    AGG_TRADES_MAX_WINDOW_MS,
    BinanceError,
    agg_trades_query,
    kline_query,
)
from ccxt_questdb_assets.emulator.dialects.pages import gateway_page
from ccxt_questdb_assets.emulator.market import TIMEFRAMES, Bars, SymbolSpec, TradesArr, next_bar_open
from ccxt_questdb_assets.emulator.weights import DEFAULT_WEIGHT_LIMIT, WEIGHTS

if TYPE_CHECKING:
    from ccxt_questdb_assets.emulator.faults import FaultRule
    from ccxt_questdb_assets.emulator.state import EmulatorState

__all__ = [
    "BINANCE",
    "agg_json",
    "dec_formatter",
    "dec_template",
    "klines_json",
    "split_units",
]

# ----------------------------------------------------------------------------- formatting


def klines_json(
    state: EmulatorState, symbol: str, timeframe: str, bars: Bars, width: int = 8, *, now_ms: int | None = None
) -> RawJSON:
    """Binance's 12-field kline rows as JSON text, decimals padded to ``width`` places; rows of bars
    closed by ``now_ms`` are written once and kept (``state.pages``)."""
    spec = state.market.spec(symbol)

    def render(some: Bars) -> list[str]:
        return _kline_rows(spec, timeframe, some, width)

    def bars_between(lo: int, hi: int) -> Bars:
        return state.market.bars(symbol, timeframe, lo, hi)

    rows = state.pages.page(spec, timeframe, bars, now_ms, ("klines", width), render, bars_between)
    return RawJSON("[" + ",".join(rows) + "]")


def _kline_rows(spec: SymbolSpec, timeframe: str, bars: Bars, width: int) -> list[str]:
    """Each bar's row, one %-format per row (4x faster than json.dumps)."""
    pd_, qd, qvd = spec.price_decimals, spec.qty_decimals, spec.price_decimals + spec.qty_decimals
    p, q, qv = dec_template(pd_, width), dec_template(qd, width), dec_template(qvd, width)
    row = f'[%d,{p},{p},{p},{p},{q},%d,{qv},%d,{q},{qv},"0"]'
    dur = TIMEFRAMES[timeframe]
    if dur is not None:
        closes = (bars.t + (dur - 1)).tolist()
    else:
        closes = [next_bar_open(t, timeframe) - 1 for t in bars.t.tolist()]
    with np.errstate(divide="ignore", invalid="ignore"):
        tbq = np.where(bars.v > 0, bars.qv * bars.tb // np.maximum(bars.v, 1), 0)
    cols = [
        bars.t.tolist(),
        *split_units(bars.o, pd_),
        *split_units(bars.h, pd_),
        *split_units(bars.l, pd_),
        *split_units(bars.c, pd_),
        *split_units(bars.v, qd),
        closes,
        *split_units(bars.qv, qvd),
        bars.n.tolist(),
        *split_units(bars.tb, qd),
        *split_units(tbq, qvd),
    ]
    return [row % r for r in zip(*cols, strict=True)]


def agg_json(state: EmulatorState, symbol: str, tr: TradesArr, width: int = 8, best_match: bool = True) -> RawJSON:
    """Aggregate trades ``a p q f l T m`` (+ spot's ``M`` when ``best_match``) as JSON text."""
    spec = state.market.spec(symbol)
    p, q = dec_template(spec.price_decimals, width), dec_template(spec.qty_decimals, width)
    tail = ',"M":true' if best_match else ""
    row = f'{{"a":%d,"p":{p},"q":{q},"f":%d,"l":%d,"T":%d,"m":%s{tail}}}'
    ids = tr.id.tolist()
    cols = [
        ids,
        *split_units(tr.price, spec.price_decimals),
        *split_units(tr.qty, spec.qty_decimals),
        ids,
        ids,
        tr.ts.tolist(),
        np.where(tr.buyer_maker, "true", "false").tolist(),
    ]
    return RawJSON("[" + ",".join([row % r for r in zip(*cols, strict=True)]) + "]")


def _symbol_info(state: EmulatorState, symbol: str) -> dict[str, Any]:
    spec = state.market.spec(symbol)
    fp = dec_formatter(spec.price_decimals)
    fq = dec_formatter(spec.qty_decimals)
    return {
        "symbol": spec.symbol,
        "status": state.status.get(spec.symbol, "TRADING"),
        "baseAsset": spec.base,
        "baseAssetPrecision": 8,
        "quoteAsset": spec.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": [
            "LIMIT",
            "LIMIT_MAKER",
            "MARKET",
            "STOP_LOSS",
            "STOP_LOSS_LIMIT",
            "TAKE_PROFIT",
            "TAKE_PROFIT_LIMIT",
        ],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "amendAllowed": True,
        "pegInstructionsAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            *price_and_lot_filters(spec, fp, fq),
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": "0.00000000",
                "maxQty": fq(100 * 10**spec.qty_decimals),
                "stepSize": "0.00000000",
            },
            {
                "filterType": "TRAILING_DELTA",
                "minTrailingAboveDelta": 10,
                "maxTrailingAboveDelta": 2000,
                "minTrailingBelowDelta": 10,
                "maxTrailingBelowDelta": 2000,
            },
            {
                "filterType": "PERCENT_PRICE_BY_SIDE",
                "bidMultiplierUp": "5",
                "bidMultiplierDown": "0.2",
                "askMultiplierUp": "5",
                "askMultiplierDown": "0.2",
                "avgPriceMins": 5,
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": "5.00000000",
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


# ----------------------------------------------------------------------------- API handlers


def _ping(state: EmulatorState, q: Any) -> Any:
    return {}


def _time(state: EmulatorState, q: Any) -> Any:
    return {"serverTime": state.clock.now_ms()}


def _exchange_info(state: EmulatorState, q: Any) -> Any:
    symbol, symbols_raw = q.get("symbol"), q.get("symbols")
    if symbol is not None and symbols_raw is not None:
        raise BinanceError(-1128, "Combination of optional parameters invalid.")
    if symbol is not None:
        if not state.market.has_symbol(symbol):
            raise BinanceError(-1121, "Invalid symbol.")
        names = [symbol]
    elif symbols_raw is not None:
        try:
            names = json.loads(symbols_raw)
            if not isinstance(names, list) or not all(isinstance(s, str) for s in names):
                raise ValueError
        except ValueError:
            raise BinanceError(-1100, "Illegal characters found in parameter 'symbols'.") from None
        if any(not state.market.has_symbol(s) for s in names):
            raise BinanceError(-1121, "Invalid symbol.")
    else:
        names = state.market.symbols
    return {
        "timezone": "UTC",
        "serverTime": state.clock.now_ms(),
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": state.weights.limit},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
        ],
        "exchangeFilters": [],
        "symbols": [_symbol_info(state, s) for s in names],
    }


def _klines(state: EmulatorState, q: Any) -> Any:
    symbol, interval, start, end, limit = kline_query(state, q, TIMEFRAMES)
    tz = q.get("timeZone")
    if tz not in (None, "0", "+0", "0:00", "00:00", "+00:00"):
        raise BinanceError(-1130, "Data sent for parameter 'timeZone' is not valid.")
    if start is not None and end is not None and end < start:
        return []
    now = state.clock.now_ms()
    bars = state.market.select_bars(symbol, interval, start_ms=start, end_ms=end, limit=limit, now_ms=now)
    return klines_json(state, symbol, interval, bars, now_ms=now)


def _agg_trades(state: EmulatorState, q: Any) -> Any:
    symbol, from_id, start, end, limit = agg_trades_query(state, q)
    if from_id is not None and (start is not None or end is not None):
        raise BinanceError(-1128, "Combination of optional parameters invalid.")
    if start is not None and end is not None:
        if end - start > AGG_TRADES_MAX_WINDOW_MS:
            raise BinanceError(-1127, "More than 1 hours between startTime and endTime.")
        if end < start:
            return []
    tr = state.market.select_agg_trades(
        symbol, from_id=from_id, start_ms=start, end_ms=end, limit=limit, now_ms=state.clock.now_ms()
    )
    return agg_json(state, symbol, tr)


_ROUTES = {
    "/api/v3/ping": _ping,
    "/api/v3/time": _time,
    "/api/v3/exchangeInfo": _exchange_info,
    "/api/v3/klines": _klines,
    "/api/v3/aggTrades": _agg_trades,
}


def price_and_lot_filters(spec: SymbolSpec, fp: Callable[[int], str], fq: Callable[[int], str]) -> list[dict[str, Any]]:
    """The PRICE_FILTER and LOT_SIZE of a symbol (one tick, one lot), as spot and futures list them."""
    return [
        {
            "filterType": "PRICE_FILTER",
            "minPrice": fp(1),
            "maxPrice": fp(10 ** (spec.price_decimals + 7)),
            "tickSize": fp(1),
        },
        {"filterType": "LOT_SIZE", "minQty": fq(1), "maxQty": fq(9000 * 10**spec.qty_decimals), "stepSize": fq(1)},
    ]


def other_fault(kind: str, headers: dict[str, str], unknown_error: str) -> Answer:
    """Binance's answer to an armed 403, 500 or gateway fault (spot and futures word the 500 apart)."""
    if kind == "403":
        return Answer(403, {"code": -1003, "msg": "Too many requests queued."}, headers)
    if kind == "500":
        return Answer(500, {"code": -1000, "msg": unknown_error}, headers)
    return gateway_page(int(kind), headers)


def mangle_bare_rows(rule: FaultRule, payload: Any) -> Any:
    """A data fault on an answer that is a bare list of rows (Binance's)."""
    return mangle_rows_at(rule, payload, payload if isinstance(payload, list) else None, lambda rows: rows)


class _Binance(Dialect):
    """Binance spot: weights per path against a per-minute budget, -1003 on 429/418."""

    name = "binance"
    routes = {path: Route(handler, WEIGHTS[path]) for path, handler in _ROUTES.items()}
    default_limit = DEFAULT_WEIGHT_LIMIT
    budget_window_s = 60

    def headers(self, used: int) -> dict[str, str]:
        return {"X-MBX-USED-WEIGHT-1M": str(used)}

    def rate_limited(self, retry_after_s: int, used: int, limit: int) -> Answer:
        msg = (
            f"Too much request weight used; current limit is {limit} request weight "
            "per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."
        )
        return Answer(429, {"code": -1003, "msg": msg}, {**self.headers(used), "Retry-After": str(retry_after_s)})

    def fault(self, rule: FaultRule, used: int) -> Answer:
        headers = self.headers(used)
        kind = rule.kind
        if kind in ("429", "418"):
            headers["Retry-After"] = str(rule.retry_after if rule.retry_after is not None else 1)
            if kind == "429":
                msg = (
                    "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. "
                    "Please use WebSocket Streams for live updates to avoid polling the API."
                )
            else:
                msg = (
                    "Way too much request weight used; IP banned until 0. Please use WebSocket Streams for "
                    "live updates to avoid bans."
                )
            return Answer(int(kind), {"code": -1003, "msg": msg}, headers)
        return other_fault(kind, headers, "An unknown error occurred while processing the request.")

    def mangle(self, rule: FaultRule, payload: Any) -> Any:
        return mangle_bare_rows(rule, payload)


BINANCE = _Binance()
