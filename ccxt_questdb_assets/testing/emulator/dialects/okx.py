"""OKX v5 public REST dialect: ``/api/v5/public/time | instruments`` and ``/api/v5/market/candles |
history-candles | trades | history-trades`` with OKX's parameters (``after`` = older than, ``before`` =
newer than, both exclusive; newest first), ``{"code","data","msg"}`` envelope, error codes and HTTP
statuses, and its 429 ``50011`` answer (see docs/exchanges/okx.md for the sources)."""

from __future__ import annotations

import re
import zlib
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ccxt_questdb_assets.testing.emulator.dialects.base import Answer, DialectError, Route, mangle_rows_at
from ccxt_questdb_assets.testing.emulator.dialects.pages import gateway_page
from ccxt_questdb_assets.testing.emulator.market import (
    DAY_MS,
    Bars,
    SymbolSpec,
    TradesArr,
    bar_open,
    shift_bars,
)

if TYPE_CHECKING:
    from ccxt_questdb_assets.testing.emulator.app import EmulatorState
    from ccxt_questdb_assets.testing.emulator.faults import FaultRule

__all__ = ["BARS", "OKX", "Instrument", "OkxError", "okx_decimal"]

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


# ----------------------------------------------------------------------------- instruments and rows

#: Decimal places of the contract value (``ctVal`` = 10**-k base units) of a linear SWAP, by base asset:
#: OKX's BTC-USDT-SWAP is 0.01 BTC, ETH-USDT-SWAP 0.1 ETH, SOL-USDT-SWAP 1 SOL; other bases 1.
_CT_VAL_DECIMALS = {"BTC": 2, "ETH": 1}
_SWAP_LEVER = {"BTC": "100", "ETH": "100"}


class Instrument(NamedTuple):
    """One OKX instrument over a synthetic market: its id, the market's symbol, SPOT or SWAP."""

    inst_id: str
    symbol: str  # the synthetic market's exchange id, e.g. BTCUSDT
    swap: bool


def okx_decimal(units: int, decimals: int) -> str:
    """Integer ``units`` of 10**-decimals as OKX writes numbers: ``"30000.1"``, ``"30000"``, ``"0.00012"``."""
    if decimals <= 0:
        return str(units * 10**-decimals)
    q, r = divmod(int(units), 10**decimals)
    if r == 0:
        return str(q)
    return f"{q}.{str(r).rjust(decimals, '0').rstrip('0')}"


def _column(units: np.ndarray, decimals: int) -> list[str]:
    return [okx_decimal(u, decimals) for u in units.tolist()]


def contract_decimals(spec: SymbolSpec) -> int:
    """Decimals of a SWAP size in contracts: base quantity / ctVal (exact, ``qty_decimals - k``)."""
    return spec.qty_decimals - _CT_VAL_DECIMALS.get(spec.base, 0)


def instruments(state: EmulatorState) -> list[Instrument]:
    """Every instrument served: each synthetic market as SPOT ``BASE-QUOTE`` and linear SWAP ``BASE-QUOTE-SWAP``."""
    out = []
    for symbol in state.market.symbols:
        spec = state.market.spec(symbol)
        out.append(Instrument(f"{spec.base}-{spec.quote}", symbol, False))
        out.append(Instrument(f"{spec.base}-{spec.quote}-SWAP", symbol, True))
    return out


def find_instrument(state: EmulatorState, inst_id: str) -> Instrument | None:
    for inst in instruments(state):
        if inst.inst_id == inst_id:
            return inst
    return None


def _state(state: EmulatorState, symbol: str, listing_ms: int) -> str:
    if listing_ms > state.clock.now_ms():
        return "preopen"
    return "live" if state.status.get(symbol, "TRADING") == "TRADING" else "suspend"


