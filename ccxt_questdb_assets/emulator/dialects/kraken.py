"""Kraken spot's public REST dialect: ``/0/public/Time | Assets | AssetPairs | OHLC | Trades`` with
Kraken's parameters, ``{"error": [...], "result": ...}`` envelope and error strings, and its public
call budget (see docs/exchanges/kraken.md for the sources and the emulator's choices).

* OHLC serves only the 720 most recent bars of an interval (``since`` only trims them; older bars
  cannot be had), ascending, the last one the open bar.
* Trades pages forward from ``since`` (seconds, or the nanosecond cursor ``last``; exclusive) or,
  without it, serve the latest ``count``. The cursor of a trade is ``ts_ms * 1e6 + 500_000 + 100 * k``
  (``k`` = its rank among the trades of its millisecond), which is also its ``time`` (seconds with 7
  decimals), so every trade has a cursor of its own and an exclusive ``since`` never skips one.
"""

from __future__ import annotations

import re
import time
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import numpy as np

from ccxt_questdb_assets.emulator.dialects.base import Answer, Dialect, DialectError, RawJSON, Route, mangle_rows_at
from ccxt_questdb_assets.emulator.dialects.kraken_assets import (
    KrakenPair,
    asset_entries,
    asset_id,
    pair_entry,
    pairs,
)
from ccxt_questdb_assets.emulator.dialects.pages import gateway_page
from ccxt_questdb_assets.emulator.market import MINUTE_MS, TradesArr, aggregate

if TYPE_CHECKING:
    from ccxt_questdb_assets.emulator.faults import FaultRule
    from ccxt_questdb_assets.emulator.state import EmulatorState

__all__ = ["KRAKEN", "KrakenError", "OHLC_BARS", "TRADES_MAX_COUNT", "trade_cursor"]

OHLC_BARS = 720
TRADES_MAX_COUNT = 1000
#: OHLC ``interval`` (minutes) -> the market timeframe it reads; weekly and 15-day bars aggregate days.
INTERVALS: dict[int, str] = {
    1: "1m",
    5: "5m",
    15: "15m",
    30: "30m",
    60: "1h",
    240: "4h",
    1440: "1d",
    10080: "1d",
    21600: "1d",
}
#: Public calls per ``BUDGET_WINDOW_S`` (Kraken: about one call a second per IP, bursts tolerated).
DEFAULT_BUDGET = 15
BUDGET_WINDOW_S = 15
_CURSOR_BASE = 500_000  # ns past the trade's millisecond: ccxt's int(float(time) * 1000) stays on it
_CURSOR_STEP = 100  # ns between trades of one millisecond (time has 7 decimals: 100 ns)
_MAX_RANK = (1_000_000 - _CURSOR_BASE) // _CURSOR_STEP
_SECONDS_BELOW = Decimal(10) ** 11  # a ``since`` below this is seconds, else nanoseconds
_INT_RE = re.compile(r"^[0-9]{1,19}$")


class KrakenError(DialectError):
    """An error answered as Kraken's API does: HTTP 200, ``{"error": [msg], "result": {}}``."""

    def __init__(self, msg: str, status: int = 200) -> None:
        super().__init__(status, {"error": [msg], "result": {}})
        self.msg = msg


def _invalid() -> KrakenError:
    return KrakenError("EGeneral:Invalid arguments")


def _ok(result: Any) -> dict[str, Any]:
    return {"error": [], "result": result}


def _pair(state: EmulatorState, q: Any) -> KrakenPair:
    """The pair of ``pair`` (Kraken id or altname)."""
    name = q.get("pair")
    if not name:
        raise _invalid()
    known = pairs(state)
    found = known.get(name) or next((p for p in known.values() if p.altname == name), None)
    if found is None:
        raise KrakenError("EQuery:Unknown asset pair")
    return found


