"""aiohttp application speaking Binance spot's public REST dialect, plus ``/_emulator`` control.

API: ``GET /api/v3/ping | time | exchangeInfo | klines | aggTrades`` with Binance's parameters,
error codes, weights and ``X-MBX-USED-WEIGHT-1M`` header. Control (no weight, not logged):
``/_emulator/...`` (see :mod:`.control` for the client and docs/emulator.md for the routes).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web

from ccxt_questdb_assets.testing.emulator.faults import ERROR_FAULTS, FaultInjector, FaultRule, mangle_rows
from ccxt_questdb_assets.testing.emulator.market import (
    HOUR_MS,
    TIMEFRAMES,
    Bars,
    SyntheticMarket,
    TradesArr,
    listing_spec,
    next_bar_open,
)
from ccxt_questdb_assets.testing.emulator.weights import DEFAULT_WEIGHT_LIMIT, WEIGHTS, WeightBudget

__all__ = ["STATE_KEY", "BinanceError", "Clock", "EmulatorState", "create_app"]

CONTROL_PREFIX = "/_emulator"
MAX_LIMIT = 1000
DEFAULT_LIMIT = 500
AGG_TRADES_MAX_WINDOW_MS = HOUR_MS
#: Binance spot symbol statuses; ccxt marks a market active only when ``TRADING``.
MARKET_STATUSES = ("TRADING", "PRE_TRADING", "BREAK", "HALT", "END_OF_DAY", "POST_TRADING", "AUCTION_MATCH")
_LONG_RE = re.compile(r"^[0-9]{1,20}$")
_JSON_CT = "application/json;charset=UTF-8"


class BinanceError(Exception):
    """An error answered as Binance does: HTTP status + ``{"code": .., "msg": ..}``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


def _mandatory(name: str) -> BinanceError:
    return BinanceError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


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
        self.faults = FaultInjector()
        self.log: deque[dict[str, Any]] = deque(maxlen=self.log_size)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        #: Binance ``status`` per exchange symbol where not ``TRADING`` (markets listed at runtime).
        self.status: dict[str, str] = {}
        #: Markets listed through the control API, delisted again by ``reset()``.
        self.runtime_symbols: list[str] = []

    def list_market(self, base: str, quote: str, *, listing_ms: int | None = None, base_price: float = 10.0,
                    status: str = "TRADING") -> str:
        """List a new synthetic market now (or at ``listing_ms``); returns its exchange symbol."""
        if status not in MARKET_STATUSES:
            raise ValueError(f"status {status!r} must be one of {', '.join(MARKET_STATUSES)}")
        spec = listing_spec(base, quote, self.clock.now_ms() if listing_ms is None else listing_ms,
                            base_price=base_price)
        self.market.add_symbol(spec)
        self.runtime_symbols.append(spec.symbol)
        if status != "TRADING":
            self.status[spec.symbol] = status
        return spec.symbol

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
        with self._lock:
            self.log.clear()
        self.clock.frozen_ms, self.clock.offset_ms = None, 0
        self.weights.limit = self.default_weight_limit
        self.weights.reset()
        for symbol in self.runtime_symbols:
            self.market.remove_symbol(symbol)
        self.runtime_symbols.clear()
        self.status.clear()


# ----------------------------------------------------------------------------- parameters


def _param_long(q: Any, name: str) -> int | None:
    raw = q.get(name)
    if raw is None:
        return None
    if raw == "":
        raise BinanceError(-1105, f"Parameter '{name}' was empty.")
    if not _LONG_RE.match(raw):
        raise BinanceError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")
    return int(raw)


def _param_limit(q: Any) -> int:
    limit = _param_long(q, "limit")
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
    return limit


def _param_symbol(state: EmulatorState, q: Any) -> str:
    symbol = q.get("symbol")
    if not symbol:
        raise _mandatory("symbol")
    if not state.market.has_symbol(symbol):
        raise BinanceError(-1121, "Invalid symbol.")
    return symbol


# ----------------------------------------------------------------------------- formatting


def _dec_formatter(decimals: int):
    pad = "0" * max(0, 8 - decimals)
    scale = 10**decimals
    if decimals == 0:
        return lambda x: f"{x}.{pad}"
    fmt = "{}.{:0%dd}%s" % (decimals, pad)
    return lambda x: fmt.format(*divmod(x, scale))


class RawJSON(str):
    """A handler answer that is already JSON text (the fast path for big pages)."""


def _dec_template(decimals: int) -> str:
    """%-template of a quoted 8-place decimal from (integer part, fraction) arguments."""
    pad = "0" * max(0, 8 - decimals)
    return f'"%d.%0{decimals}d{pad}"' if decimals else f'"%d.{pad}"'