def instrument_info(state: EmulatorState, inst: Instrument) -> dict[str, Any]:
    """The ``/public/instruments`` row of ``inst`` (OKX's fields, alphabetical as OKX sends them)."""
    spec = state.market.spec(inst.symbol)
    family = f"{spec.base}-{spec.quote}"
    lot = okx_decimal(1, contract_decimals(spec) if inst.swap else spec.qty_decimals)
    row: dict[str, Any] = {
        "alias": "",
        "auctionEndTime": "",
        "baseCcy": spec.base,
        "category": "1",
        "contTdSwTime": "",
        "ctMult": "",
        "ctType": "",
        "ctVal": "",
        "ctValCcy": "",
        "expTime": "",
        "futureSettlement": False,
        "instFamily": "",
        "instId": inst.inst_id,
        "instIdCode": zlib.crc32(inst.inst_id.encode()) % 10_000_000,
        "instType": "SPOT",
        "lever": "10",
        "listTime": str(spec.listing_ms),
        "lotSz": lot,
        "maxIcebergSz": "9999999999.0000000000000000",
        "maxLmtAmt": "20000000",
        "maxLmtSz": "9999999999",
        "maxMktAmt": "1000000",
        "maxMktSz": "1000000",
        "maxStopSz": "1000000",
        "maxTriggerSz": "9999999999.0000000000000000",
        "maxTwapSz": "9999999999.0000000000000000",
        "minSz": lot,
        "openType": "",
        "optType": "",
        "preMktSwTime": "",
        "quoteCcy": spec.quote,
        "ruleType": "normal",
        "settleCcy": "",
        "state": _state(state, inst.symbol, spec.listing_ms),
        "stk": "",
        "tickSz": okx_decimal(1, spec.price_decimals),
        "tradeQuoteCcyList": [spec.quote],
        "uly": "",
    }
    if inst.swap:
        big = "100000000.0000000000000000"
        row.update(
            {
                "baseCcy": "",
                "ctMult": "1",
                "ctType": "linear",
                "ctVal": okx_decimal(1, _CT_VAL_DECIMALS.get(spec.base, 0)),
                "ctValCcy": spec.base,
                "instFamily": family,
                "instType": "SWAP",
                "lever": _SWAP_LEVER.get(spec.base, "50"),
                "maxIcebergSz": big,
                "maxLmtSz": "100000000",
                "maxMktAmt": "",
                "maxMktSz": "12000",
                "maxStopSz": "12000",
                "maxTriggerSz": big,
                "maxTwapSz": big,
                "quoteCcy": "",
                "settleCcy": spec.quote,
                "tradeQuoteCcyList": [],
                "uly": family,
            }
        )
    return row


def candle_rows(spec: SymbolSpec, swap: bool, bars: Bars, open_bar_ms: int | None) -> list[list[str]]:
    """``[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]`` strings, newest first. SPOT: vol in base,
    volCcy in quote; SWAP: vol in contracts, volCcy in base. ``confirm`` is ``"0"`` for the bar opening
    at ``open_bar_ms`` (the one containing now), else ``"1"``."""
    pd_, qd = spec.price_decimals, spec.qty_decimals
    quote_vol = _column(bars.qv, pd_ + qd)
    base_vol = _column(bars.v, qd)
    vol, vol_ccy = (_column(bars.v, contract_decimals(spec)), base_vol) if swap else (base_vol, quote_vol)
    ts = bars.t.tolist()
    confirm = ["0" if t == open_bar_ms else "1" for t in ts]
    cols = [
        [str(t) for t in ts],
        _column(bars.o, pd_),
        _column(bars.h, pd_),
        _column(bars.l, pd_),
        _column(bars.c, pd_),
        vol,
        vol_ccy,
        quote_vol,
        confirm,
    ]
    return [list(r) for r in zip(*cols, strict=True)][::-1]


def trade_rows(spec: SymbolSpec, inst: Instrument, tr: TradesArr) -> list[dict[str, str]]:
    """OKX trade rows, newest first: ``sz`` in base (SPOT) or contracts (SWAP), ``side`` the taker's."""
    sizes = _column(tr.qty, contract_decimals(spec) if inst.swap else spec.qty_decimals)
    prices = _column(tr.price, spec.price_decimals)
    sides = np.where(tr.buyer_maker, "sell", "buy").tolist()
    rows = [
        {"instId": inst.inst_id, "side": side, "sz": sz, "px": px, "source": "0", "tradeId": str(i), "ts": str(t)}
        for side, sz, px, i, t in zip(sides, sizes, prices, tr.id.tolist(), tr.ts.tolist(), strict=True)
    ]
    return rows[::-1]


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


class _Okx:
    """OKX v5: one 2-second budget (OKX's per-endpoint limits as weights), 429 + code 50011 over it."""

    name = "okx"
    routes = {path: Route(handler, WEIGHTS[path]) for path, handler in _ROUTES.items()}
    default_limit = BUDGET_PER_2S
    budget_window_s = 2

    def headers(self, used: int) -> dict[str, str]:
        return {}  # OKX sends no rate-limit headers on public endpoints

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
