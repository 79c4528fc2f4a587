"""OKX v5 public REST dialect: ``/api/v5/public/time | instruments`` and ``/api/v5/market/candles |
history-candles | trades | history-trades`` with OKX's parameters (``after`` = older than, ``before`` =
newer than, both exclusive; newest first), ``{"code","data","msg"}`` envelope, error codes and HTTP
statuses, and its 429 ``50011`` answer (see docs/exchanges/okx.md for the sources)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ccxt_questdb_assets.emulator.dialects.base import Answer, Dialect, DialectError, Route, mangle_rows_at
from ccxt_questdb_assets.emulator.dialects.pages import gateway_page
from ccxt_questdb_assets.emulator.market import (
    DAY_MS,
    TradesArr,
    bar_open,
    shift_bars,
)

if TYPE_CHECKING:
    from ccxt_questdb_assets.emulator.faults import FaultRule
    from ccxt_questdb_assets.emulator.state import EmulatorState
from ccxt_questdb_assets.emulator.dialects.okx_instruments import (
    Instrument,
    candle_rows,
    find_instrument,
    instrument_info,
    instruments,
    trade_rows,
)

__all__ = ["BARS", "OKX", "OkxError"]

TIME = "/api/v5/public/time"
INSTRUMENTS = "/api/v5/public/instruments"
CANDLES = "/api/v5/market/candles"
HISTORY_CANDLES = "/api/v5/market/history-candles"
TRADES = "/api/v5/market/trades"
HISTORY_TRADES = "/api/v5/market/history-trades"

CANDLES_DEFAULT_LIMIT, CANDLES_MAX_LIMIT = 100, 300
#: ``/market/candles`` serves only the latest 1,440 bars (the open one included).
RECENT_CANDLES = 1440
TRADES_DEFAULT_LIMIT, TRADES_MAX_LIMIT = 100, 500
HISTORY_TRADES_DEFAULT_LIMIT, HISTORY_TRADES_MAX_LIMIT = 100, 100
#: ``/market/history-trades`` serves the last 3 months.
HISTORY_TRADES_WINDOW_MS = 90 * DAY_MS

#: OKX ``bar`` values served -> the synthetic market's timeframe (UTC-aligned bars only).
BARS: dict[str, str] = {
    "1m": "1m",
    "3m": "3m",
    "5m": "5m",
    "15m": "15m",
    "30m": "30m",
    "1H": "1h",
    "2H": "2h",
    "4H": "4h",
    "6Hutc": "6h",
    "12Hutc": "12h",
    "1Dutc": "1d",
    "1Wutc": "1w",
    "1Mutc": "1M",
}
INST_TYPES = ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION")

#: One budget of 200 units per 2 s; each path's weight makes OKX's own per-endpoint limit when used alone
#: (candles 40/2s, history-candles 20/2s, trades 100/2s, history-trades 20/2s, instruments 20/2s, time 10/2s).
BUDGET_PER_2S = 200
WEIGHTS = {TIME: 20, INSTRUMENTS: 10, CANDLES: 5, HISTORY_CANDLES: 10, TRADES: 2, HISTORY_TRADES: 10}

_INT_RE = re.compile(r"^-?[0-9]{1,19}$")
_RATE_LIMIT_BODY = {"msg": "Too Many Requests", "code": "50011"}


# ----------------------------------------------------------------------------- errors


class OkxError(DialectError):
    """An error answered as OKX does: ``{"code": "5xxxx", "data": [], "msg": ...}`` with OKX's HTTP status."""

    def __init__(self, code: str, msg: str, status: int = 400) -> None:
        super().__init__(status, {"code": code, "data": [], "msg": msg})
        self.code, self.msg = code, msg


def _ok(data: list[Any]) -> dict[str, Any]:
    return {"code": "0", "data": data, "msg": ""}


def _empty_param(name: str) -> OkxError:
    return OkxError("50014", f"Parameter {name} can not be empty")


