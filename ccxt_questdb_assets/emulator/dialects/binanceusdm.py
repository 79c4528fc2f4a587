"""Binance USD-M futures' public REST dialect: ``/fapi/v1/ping | time | exchangeInfo | klines | aggTrades``.

Every synthetic market is served as a USDⓈ-M perpetual of the same id (``BTCUSDT``, ccxt symbol
``BTC/USDT:USDT``) with the same price series as the spot dialect. Futures differ from spot in
what this module does: decimals printed with exactly the symbol's precision (``"30123.45"``, not
8 places), no ``M`` field in aggregate trades, ``limit`` up to 1500 for klines with a weight that
grows with it, ``startTime > endTime`` refused (-1023), a 2400 weight-per-minute budget and its
own 429/418 wording. Parameter parsing and row formatting are the spot module's (see
docs/exchanges/binanceusdm.md for the sources and the emulator's choices).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ccxt_questdb_assets.emulator.dialects.base import Answer, Dialect, Route
from ccxt_questdb_assets.emulator.dialects.binance import (
    agg_json,
    dec_formatter,
    klines_json,
    mangle_bare_rows,
    other_fault,
    price_and_lot_filters,
)
from ccxt_questdb_assets.emulator.dialects.binance_params import (
    AGG_TRADES_MAX_WINDOW_MS,
    BinanceError,
    agg_trades_query,
    kline_query,
)
from ccxt_questdb_assets.emulator.market import TIMEFRAMES

if TYPE_CHECKING:
    from ccxt_questdb_assets.emulator.faults import FaultRule
    from ccxt_questdb_assets.emulator.state import EmulatorState

__all__ = ["BINANCEUSDM", "FUTURES_STATUS", "INTERVALS", "KLINES_MAX_LIMIT", "WEIGHT_LIMIT", "klines_weight"]

NAME = "binanceusdm"
WEIGHT_LIMIT = 2400
KLINES_MAX_LIMIT = 1500
AGG_MAX_LIMIT = 1000
#: ``deliveryDate`` of every perpetual (2100-12-25), which ccxt also reads as "no expiry".
PERPETUAL_DELIVERY_MS = 4133404800000
#: USD-M kline intervals: the spot ones without ``1s``.
INTERVALS = tuple(tf for tf in TIMEFRAMES if tf != "1s")
#: Spot status of a market listed at runtime -> the contract status USD-M shows for it.
FUTURES_STATUS = {"TRADING": "TRADING", "PRE_TRADING": "PENDING_TRADING"}
_IP = "127.0.0.1"

_PATHS = {
    "ping": "/fapi/v1/ping",
    "time": "/fapi/v1/time",
    "exchangeInfo": "/fapi/v1/exchangeInfo",
    "klines": "/fapi/v1/klines",
    "aggTrades": "/fapi/v1/aggTrades",
}
#: Weights per path; klines by ``limit`` (``klines_weight``).
_WEIGHTS = {"ping": 1, "time": 1, "exchangeInfo": 1, "klines": 1, "aggTrades": 20}


def _klines_cost(q: Any) -> int:
    """The weight of a klines request: by its ``limit`` (default 500)."""
    return klines_weight(int(q.get("limit") or 500))


def klines_weight(limit: int) -> int:
    """USD-M klines weight by ``limit``: [1,100) 1, [100,500) 2, [500,1000] 5, > 1000 10."""
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


# ----------------------------------------------------------------------------- exchangeInfo


def _status(state: EmulatorState, symbol: str) -> str:
    spot = state.status.get(symbol, "TRADING")
    if spot == "TRADING" and state.market.listing_ms(symbol) > state.clock.now_ms():
        return "PENDING_TRADING"
    return FUTURES_STATUS.get(spot, "SETTLING")


def _symbol_info(state: EmulatorState, symbol: str) -> dict[str, Any]:
    spec = state.market.spec(symbol)
    fp = dec_formatter(spec.price_decimals, 0)
    fq = dec_formatter(spec.qty_decimals, 0)
    return {
        "symbol": spec.symbol,
        "pair": spec.symbol,
        "contractType": "PERPETUAL",
        "deliveryDate": PERPETUAL_DELIVERY_MS,
        "onboardDate": spec.listing_ms,
        "status": _status(state, spec.symbol),
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": spec.base,
        "quoteAsset": spec.quote,
        "marginAsset": spec.quote,
        "pricePrecision": spec.price_decimals,
        "quantityPrecision": spec.qty_decimals,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "settlePlan": 0,
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            *price_and_lot_filters(spec, fp, fq),
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": fq(1),
                "maxQty": fq(100 * 10**spec.qty_decimals),
                "stepSize": fq(1),
            },
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": "5"},
            {
                "filterType": "PERCENT_PRICE",
                "multiplierUp": "1.0500",
                "multiplierDown": "0.9500",
                "multiplierDecimal": "4",
            },
            {"filterType": "POSITION_RISK_CONTROL", "positionControlSide": "NONE"},
        ],
        "orderTypes": [
            "LIMIT",
            "MARKET",
            "STOP",
            "STOP_MARKET",
            "TAKE_PROFIT",
            "TAKE_PROFIT_MARKET",
            "TRAILING_STOP_MARKET",
        ],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        "permissionSets": ["GRID", "COPY"],
    }


def futures_rate_limits(weight_limit: int) -> list[dict[str, Any]]:
    """The request weight (a minute) and order (a minute) limits a Binance futures API announces."""
    return [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": weight_limit},
        {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
    ]


def _exchange_info(state: EmulatorState, q: Any) -> Any:
    names = state.market.symbols
    quotes = sorted({state.market.spec(s).quote for s in names})
    return {
        "timezone": "UTC",
        "serverTime": state.clock.now_ms(),
        "futuresType": "U_MARGINED",
        "rateLimits": [
            *futures_rate_limits(state.budgets[NAME].limit),
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
        ],
        "exchangeFilters": [],
        "assets": [{"asset": a, "marginAvailable": True, "autoAssetExchange": "-10000"} for a in quotes],
        "symbols": [_symbol_info(state, s) for s in names],
    }


# ----------------------------------------------------------------------------- market data


def _ping(state: EmulatorState, q: Any) -> Any:
    return {}


def _time(state: EmulatorState, q: Any) -> Any:
    return {"serverTime": state.clock.now_ms()}


def _start_after_end() -> BinanceError:
    return BinanceError(-1023, "Start time is greater than end time.")


def _klines(state: EmulatorState, q: Any) -> Any:
    symbol, interval, start, end, limit = kline_query(state, q, INTERVALS, KLINES_MAX_LIMIT)
    if start is not None and end is not None and end < start:
        raise _start_after_end()
    now = state.clock.now_ms()
    bars = state.market.select_bars(symbol, interval, start_ms=start, end_ms=end, limit=limit, now_ms=now)
    return klines_json(state, symbol, interval, bars, width=0, now_ms=now)


def _agg_trades(state: EmulatorState, q: Any) -> Any:
    symbol, from_id, start, end, limit = agg_trades_query(state, q, AGG_MAX_LIMIT)
    if start is not None and end is not None:
        if end < start:
            raise _start_after_end()
        if end - start > AGG_TRADES_MAX_WINDOW_MS:
            raise BinanceError(-1127, "More than 1 hours between startTime and endTime.")
    market, now = state.market, state.clock.now_ms()
    if from_id is None:
        tr = market.select_agg_trades(symbol, from_id=None, start_ms=start, end_ms=end, limit=limit, now_ms=now)
        return agg_json(state, symbol, tr, width=0, best_match=False)
    # fromId with a time bound (USD-M accepts it): ids >= fromId with startTime <= T <= endTime, ascending.
    # Ids grow with T, so that is the run from max(fromId, first id at/after startTime), cut at endTime.
    cursor = from_id
    if start is not None:
        first = market.select_agg_trades(symbol, from_id=None, start_ms=start, end_ms=None, limit=1, now_ms=now)
        if len(first) == 0:
            return agg_json(state, symbol, first, width=0, best_match=False)
        cursor = max(cursor, int(first.id[0]))
    tr = market.select_agg_trades(symbol, from_id=cursor, start_ms=None, end_ms=None, limit=limit, now_ms=now)
    if end is not None:
        tr = tr.take(tr.ts <= end)
    return agg_json(state, symbol, tr, width=0, best_match=False)


_HANDLERS = {"ping": _ping, "time": _time, "exchangeInfo": _exchange_info, "klines": _klines, "aggTrades": _agg_trades}


def _too_many(limit: int) -> dict[str, Any]:
    return {
        "code": -1003,
        "msg": f"Too many requests; current limit of IP({_IP}) is {limit} requests per minute. "
        "Please use the websocket for live updates to avoid polling the API.",
    }


class _BinanceUsdm(Dialect):
    """Binance USD-M futures: weights per path (klines by ``limit``) against 2400 per minute."""

    name = NAME
    routes = {
        _PATHS[k]: Route(handler, _WEIGHTS[k], _klines_cost if k == "klines" else None)
        for k, handler in _HANDLERS.items()
    }
    default_limit = WEIGHT_LIMIT
    budget_window_s = 60

    def headers(self, used: int) -> dict[str, str]:
        return {"X-MBX-USED-WEIGHT-1M": str(used)}

    def rate_limited(self, retry_after_s: int, used: int, limit: int) -> Answer:
        return Answer(429, _too_many(limit), self.headers(used))

    def fault(self, rule: FaultRule, used: int) -> Answer:
        headers = self.headers(used)
        kind = rule.kind
        if kind in ("429", "418") and rule.retry_after is not None:
            headers["Retry-After"] = str(rule.retry_after)
        if kind == "429":
            return Answer(429, _too_many(WEIGHT_LIMIT), headers)
        if kind == "418":
            until = int(time.time() * 1000) + 1000 * (rule.retry_after if rule.retry_after is not None else 120)
            msg = (
                f"Way too many requests; IP({_IP}) banned until {until}. "
                "Please use the websocket for live updates to avoid bans."
            )
            return Answer(418, {"code": -1003, "msg": msg}, headers)
        return other_fault(kind, headers, "An unknown error occured while processing the request.")

    def mangle(self, rule: FaultRule, payload: Any) -> Any:
        return mangle_bare_rows(rule, payload)


BINANCEUSDM = _BinanceUsdm()