def _split(units: np.ndarray, decimals: int) -> list[list[int]]:
    if decimals == 0:
        return [units.tolist()]
    q, r = np.divmod(units, 10**decimals)
    return [q.tolist(), r.tolist()]


def _klines_json(state: EmulatorState, symbol: str, timeframe: str, bars: Bars) -> RawJSON:
    """Binance's 12-field kline rows as JSON text, one %-format per row (4x faster than json.dumps)."""
    spec = state.market.spec(symbol)
    pd_, qd, qvd = spec.price_decimals, spec.qty_decimals, spec.price_decimals + spec.qty_decimals
    p, q, qv = _dec_template(pd_), _dec_template(qd), _dec_template(qvd)
    row = f'[%d,{p},{p},{p},{p},{q},%d,{qv},%d,{q},{qv},"0"]'
    dur = TIMEFRAMES[timeframe]
    if dur is not None:
        closes = (bars.t + (dur - 1)).tolist()
    else:
        closes = [next_bar_open(t, timeframe) - 1 for t in bars.t.tolist()]
    with np.errstate(divide="ignore", invalid="ignore"):
        tbq = np.where(bars.v > 0, bars.qv * bars.tb // np.maximum(bars.v, 1), 0)
    cols = [bars.t.tolist(), *_split(bars.o, pd_), *_split(bars.h, pd_), *_split(bars.l, pd_),
            *_split(bars.c, pd_), *_split(bars.v, qd), closes, *_split(bars.qv, qvd), bars.n.tolist(),
            *_split(bars.tb, qd), *_split(tbq, qvd)]
    return RawJSON("[" + ",".join([row % r for r in zip(*cols, strict=True)]) + "]")


def _agg_json(state: EmulatorState, symbol: str, tr: TradesArr) -> RawJSON:
    spec = state.market.spec(symbol)
    p, q = _dec_template(spec.price_decimals), _dec_template(spec.qty_decimals)
    row = f'{{"a":%d,"p":{p},"q":{q},"f":%d,"l":%d,"T":%d,"m":%s,"M":true}}'
    ids = tr.id.tolist()
    cols = [ids, *_split(tr.price, spec.price_decimals), *_split(tr.qty, spec.qty_decimals), ids, ids,
            tr.ts.tolist(), np.where(tr.buyer_maker, "true", "false").tolist()]
    return RawJSON("[" + ",".join([row % r for r in zip(*cols, strict=True)]) + "]")


def _symbol_info(state: EmulatorState, symbol: str) -> dict[str, Any]:
    spec = state.market.spec(symbol)
    fp = _dec_formatter(spec.price_decimals)
    fq = _dec_formatter(spec.qty_decimals)
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
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT",
                       "TAKE_PROFIT_LIMIT"],
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
            {"filterType": "PRICE_FILTER", "minPrice": fp(1), "maxPrice": fp(10 ** (spec.price_decimals + 7)),
             "tickSize": fp(1)},
            {"filterType": "LOT_SIZE", "minQty": fq(1), "maxQty": fq(9000 * 10**spec.qty_decimals),
             "stepSize": fq(1)},
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": fq(100 * 10**spec.qty_decimals),
             "stepSize": "0.00000000"},
            {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000,
             "minTrailingBelowDelta": 10, "maxTrailingBelowDelta": 2000},
            {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5", "bidMultiplierDown": "0.2",
             "askMultiplierUp": "5", "askMultiplierDown": "0.2", "avgPriceMins": 5},
            {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
             "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
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
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
             "limit": state.weights.limit},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
        ],
        "exchangeFilters": [],
        "symbols": [_symbol_info(state, s) for s in names],
    }


def _klines(state: EmulatorState, q: Any) -> Any:
    symbol_raw = q.get("symbol")
    if not symbol_raw:
        raise _mandatory("symbol")
    interval = q.get("interval")
    if not interval:
        raise _mandatory("interval")
    if interval not in TIMEFRAMES:
        raise BinanceError(-1120, "Invalid interval.")
    symbol = _param_symbol(state, q)
    start, end = _param_long(q, "startTime"), _param_long(q, "endTime")
    limit = _param_limit(q)
    tz = q.get("timeZone")
    if tz not in (None, "0", "+0", "0:00", "00:00", "+00:00"):
        raise BinanceError(-1130, "Data sent for parameter 'timeZone' is not valid.")
    if start is not None and end is not None and end < start:
        return []
    bars = state.market.select_bars(symbol, interval, start_ms=start, end_ms=end, limit=limit,
                                    now_ms=state.clock.now_ms())
    return _klines_json(state, symbol, interval, bars)