def _param_error(name: str) -> OkxError:
    return OkxError("51000", f"Parameter {name} error")


# ----------------------------------------------------------------------------- parameters


def _param_int(q: Any, name: str) -> int | None:
    raw = q.get(name)
    if raw is None or raw == "":
        return None
    if not _INT_RE.match(raw):
        raise _param_error(name)
    return int(raw)


def _param_limit(q: Any, default: int, maximum: int) -> int:
    limit = _param_int(q, "limit")
    if limit is None:
        return default
    if limit < 1:
        raise _param_error("limit")
    return min(limit, maximum)


def _param_inst(state: EmulatorState, q: Any) -> Instrument:
    inst_id = q.get("instId")
    if not inst_id:
        raise _empty_param("instId")
    inst = find_instrument(state, inst_id)
    if inst is None:
        raise OkxError("51001", "Instrument ID does not exist", status=200)
    return inst


# ----------------------------------------------------------------------------- handlers


def _time(state: EmulatorState, q: Any) -> Any:
    return _ok([{"ts": str(state.clock.now_ms())}])


def _instruments(state: EmulatorState, q: Any) -> Any:
    inst_type = q.get("instType")
    if not inst_type:
        raise _empty_param("instType")
    if inst_type not in INST_TYPES:
        raise _param_error("instType")
    family = q.get("instFamily") or q.get("uly")
    if inst_type == "OPTION" and not family:
        raise _empty_param("instFamily")
    served = [i for i in instruments(state) if (inst_type, i.swap) in (("SPOT", False), ("SWAP", True))]
    if family:
        served = [i for i in served if i.swap and i.inst_id == f"{family}-SWAP"]
    inst_id = q.get("instId")
    if inst_id:
        served = [i for i in served if i.inst_id == inst_id]
        if not served:
            raise OkxError("51001", "Instrument ID does not exist", status=200)
    return _ok([instrument_info(state, i) for i in served])


def _candles_page(state: EmulatorState, q: Any, *, recent_only: bool) -> Any:
    inst = _param_inst(state, q)
    bar = q.get("bar") or "1m"
    if bar not in BARS:
        raise _param_error("bar")
    tf = BARS[bar]
    after, before = _param_int(q, "after"), _param_int(q, "before")
    limit = _param_limit(q, CANDLES_DEFAULT_LIMIT, CANDLES_MAX_LIMIT)
    now = state.clock.now_ms()
    upper = now if after is None else min(now, after - 1)  # open time < after
    bars = state.market.select_bars(inst.symbol, tf, start_ms=None, end_ms=upper, limit=limit, now_ms=now)
    lowest = None if before is None else before + 1  # open time > before
    if recent_only:
        oldest_recent = shift_bars(int(bar_open(now, tf)), -(RECENT_CANDLES - 1), tf)
        lowest = oldest_recent if lowest is None else max(lowest, oldest_recent)
    if lowest is not None and len(bars) and bars.t[0] < lowest:
        bars = bars.take(bars.t >= lowest)
    open_bar = int(bar_open(now, tf))  # the bar containing now: confirm "0"
    return _ok(candle_rows(state.market.spec(inst.symbol), inst.swap, bars, open_bar))


def _candles(state: EmulatorState, q: Any) -> Any:
    return _candles_page(state, q, recent_only=True)


def _history_candles(state: EmulatorState, q: Any) -> Any:
    return _candles_page(state, q, recent_only=False)


def _trades(state: EmulatorState, q: Any) -> Any:
    inst = _param_inst(state, q)
    limit = _param_limit(q, TRADES_DEFAULT_LIMIT, TRADES_MAX_LIMIT)
    tr = state.market.select_agg_trades(
        inst.symbol, from_id=None, start_ms=None, end_ms=None, limit=limit, now_ms=state.clock.now_ms()
    )
    return _ok(trade_rows(state.market.spec(inst.symbol), inst, tr))


