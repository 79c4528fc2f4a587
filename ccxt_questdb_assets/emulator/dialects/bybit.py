"""Bybit v5's public REST dialect: ``/v5/market/time | instruments-info | kline | recent-trade``.

Spot (``category=spot``) and the USDT perpetual (``category=linear``) of every synthetic market
share one price series under the same instrument id (``BTCUSDT``). Answers use Bybit's envelope
``{"retCode", "retMsg", "result", "retExtInfo", "time"}``; errors are HTTP 200 with a non-zero
``retCode``; the IP limit (600 requests per 5 s) answers HTTP 403 ``access too frequent``.
See docs/exchanges/bybit.md for parameters, sources and the emulator's choices.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from ccxt_questdb_assets.emulator.dialects.base import Answer, Dialect, DialectError, Route, mangle_rows_at
from ccxt_questdb_assets.emulator.dialects.pages import gateway_page
from ccxt_questdb_assets.emulator.market import bar_open

if TYPE_CHECKING:
    from ccxt_questdb_assets.emulator.faults import FaultRule
    from ccxt_questdb_assets.emulator.market import SymbolSpec, TradesArr
    from ccxt_questdb_assets.emulator.state import EmulatorState

__all__ = ["BYBIT", "INTERVALS", "SPOT_EXEC_ID_BASE", "BybitError", "exec_id"]

#: Bybit kline ``interval`` -> the synthetic market's timeframe.
INTERVALS: dict[str, str] = {
    "1": "1m",
    "3": "3m",
    "5": "5m",
    "15": "15m",
    "30": "30m",
    "60": "1h",
    "120": "2h",
    "240": "4h",
    "360": "6h",
    "720": "12h",
    "D": "1d",
    "W": "1w",
    "M": "1M",
}
KLINE_DEFAULT_LIMIT, KLINE_MAX_LIMIT = 200, 1000
#: recent-trade ``limit`` (default, max) per category.
TRADE_LIMITS = {"spot": (60, 60), "linear": (500, 1000)}
INSTRUMENTS_DEFAULT_LIMIT, INSTRUMENTS_MAX_LIMIT = 500, 1000
#: Spot execIds are 19-digit decimal strings on Bybit ("2100000000007764263"): base + trade id.
SPOT_EXEC_ID_BASE = 2_100_000_000_000_000_000
IP_LIMIT, IP_WINDOW_S = 600, 5
#: Binance-style statuses of runtime-listed markets (``state.status``) -> Bybit instrument status.
_STATUS = {"TRADING": "Trading", "PRE_TRADING": "PreLaunch"}


class BybitError(DialectError):
    """An error answered as Bybit does: HTTP 200 and the envelope with a non-zero ``retCode``."""

    def __init__(self, code: int, msg: str, result: Any = None, status: int = 200) -> None:
        super().__init__(
            status,
            {
                "retCode": code,
                "retMsg": msg,
                "result": {} if result is None else result,
                "retExtInfo": {},
                "time": None,
            },
        )
        self.code, self.msg = code, msg


def _stamped(handler: Any) -> Any:
    """``handler`` with its error answers stamped with the emulated time, as its answers are."""

    def run(state: EmulatorState, q: Any) -> Any:
        try:
            return handler(state, q)
        except BybitError as err:
            err.body["time"] = state.clock.now_ms()
            raise

    return run


def _ok(state: EmulatorState, result: Any) -> dict[str, Any]:
    return {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": state.clock.now_ms()}


def exec_id(category: str, symbol: str, trade_id: int) -> str:
    """The ``execId`` of synthetic trade ``trade_id``: spot a 19-digit number (``SPOT_EXEC_ID_BASE`` +
    id), linear a UUID (random-looking but deterministic, as Bybit's contract execIds)."""
    if category == "spot":
        return str(SPOT_EXEC_ID_BASE + int(trade_id))
    digest = hashlib.md5(f"{symbol}:{int(trade_id)}".encode()).digest()
    return str(uuid.UUID(bytes=digest, version=4))


def _dec(units: int, decimals: int) -> str:
    """Exact decimal of ``units`` * 10**-decimals, trailing zeros dropped, as Bybit prints numbers."""
    if decimals == 0:
        return str(units)
    q, r = divmod(units, 10**decimals)
    return f"{q}.{r:0{decimals}d}".rstrip("0") if r else str(q)


def _step(decimals: int) -> str:
    return _dec(1, decimals)


# ----------------------------------------------------------------------------- parameters


def _category(q: Any, allowed: tuple[str, ...], *, default: str | None = None) -> str:
    category = q.get("category") or default
    if category not in allowed:
        raise BybitError(10001, "params error: Category is invalid")
    return category


def _int_param(q: Any, name: str) -> int | None:
    raw = q.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise BybitError(10001, f"params error: {name} invalid") from None


def _limit(q: Any, default: int, maximum: int) -> int:
    limit = _int_param(q, "limit")
    if limit is None:
        return default
    if limit < 1:
        raise BybitError(10001, "params error: limit invalid")
    return min(limit, maximum)


def _bybit_status(state: EmulatorState, symbol: str) -> str:
    return _STATUS.get(state.status.get(symbol, "TRADING"), "Closed")


def _tradable(state: EmulatorState, category: str, symbol: str) -> bool:
    """Whether ``symbol`` is a listed instrument of ``category`` (inverse: none are)."""
    return category in ("spot", "linear") and state.market.has_symbol(symbol)


# ----------------------------------------------------------------------------- instruments


def _spot_info(state: EmulatorState, spec: SymbolSpec, index: int) -> dict[str, Any]:
    qd, pd_ = spec.qty_decimals, spec.price_decimals
    lot = 10**qd
    return {
        "symbolId": index + 1,
        "symbol": spec.symbol,
        "baseCoin": spec.base,
        "quoteCoin": spec.quote,
        "innovation": "0",
        "status": _bybit_status(state, spec.symbol),
        "marginTrading": "utaOnly",
        "stTag": "0",
        "lotSizeFilter": {
            "basePrecision": _step(qd),
            "quotePrecision": _step(8),
            "minOrderQty": _step(qd),
            "maxOrderQty": _dec(9000 * lot, qd),
            "minOrderAmt": "5",
            "maxOrderAmt": "8000000",
            "maxLimitOrderQty": _dec(9000 * lot, qd),
            "maxMarketOrderQty": _dec(4500 * lot, qd),
            "postOnlyMaxLimitOrderSize": "60000",
        },
        "priceFilter": {"tickSize": _step(pd_)},
        "riskParameters": {"priceLimitRatioX": "0.005", "priceLimitRatioY": "0.01"},
        "symbolType": "",
    }


def _linear_info(state: EmulatorState, spec: SymbolSpec, index: int) -> dict[str, Any]:
    qd, pd_ = spec.qty_decimals, spec.price_decimals
    lot, tick = 10**qd, 10**pd_
    return {
        "symbol": spec.symbol,
        "symbolId": index + 1,
        "contractType": "LinearPerpetual",
        "status": _bybit_status(state, spec.symbol),
        "baseCoin": spec.base,
        "quoteCoin": spec.quote,
        "launchTime": str(spec.listing_ms),
        "deliveryTime": "0",
        "deliveryFeeRate": "",
        "priceScale": str(pd_),
        "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
        "priceFilter": {"minPrice": _step(pd_), "maxPrice": _dec(2_000_000 * tick - 1, pd_), "tickSize": _step(pd_)},
        "lotSizeFilter": {
            "maxOrderQty": _dec(1190 * lot, qd),
            "minOrderQty": _step(qd),
            "qtyStep": _step(qd),
            "postOnlyMaxOrderQty": _dec(1190 * lot, qd),
            "maxMktOrderQty": _dec(500 * lot, qd),
            "minNotionalValue": "5",
        },
        "unifiedMarginTrade": True,
        "fundingInterval": 480,
        "settleCoin": spec.quote,
        "copyTrading": "both",
        "upperFundingRate": "0.00375",
        "lowerFundingRate": "-0.00375",
        "displayName": "",
        "forbidUplWithdrawal": False,
        "isPreListing": False,
        "preListingInfo": None,
        "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
        "symbolType": "",
    }


def _instruments(state: EmulatorState, q: Any) -> Any:
    category = _category(q, ("spot", "linear", "inverse", "option"))
    symbol, status, base = q.get("symbol"), q.get("status") or "Trading", q.get("baseCoin")
    market = state.market
    chosen = [
        (i, market.spec(s))
        for i, s in enumerate(market.symbols)
        if category in ("spot", "linear")
        and (symbol is None or s == symbol)
        and _bybit_status(state, s) == status
        and (base is None or category == "spot" or market.spec(s).base == base)
    ]
    if category == "spot":  # spot has no paging: limit and cursor are ignored
        return _ok(state, {"category": category, "list": [_spot_info(state, spec, i) for i, spec in chosen]})
    limit = _limit(q, INSTRUMENTS_DEFAULT_LIMIT, INSTRUMENTS_MAX_LIMIT)
    cursor = q.get("cursor")
    if cursor:
        fields = dict(part.split("=", 1) for part in unquote(cursor).split("&") if "=" in part)
        after = [k for k, (_, spec) in enumerate(chosen) if spec.symbol == fields.get("last")]
        if not after:
            raise BybitError(10001, "params error: cursor invalid")
        chosen = chosen[after[0] + 1 :]
    page, rest = chosen[:limit], chosen[limit:]
    next_cursor = quote(f"first={page[0][1].symbol}&last={page[-1][1].symbol}", safe="") if page and rest else ""
    return _ok(
        state,
        {
            "category": category,
            "list": [_linear_info(state, spec, i) for i, spec in page],
            "nextPageCursor": next_cursor,
        },
    )


# ----------------------------------------------------------------------------- market data


def _time(state: EmulatorState, q: Any) -> Any:
    now = state.clock.now_ms()
    return _ok(state, {"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)})


def _kline(state: EmulatorState, q: Any) -> Any:
    category = _category(q, ("spot", "linear", "inverse"), default="linear")
    symbol = q.get("symbol")
    if not symbol:
        raise BybitError(10001, "params error: symbol is required")
    interval = q.get("interval")
    if not interval:
        raise BybitError(10001, "params error: intervalTime is invalid")
    if interval not in INTERVALS:
        raise BybitError(10001, "Invalid period!")
    if not _tradable(state, category, symbol):
        raise BybitError(10001, "Not supported symbols")
    start, end = _int_param(q, "start"), _int_param(q, "end")
    limit = _limit(q, KLINE_DEFAULT_LIMIT, KLINE_MAX_LIMIT)
    tf = INTERVALS[interval]
    now = state.clock.now_ms()
    upper = now if end is None else min(end, now)
    rows: list[list[str]] = []
    if start is None or start <= upper:
        # the newest `limit` bars opening in [bar containing start, end]: Bybit pages from the end
        bars = state.market.select_bars(symbol, tf, start_ms=None, end_ms=upper, limit=limit, now_ms=now)
        if start is not None and len(bars) and bars.t[0] < start:
            bars = bars.take(bars.t >= int(bar_open(start, tf)))
        spec = state.market.spec(symbol)
        pd_, qd = spec.price_decimals, spec.qty_decimals
        cols = zip(
            bars.t.tolist(),
            bars.o.tolist(),
            bars.h.tolist(),
            bars.l.tolist(),
            bars.c.tolist(),
            bars.v.tolist(),
            bars.qv.tolist(),
            strict=True,
        )
        rows = [
            [str(t), _dec(o, pd_), _dec(h, pd_), _dec(lo, pd_), _dec(c, pd_), _dec(v, qd), _dec(qv, pd_ + qd)]
            for t, o, h, lo, c, v, qv in cols
        ]
        rows.reverse()  # newest first
    return _ok(state, {"symbol": symbol, "category": category, "list": rows})


def _trade_rows(category: str, symbol: str, spec: SymbolSpec, tr: TradesArr) -> list[dict[str, Any]]:
    pd_, qd = spec.price_decimals, spec.qty_decimals
    cols = zip(tr.id.tolist(), tr.ts.tolist(), tr.price.tolist(), tr.qty.tolist(), tr.buyer_maker.tolist(), strict=True)
    rows = [
        {
            "execId": exec_id(category, symbol, i),
            "symbol": symbol,
            "price": _dec(p, pd_),
            "size": _dec(s, qd),
            "side": "Sell" if maker else "Buy",
            "time": str(ts),
            "isBlockTrade": False,
            "isRPITrade": False,
            "seq": str(i),
        }
        for i, ts, p, s, maker in cols
    ]
    rows.reverse()  # newest first
    return rows


def _recent_trade(state: EmulatorState, q: Any) -> Any:
    category = _category(q, ("spot", "linear", "inverse", "option"))
    symbol = q.get("symbol") or ""
    if not _tradable(state, category, symbol):
        raise BybitError(10001, "params error: symbol invalid", {"category": "", "list": []})
    default, maximum = TRADE_LIMITS[category]
    limit = _limit(q, default, maximum)
    now = state.clock.now_ms()
    tr = state.market.select_agg_trades(symbol, from_id=None, start_ms=None, end_ms=None, limit=limit, now_ms=now)
    return _ok(state, {"category": category, "list": _trade_rows(category, symbol, state.market.spec(symbol), tr)})


_ROUTES = {
    "/v5/market/time": _time,
    "/v5/market/instruments-info": _instruments,
    "/v5/market/kline": _kline,
    "/v5/market/recent-trade": _recent_trade,
}


def _limit_headers(reset_ms: int) -> dict[str, str]:
    return {"X-Bapi-Limit": str(IP_LIMIT), "X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": str(reset_ms)}


class _Bybit(Dialect):
    """Bybit v5: every request costs 1 against 600 per 5-second window (the IP limit), 403 past it."""

    name = "bybit"
    routes = {path: Route(_stamped(handler), 1) for path, handler in _ROUTES.items()}
    default_limit = IP_LIMIT
    budget_window_s = IP_WINDOW_S

    def rate_limited(self, retry_after_s: int, used: int, limit: int) -> Answer:
        return Answer(403, "access too frequent", {}, "text/plain")

    def fault(self, rule: FaultRule, used: int) -> Answer:
        kind = rule.kind
        now_ms = int(time.time() * 1000)
        if kind in ("429", "418"):
            reset = now_ms + 1000 * (rule.retry_after if rule.retry_after is not None else 1)
            body = {"retCode": 10006, "retMsg": "Too many visits!", "result": {}, "retExtInfo": {}, "time": now_ms}
            return Answer(429 if kind == "429" else 200, body, _limit_headers(reset))
        if kind == "403":
            return self.rate_limited(1, used, IP_LIMIT)
        if kind == "500":
            body = {
                "retCode": 10016,
                "retMsg": "System error. Please try again later.",
                "result": {},
                "retExtInfo": {},
                "time": now_ms,
            }
            return Answer(500, body)
        return gateway_page(int(kind))

    def mangle(self, rule: FaultRule, payload: Any) -> Any:
        result = payload.get("result") if isinstance(payload, dict) else None
        rows = result.get("list") if isinstance(result, dict) else None

        def put(new_rows: list[Any]) -> Any:
            return {**payload, "result": {**result, "list": new_rows}}

        return mangle_rows_at(rule, payload, rows if isinstance(rows, list) else None, put)


BYBIT = _Bybit()