def trade_cursor(ts_ms: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """The nanosecond cursor (and ``time``) of trades at ``ts_ms`` with rank ``rank`` in their millisecond."""
    return ts_ms.astype(np.int64) * 1_000_000 + _CURSOR_BASE + _CURSOR_STEP * rank.astype(np.int64)


def _ranks(ts: np.ndarray) -> np.ndarray:
    """Rank of each trade among those of its millisecond (``ts`` sorted)."""
    if ts.size == 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.arange(ts.size, dtype=np.int64)
    starts = np.r_[True, ts[1:] != ts[:-1]]
    return idx - np.maximum.accumulate(np.where(starts, idx, 0))


# ----------------------------------------------------------------------------- formatting


def _fmt(units: np.ndarray, decimals: int, width: int) -> list[str]:
    """Non-negative integer ``units`` of 10**-decimals as decimals with ``width`` (>= decimals) places."""
    pad = "0" * (width - decimals)
    if decimals == 0:
        return [f"{u}.{pad}" if pad else str(u) for u in units.tolist()]
    q, r = np.divmod(units, 10**decimals)
    tpl = f"%d.%0{decimals}d{pad}"
    return [tpl % qr for qr in zip(q.tolist(), r.tolist(), strict=True)]


# ----------------------------------------------------------------------------- handlers


def _time(state: EmulatorState, q: Any) -> Any:
    now_s = state.clock.now_ms() // 1000
    return _ok({"unixtime": now_s, "rfc1123": time.strftime("%a, %e %b %y %H:%M:%S +0000", time.gmtime(now_s))})


def _assets(state: EmulatorState, q: Any) -> Any:
    if q.get("aclass") not in (None, "currency"):
        raise _invalid()
    entries = asset_entries(state)
    if q.get("asset"):  # asset ids, altnames or codes (BTC for XXBT), comma-separated
        names = {**{e["altname"]: k for k, e in entries.items()}, **{k: k for k in entries}}
        keys = [names.get(n) or names.get(asset_id(n)) for n in q["asset"].split(",")]
        if None in keys:
            raise KrakenError("EQuery:Unknown asset")
        entries = {k: entries[k] for k in keys if k is not None}
    return _ok(entries)


def _asset_pairs(state: EmulatorState, q: Any) -> Any:
    info = q.get("info") or "info"
    if info not in ("info", "leverage", "fees", "margin"):
        raise _invalid()
    known = pairs(state)
    selected = list(known.values())
    if q.get("pair"):
        selected = [_pair(state, {"pair": name}) for name in q["pair"].split(",")]
    return _ok({p.id: pair_entry(state, p, info) for p in selected})


def _since(q: Any) -> Decimal | None:
    raw = q.get("since")
    if raw is None or raw == "":
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise _invalid() from None
    if not value.is_finite():
        raise _invalid()
    return value


def _ohlc(state: EmulatorState, q: Any) -> Any:
    pair = _pair(state, q)
    raw_interval = q.get("interval") or "1"
    if not _INT_RE.match(raw_interval) or int(raw_interval) not in INTERVALS:
        raise _invalid()
    minutes = int(raw_interval)
    dur = minutes * MINUTE_MS
    since = _since(q)
    now = state.clock.now_ms()
    open_now = now - now % dur  # every interval is aligned to the epoch (weeks start on Thursday)
    lo = open_now - (OHLC_BARS - 1) * dur
    if since is not None:  # bars opening after since (seconds); the open bar whatever since says
        lo = min(max(lo, (int(since * 1000) // dur + 1) * dur), open_now)
    if minutes >= 10080:
        days = state.market.bars(pair.symbol, "1d", lo, open_now + dur, now)
        bars = aggregate(days, days.t - days.t % dur)  # epoch-aligned weeks (1w, 15d)
    else:
        bars = state.market.bars(pair.symbol, INTERVALS[minutes], lo, open_now + dur, now)
    spec = state.market.spec(pair.symbol)
    pd_, qd = spec.price_decimals, spec.qty_decimals
    vwap = bars.qv // np.maximum(bars.v, 1)  # synthetic: the quote volume over the volume
    cols = [
        (bars.t // 1000).tolist(),
        *(_fmt(a, pd_, pd_) for a in (bars.o, bars.h, bars.l, bars.c, vwap)),
        _fmt(bars.v, qd, max(qd, 8)),
        bars.n.tolist(),
    ]
    rows = [list(r) for r in zip(*cols, strict=True)]
    return _ok({pair.id: rows, "last": (open_now - dur) // 1000})


def _count(q: Any) -> int:
    raw = q.get("count")
    if raw is None or raw == "":
        return TRADES_MAX_COUNT
    if not _INT_RE.match(raw) or int(raw) < 1:
        raise _invalid()
    return min(int(raw), TRADES_MAX_COUNT)


def _select_trades(state: EmulatorState, symbol: str, since_ns: int | None, count: int) -> tuple[TradesArr, np.ndarray]:
    """The trades of the page and their cursors."""
    market, now = state.market, state.clock.now_ms()
    if since_ns is None:
        tr = market.select_agg_trades(symbol, from_id=None, start_ms=None, end_ms=None, limit=count, now_ms=now)
        ranks = _ranks(tr.ts)
        if len(tr):  # the page may start inside a millisecond: rank its first trades among all of it
            ts0 = int(tr.ts[0])
            whole = len(market.trades_array(symbol, ts0, ts0 + 1, now))
            first = tr.ts == ts0
            ranks = np.where(first, ranks + (whole - int(first.sum())), ranks)
        return tr, trade_cursor(tr.ts, ranks)
    t0, sub = divmod(since_ns, 1_000_000)
    skip = 0 if sub < _CURSOR_BASE else (sub - _CURSOR_BASE) // _CURSOR_STEP + 1  # trades of ms t0 at or before
    if skip:
        skip = min(skip, len(market.trades_array(symbol, t0, t0 + 1, now)))
    tr = market.select_agg_trades(
        symbol, from_id=None, start_ms=max(t0, 0), end_ms=None, limit=count + skip, now_ms=now
    )
    cursors = trade_cursor(tr.ts, _ranks(tr.ts))
    keep = np.flatnonzero(cursors > since_ns)[:count]
    return tr.take(keep), cursors[keep]


def _trades(state: EmulatorState, q: Any) -> Any:
    pair = _pair(state, q)
    since = _since(q)
    if since is not None and since < 0:
        raise _invalid()
    count = _count(q)
    since_ns = None if since is None else int(since * 1_000_000_000) if since < _SECONDS_BELOW else int(since)
    tr, cursors = _select_trades(state, pair.symbol, since_ns, count)
    ranks = (cursors % 1_000_000 - _CURSOR_BASE) // _CURSOR_STEP
    if len(ranks) and int(ranks.max()) >= _MAX_RANK:
        raise RuntimeError(f"more than {_MAX_RANK} trades in one millisecond: the cursor cannot tell them apart")
    spec = state.market.spec(pair.symbol)
    pd_, qd = spec.price_decimals, spec.qty_decimals
    ts = tr.ts.tolist()
    times = [
        f"{t // 1000}.{t % 1000:03d}{(c % 1_000_000) // 100:04d}" for t, c in zip(ts, cursors.tolist(), strict=True)
    ]
    sides = np.where(tr.buyer_maker, "s", "b").tolist()
    kinds = np.where(tr.id % 4 == 0, "l", "m").tolist()  # synthetic: a quarter of takers were limit orders
    cols = [_fmt(tr.price, pd_, max(pd_, 5)), _fmt(tr.qty, qd, max(qd, 8)), times, sides, kinds, tr.id.tolist()]
    row = '["%s","%s",%s,"%s","%s","",%d]'  # one %-format per row: the fast path for big pages
    rows = ",".join(row % r for r in zip(*cols, strict=True))  # noqa: UP031
    last = int(cursors[-1]) if len(cursors) else (since_ns if since_ns is not None else 0)
    return RawJSON(f'{{"error":[],"result":{{"{pair.id}":[{rows}],"last":"{last}"}}}}')


_ROUTES = {
    "/0/public/Time": _time,
    "/0/public/Assets": _assets,
    "/0/public/AssetPairs": _asset_pairs,
    "/0/public/OHLC": _ohlc,
    "/0/public/Trades": _trades,
}

_CLOUDFLARE_403 = (
    "<!DOCTYPE html>\n<html><head><title>Attention Required! | Cloudflare</title></head>\n"
    "<body><h1>Sorry, you have been blocked</h1></body></html>\n"
)


class _Kraken(Dialect):
    """Kraken spot public REST: one call counter per IP, errors in the ``error`` array (HTTP 200), no
    rate-limit headers."""

    name = "kraken"
    routes = {path: Route(handler, 1) for path, handler in _ROUTES.items()}
    default_limit = DEFAULT_BUDGET
    budget_window_s = BUDGET_WINDOW_S

    def rate_limited(self, retry_after_s: int, used: int, limit: int) -> Answer:
        return Answer(200, {"error": ["EGeneral:Too many requests"], "result": {}})

    def fault(self, rule: FaultRule, used: int) -> Answer:
        kind = rule.kind
        headers = {} if rule.retry_after is None else {"Retry-After": str(rule.retry_after)}
        if kind == "429":
            return Answer(429, {"error": ["EGeneral:Too many requests"]}, headers)
        if kind == "418":
            return Answer(418, {"error": ["EGeneral:Temporary lockout"]}, headers)
        if kind == "403":
            return Answer(403, _CLOUDFLARE_403, {}, "text/html")
        if kind == "500":
            return Answer(500, {"error": ["EGeneral:Internal error"]})
        if kind == "503":
            return Answer(503, {"error": ["EService:Unavailable"]})
        return gateway_page(int(kind))

    def mangle(self, rule: FaultRule, payload: Any) -> Any:
        result = payload.get("result") if isinstance(payload, dict) else None
        key = next((k for k in result if k != "last"), None) if isinstance(result, dict) else None
        rows = result[key] if key is not None and isinstance(result[key], list) else None

        def put(new_rows: list[Any]) -> Any:
            return {**payload, "result": {**result, key: new_rows}}

        return mangle_rows_at(rule, payload, rows, put)


KRAKEN = _Kraken()