def _last_before_id(state: EmulatorState, symbol: str, trade_id: int, limit: int, now: int) -> TradesArr:
    """The last ``limit`` trades with id < ``trade_id`` (ascending)."""
    market = state.market
    nxt = market.select_agg_trades(symbol, from_id=max(trade_id, 0), start_ms=None, end_ms=None, limit=1, now_ms=now)
    hi = int(nxt.ts[0]) if len(nxt) else now
    # trades at ts <= hi with id >= trade_id all lie in the minute of `nxt`: fewer than 2 * avg per minute
    slack = 2 * market.spec(symbol).avg_per_minute
    tr = market.select_agg_trades(symbol, from_id=None, start_ms=None, end_ms=hi, limit=limit + slack, now_ms=now)
    tr = tr.take(tr.id < trade_id)
    return tr.take(slice(max(0, len(tr) - limit), None))


def _history_trades(state: EmulatorState, q: Any) -> Any:
    inst = _param_inst(state, q)
    kind = q.get("type") or "1"
    if kind not in ("1", "2"):
        raise _param_error("type")
    after, before = _param_int(q, "after"), _param_int(q, "before")
    limit = _param_limit(q, HISTORY_TRADES_DEFAULT_LIMIT, HISTORY_TRADES_MAX_LIMIT)
    now = state.clock.now_ms()
    market = state.market
    if after is None:
        tr = market.select_agg_trades(inst.symbol, from_id=None, start_ms=None, end_ms=None, limit=limit, now_ms=now)
    elif kind == "1":
        tr = _last_before_id(state, inst.symbol, after, limit, now)
    else:
        tr = market.select_agg_trades(
            inst.symbol, from_id=None, start_ms=None, end_ms=min(after - 1, now), limit=limit, now_ms=now
        )
    if before is not None:  # `before` is a tradeId whatever the type: id > before
        tr = tr.take(tr.id > before)
    oldest = now - HISTORY_TRADES_WINDOW_MS
    if len(tr) and tr.ts[0] < oldest:
        tr = tr.take(tr.ts >= oldest)
    return _ok(trade_rows(market.spec(inst.symbol), inst, tr))


_ROUTES = {
    TIME: _time,
    INSTRUMENTS: _instruments,
    CANDLES: _candles,
    HISTORY_CANDLES: _history_candles,
    TRADES: _trades,
    HISTORY_TRADES: _history_trades,
}

_FORBIDDEN_PAGE = (
    "<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n"
    "<center><h1>403 Forbidden</h1></center>\r\n</body>\r\n</html>\r\n"
)


class _Okx(Dialect):
    """OKX v5: one 2-second budget (OKX's per-endpoint limits as weights), 429 + code 50011 over it;
    no rate-limit headers on public endpoints."""

    name = "okx"
    routes = {path: Route(handler, WEIGHTS[path]) for path, handler in _ROUTES.items()}
    default_limit = BUDGET_PER_2S
    budget_window_s = 2

    def rate_limited(self, retry_after_s: int, used: int, limit: int) -> Answer:
        return Answer(429, dict(_RATE_LIMIT_BODY))  # no Retry-After

    def fault(self, rule: FaultRule, used: int) -> Answer:
        kind = rule.kind
        if kind in ("429", "418"):  # OKX has no 418: answered like its 429, with the status asked for
            return Answer(int(kind), dict(_RATE_LIMIT_BODY))
        if kind == "403":
            return Answer(403, _FORBIDDEN_PAGE, {}, "text/html")
        if kind == "500":
            return Answer(500, {"code": "50026", "data": [], "msg": "System error. Try again later."})
        if kind == "503":
            return Answer(
                503, {"code": "50001", "data": [], "msg": "Service temporarily unavailable. Try again later."}
            )
        return gateway_page(int(kind))

    def mangle(self, rule: FaultRule, payload: Any) -> Any:
        rows = payload.get("data") if isinstance(payload, dict) else None
        return mangle_rows_at(
            rule, payload, rows if isinstance(rows, list) else None, lambda new: {**payload, "data": new}
        )


OKX = _Okx()