def _agg_trades(state: EmulatorState, q: Any) -> Any:
    symbol = _param_symbol(state, q)
    from_id = _param_long(q, "fromId")
    start, end = _param_long(q, "startTime"), _param_long(q, "endTime")
    limit = _param_limit(q)
    if from_id is not None and (start is not None or end is not None):
        raise BinanceError(-1128, "Combination of optional parameters invalid.")
    if start is not None and end is not None:
        if end - start > AGG_TRADES_MAX_WINDOW_MS:
            raise BinanceError(-1127, "More than 1 hours between startTime and endTime.")
        if end < start:
            return []
    tr = state.market.select_agg_trades(symbol, from_id=from_id, start_ms=start, end_ms=end, limit=limit,
                                        now_ms=state.clock.now_ms())
    return _agg_json(state, symbol, tr)


_HANDLERS = {
    "/api/v3/ping": _ping,
    "/api/v3/time": _time,
    "/api/v3/exchangeInfo": _exchange_info,
    "/api/v3/klines": _klines,
    "/api/v3/aggTrades": _agg_trades,
}

_HTML = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
)
_REASONS = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out", 404: "Not Found"}


def _json_response(status: int, payload: Any, headers: dict[str, str]) -> web.Response:
    body = payload if isinstance(payload, RawJSON) else json.dumps(payload, separators=(",", ":"))
    return web.Response(status=status, text=body, content_type="application/json", charset="UTF-8",
                        headers=headers)


def _error_fault_response(rule: FaultRule, used: int) -> web.Response:
    headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
    kind = rule.kind
    if kind in ("429", "418"):
        headers["Retry-After"] = str(rule.retry_after if rule.retry_after is not None else 1)
        if kind == "429":
            msg = ("Too much request weight used; current limit is 6000 request weight per 1 MINUTE. "
                   "Please use WebSocket Streams for live updates to avoid polling the API.")
        else:
            msg = "Way too much request weight used; IP banned until 0. Please use WebSocket Streams for live updates to avoid bans."
        return _json_response(int(kind), {"code": -1003, "msg": msg}, headers)
    if kind == "403":
        return _json_response(403, {"code": -1003, "msg": "Too many requests queued."}, headers)
    if kind == "500":
        return _json_response(500, {"code": -1000, "msg": "An unknown error occurred while processing the request."},
                              headers)
    code = int(kind)
    return web.Response(status=code, text=_HTML.format(code=code, reason=_REASONS[code]), content_type="text/html",
                        headers=headers)


def _api_handler(state: EmulatorState):
    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith(CONTROL_PREFIX):
            return web.json_response({"error": f"unknown control route {request.method} {path}"}, status=404)
        seq = state.next_seq()
        params = dict(request.query)
        entry: dict[str, Any] = {"seq": seq, "time_ms": int(time.time() * 1000), "method": request.method,
                                 "path": path, "params": params, "status": None, "weight": 0, "fault": None}
        # logged on arrival and completed in place: a slow request finishing after reset() stays out of the log
        state.record(entry)
        handler = _HANDLERS.get(path) if request.method in ("GET", "HEAD") else None
        rule = state.faults.take(path)
        if rule is not None:
            entry["fault"] = rule.kind
        if rule is not None and rule.kind in ERROR_FAULTS:
            if rule.kind == "drop_connection":
                if request.transport is not None:
                    request.transport.abort()
                raise asyncio.CancelledError
            resp = _error_fault_response(rule, state.weights.used())
            entry["status"] = resp.status
            return resp
        if rule is not None and rule.kind == "delay":
            await asyncio.sleep(rule.delay_s if rule.delay_s is not None else 2.0)
        if handler is None:
            entry["status"] = 404
            return web.Response(status=404, text=_HTML.format(code=404, reason="Not Found"),
                                content_type="text/html")
        weight = WEIGHTS[path]
        charge = state.weights.charge(weight)
        entry["weight"] = weight
        headers = {"X-MBX-USED-WEIGHT-1M": str(charge.used)}
        if not charge.ok:
            headers["Retry-After"] = str(charge.retry_after_s)
            entry["status"] = 429
            msg = (f"Too much request weight used; current limit is {state.weights.limit} request weight "
                   "per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.")
            return _json_response(429, {"code": -1003, "msg": msg}, headers)
        try:
            payload = handler(state, request.query)
        except BinanceError as err:
            entry["status"] = err.status
            return _json_response(err.status, {"code": err.code, "msg": err.msg}, headers)
        except Exception:
            entry["status"] = 500  # an emulator bug: aiohttp answers 500
            raise
        if rule is not None and isinstance(payload, RawJSON):
            payload = json.loads(payload)
        if rule is not None and isinstance(payload, list):
            payload = mangle_rows(rule.kind, payload)
        if rule is not None and rule.kind == "rows":
            payload = rule.rows
        if rule is not None and rule.kind == "truncated_json":
            body = json.dumps(payload, separators=(",", ":"))
            cut = body[: max(1, len(body) // 2)]
            entry["status"] = 200
            return web.Response(status=200, text=cut, content_type="application/json", charset="UTF-8",
                                headers=headers)
        entry["status"] = 200
        return _json_response(200, payload, headers)

    return handle


# ----------------------------------------------------------------------------- control routes


def _control_routes(state: EmulatorState) -> list[web.RouteDef]:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "now_ms": state.clock.now_ms()})

    async def get_requests(request: web.Request) -> web.Response:
        path = request.query.get("path")
        since = int(request.query.get("since_seq", "0"))
        return web.json_response({"requests": state.requests(path, since)})

    async def count_requests(request: web.Request) -> web.Response:
        return web.json_response({"count": len(state.requests(request.query.get("path")))})

    async def clear_requests(request: web.Request) -> web.Response:
        with state._lock:
            state.log.clear()
        return web.json_response({"ok": True})

    async def get_faults(request: web.Request) -> web.Response:
        return web.json_response({"faults": state.faults.list()})

    async def add_fault(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            rule = state.faults.add(body.get("kind"), int(body.get("count", 1)), body.get("path"),
                                    body.get("retry_after"), body.get("delay_s"), int(body.get("after") or 0),
                                    body.get("rows"))
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"fault": rule.to_dict()})

    async def clear_faults(request: web.Request) -> web.Response:
        state.faults.clear()
        return web.json_response({"ok": True})

    async def get_clock(request: web.Request) -> web.Response:
        return web.json_response(state.clock.to_dict())

    async def set_clock(request: web.Request) -> web.Response:
        body = await request.json()
        if "frozen_ms" in body:
            state.clock.frozen_ms = None if body["frozen_ms"] is None else int(body["frozen_ms"])
        if "offset_ms" in body:
            state.clock.offset_ms = int(body["offset_ms"])
        return web.json_response(state.clock.to_dict())

    async def get_config(request: web.Request) -> web.Response:
        return web.json_response({"weight_limit": state.weights.limit, "used_weight": state.weights.used(),
                                  "default_weight_limit": state.default_weight_limit})

    async def set_config(request: web.Request) -> web.Response:
        body = await request.json()
        if "weight_limit" in body:
            limit = int(body["weight_limit"])
            if limit < 1:
                return web.json_response({"error": "weight_limit must be >= 1"}, status=400)
            state.weights.limit = limit
        if body.get("reset_weight"):
            state.weights.reset()
        return await get_config(request)

    async def reset(request: web.Request) -> web.Response:
        state.reset()
        return web.json_response({"ok": True})

    def _market_entry(s: str) -> dict[str, Any]:
        m = state.market
        return {"symbol": s, "ccxt_symbol": m.spec(s).ccxt_symbol, "listing_ms": m.listing_ms(s),
                "outages": m.outages(s), "status": state.status.get(s, "TRADING")}

    async def market_info(request: web.Request) -> web.Response:
        return web.json_response({"symbols": [_market_entry(s) for s in state.market.symbols]})

    async def list_market(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            symbol = state.list_market(
                str(body["base"]), str(body["quote"]),
                listing_ms=None if body.get("listing_ms") is None else int(body["listing_ms"]),
                base_price=float(body.get("base_price", 10.0)), status=str(body.get("status", "TRADING")))
        except KeyError as exc:
            return web.json_response({"error": f"missing {exc.args[0]!r}: give base and quote"}, status=400)
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"market": _market_entry(symbol)})

    p = CONTROL_PREFIX
    return [
        web.get(f"{p}/health", health),
        web.get(f"{p}/requests", get_requests),
        web.get(f"{p}/requests/count", count_requests),
        web.delete(f"{p}/requests", clear_requests),
        web.get(f"{p}/faults", get_faults),
        web.post(f"{p}/faults", add_fault),
        web.delete(f"{p}/faults", clear_faults),
        web.get(f"{p}/clock", get_clock),
        web.post(f"{p}/clock", set_clock),
        web.get(f"{p}/config", get_config),
        web.post(f"{p}/config", set_config),
        web.post(f"{p}/reset", reset),
        web.get(f"{p}/market", market_info),
        web.post(f"{p}/market", list_market),
    ]


STATE_KEY = web.AppKey("emulator_state", EmulatorState)


def create_app(state: EmulatorState | None = None) -> web.Application:
    """The aiohttp app; ``app[STATE_KEY]`` is the :class:`EmulatorState`."""
    state = state or EmulatorState()
    app = web.Application()
    app[STATE_KEY] = state
    app.add_routes(_control_routes(state))
    app.router.add_route("*", "/{tail:.*}", _api_handler(state))
    return app
