"""Coinbase Advanced Trade's public REST dialect (ccxt class ``coinbase``).

Served: ``/api/v3/brokerage/market/products[/{product_id}[/candles|/ticker]]``,
``/api/v3/brokerage/time`` and the Coinbase App API paths ccxt's ``load_markets`` reads first
(``/v2/currencies``, ``/v2/currencies/crypto``, ``/v2/exchange-rates``, ``/v2/time``). Errors are
Coinbase's ``{"error", "error_details", "message"}`` bodies; the rate limit is 10 public requests per
second per IP, answered 429 ``{"errors":[{"id":"rate_limit_exceeded",...}]}`` with no rate-limit
headers. See docs/exchanges/coinbase.md for the sources and the emulator's choices.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from ccxt_questdb_assets.emulator.dialects.base import Answer, Dialect, DialectError, Route, mangle_rows_at
from ccxt_questdb_assets.emulator.dialects.pages import gateway_page
from ccxt_questdb_assets.emulator.market import HOUR_MS, SymbolSpec, TradesArr

if TYPE_CHECKING:
    from ccxt_questdb_assets.emulator.faults import FaultRule
    from ccxt_questdb_assets.emulator.state import EmulatorState

__all__ = ["COINBASE", "GRANULARITIES", "MAX_CANDLES", "MAX_TRADES", "CoinbaseError"]

#: Coinbase granularity -> the synthetic market's timeframe and its length in seconds.
GRANULARITIES: dict[str, tuple[str, int]] = {
    "ONE_MINUTE": ("1m", 60),
    "FIVE_MINUTE": ("5m", 300),
    "FIFTEEN_MINUTE": ("15m", 900),
    "THIRTY_MINUTE": ("30m", 1800),
    "ONE_HOUR": ("1h", 3600),
    "TWO_HOUR": ("2h", 7200),
    "FOUR_HOUR": ("4h", 14400),
    "SIX_HOUR": ("6h", 21600),
    "ONE_DAY": ("1d", 86400),
}
#: (end - start) / granularity may be at most this many buckets (Coinbase's current wording below).
MAX_CANDLES = 350
MAX_TRADES = 1000
DEFAULT_TRADES = 100
PUBLIC_REQUESTS_PER_SECOND = 10
RATE_LIMIT_BODY = {"errors": [{"id": "rate_limit_exceeded", "message": "Too many requests"}]}
_INT_RE = re.compile(r"^-?[0-9]{1,19}$")
_CLOUDFLARE_403 = (
    "<!DOCTYPE html>\n<html><head><title>Attention Required! | Cloudflare</title></head>\n"
    "<body><h1>Sorry, you have been blocked</h1><p>You are unable to access api.coinbase.com</p></body></html>\n"
)


class CoinbaseError(DialectError):
    """An Advanced Trade error: HTTP status + ``{"error": CODE, "error_details": .., "message": ..}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, {"error": code, "error_details": message, "message": message})


def _invalid(message: str) -> CoinbaseError:
    return CoinbaseError(400, "INVALID_ARGUMENT", message)


# ----------------------------------------------------------------------------- reference data

#: Fiat currencies ``/v2/currencies`` lists (Coinbase lists ~170; these are enough for ccxt).
_FIAT = (("USD", "US Dollar"), ("EUR", "Euro"), ("GBP", "British Pound"))
_CRYPTO_NAMES = {"BTC": "Bitcoin", "ETH": "Ethereum", "SOL": "Solana", "USDT": "Tether", "USDC": "USDC"}
_ASSET_NS = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")


def dec(units: int, decimals: int) -> str:
    """``units`` of 10**-decimals as Coinbase writes decimals: no trailing zeros (``"30000.1"``, ``"2"``)."""
    q, r = divmod(int(units), 10**decimals)
    if r == 0:
        return str(q)
    return f"{q}.{r:0{decimals}d}".rstrip("0")


def product_id(spec: SymbolSpec) -> str:
    return f"{spec.base}-{spec.quote}"


def products_by_id(state: EmulatorState) -> dict[str, SymbolSpec]:
    """Every listed synthetic market by its Coinbase product id."""
    specs = (state.market.spec(s) for s in state.market.symbols)
    return {product_id(s): s for s in specs}


def _last_price(state: EmulatorState, spec: SymbolSpec, now_ms: int) -> int | None:
    """Ticks of the last trade at or before now (within the last hour), or None."""
    tr = state.market.select_agg_trades(spec.symbol, from_id=None, start_ms=None, end_ms=now_ms, limit=1, now_ms=now_ms)
    if len(tr) == 0 or int(tr.ts[-1]) < now_ms - HOUR_MS:
        return None
    return int(tr.price[-1])


def product(state: EmulatorState, spec: SymbolSpec) -> dict[str, Any]:
    """One SPOT product as the public products listing shows it (all numbers as strings)."""
    now = state.clock.now_ms()
    trading = state.status.get(spec.symbol, "TRADING") == "TRADING"
    pd_, qd = spec.price_decimals, spec.qty_decimals
    last = _last_price(state, spec, now) if now >= spec.listing_ms else None
    pid = product_id(spec)
    return {
        "product_id": pid,
        "price": "" if last is None else dec(last, pd_),
        "price_percentage_change_24h": "0",
        "volume_24h": "0",
        "volume_percentage_change_24h": "0",
        "base_increment": dec(1, qd),
        "quote_increment": dec(1, pd_),
        "quote_min_size": "1",
        "quote_max_size": "10000000",
        "base_min_size": dec(1, qd),
        "base_max_size": dec(9000 * 10**qd, qd),
        "base_name": _CRYPTO_NAMES.get(spec.base, spec.base),
        "quote_name": _CRYPTO_NAMES.get(spec.quote, spec.quote),
        "watched": False,
        "is_disabled": False,
        "new": False,
        "status": "online" if trading else "offline",
        "cancel_only": False,
        "limit_only": False,
        "post_only": False,
        "trading_disabled": not trading,
        "auction_mode": False,
        "product_type": "SPOT",
        "quote_currency_id": spec.quote,
        "base_currency_id": spec.base,
        "fcm_trading_session_details": None,
        "mid_market_price": "",
        "alias": "",
        "alias_to": [],
        "base_display_symbol": spec.base,
        "quote_display_symbol": spec.quote,
        "view_only": False,
        "price_increment": dec(1, pd_),
        "display_name": pid,
        "product_venue": "CBE",
        "approximate_quote_24h_volume": "0",
    }


def _assets(state: EmulatorState) -> list[str]:
    specs = [state.market.spec(s) for s in state.market.symbols]
    return sorted({a for s in specs for a in (s.base, s.quote)})


def currencies_fiat(state: EmulatorState) -> dict[str, Any]:
    """``GET /v2/currencies``."""
    return {"data": [{"id": c, "name": n, "min_size": "0.01"} for c, n in _FIAT]}


def currencies_crypto(state: EmulatorState) -> dict[str, Any]:
    """``GET /v2/currencies/crypto``: every asset of the listed markets."""
    return {
        "data": [
            {
                "asset_id": str(uuid.uuid5(_ASSET_NS, code)),
                "code": code,
                "name": _CRYPTO_NAMES.get(code, code),
                "color": "#0052FF",
                "sort_index": i,
                "exponent": 8,
                "type": "crypto",
                "address_regex": "",
            }
            for i, code in enumerate(_assets(state))
        ]
    }


def exchange_rates(state: EmulatorState, currency: str = "USD") -> dict[str, Any]:
    """``GET /v2/exchange-rates``: units of each currency per USD (synthetic: from the base prices)."""
    prices = {"USD": 1.0, "USDT": 1.0, "USDC": 1.0, "EUR": 1.08, "GBP": 1.27}
    for s in state.market.symbols:
        spec = state.market.spec(s)
        if spec.quote in ("USDT", "USD", "USDC"):
            prices.setdefault(spec.base, spec.base_price)
    base = prices.get(currency, 1.0)
    rates = {c: np.format_float_positional(base / p, precision=12, trim="-") for c, p in sorted(prices.items())}
    return {"data": {"currency": currency, "rates": rates}}


# ----------------------------------------------------------------------------- parameters


def _product(state: EmulatorState, q: Any) -> SymbolSpec:
    pid = q.get("product_id") or ""
    spec = products_by_id(state).get(pid)
    if spec is None:
        raise CoinbaseError(404, "NOT_FOUND", f"Product {pid} not supported")
    return spec


def _int(q: Any, name: str, *, unix: bool = False) -> int | None:
    """The whole number ``name`` of the query (None if absent); Coinbase's 400 if it is not one,
    worded as Coinbase words a bad UNIX time (``unix``) or a bad number."""
    raw = q.get(name)
    if raw is None or raw == "":
        return None
    if not _INT_RE.match(raw):
        if unix:
            raise _invalid(f"{name} argument is invalid - {raw!r} is not a UNIX timestamp in seconds")
        raise _invalid(f"invalid value for {name}: {raw!r}")
    return int(raw)


# ----------------------------------------------------------------------------- handlers


def _products(state: EmulatorState, q: Any) -> Any:
    ptype = q.get("product_type")
    if ptype not in (None, "", "SPOT", "FUTURE", "UNKNOWN_PRODUCT_TYPE"):
        raise _invalid(f"invalid value for product_type: {ptype!r}")
    wanted = q.getall("product_ids", []) if hasattr(q, "getall") else []
    rows = (
        []
        if ptype == "FUTURE"
        else [product(state, s) for pid, s in products_by_id(state).items() if not wanted or pid in wanted]
    )
    return {"products": rows, "num_products": len(rows)}


def _one_product(state: EmulatorState, q: Any) -> Any:
    return product(state, _product(state, q))


def _candles_json(state: EmulatorState, spec: SymbolSpec, t: np.ndarray, cols: list[np.ndarray]) -> list[dict]:
    pd_, qd = spec.price_decimals, spec.qty_decimals
    starts = (t // 1000).tolist()
    o, h, lo, c, v = (a.tolist() for a in cols)
    return [
        {
            "start": str(starts[i]),
            "low": dec(lo[i], pd_),
            "high": dec(h[i], pd_),
            "open": dec(o[i], pd_),
            "close": dec(c[i], pd_),
            "volume": dec(v[i], qd),
        }
        for i in range(len(starts) - 1, -1, -1)
    ]


def _candles(state: EmulatorState, q: Any) -> Any:
    spec = _product(state, q)
    granularity = q.get("granularity")
    if granularity not in GRANULARITIES:
        raise _invalid(f"granularity argument is invalid - {granularity!r} is not one of {', '.join(GRANULARITIES)}")
    timeframe, seconds = GRANULARITIES[granularity]
    start, end = _int(q, "start", unix=True), _int(q, "end", unix=True)
    if start is None or end is None:
        raise _invalid("start and end argument is invalid - start and end are required")
    if end < start:
        raise _invalid("start and end argument is invalid - start must be before end")
    if end - start > MAX_CANDLES * seconds:
        raise _invalid(
            f"start and end argument is invalid - number of candles requested should be less than {MAX_CANDLES}"
        )
    limit = _int(q, "limit")
    if limit is not None and not 1 <= limit <= MAX_CANDLES:
        raise _invalid(f"limit argument is invalid - must be between 1 and {MAX_CANDLES}")
    # buckets whose start is in [start, end], both inclusive; the bucket containing now is partial
    bars = state.market.bars(spec.symbol, timeframe, start * 1000, end * 1000 + 1, now_ms=state.clock.now_ms())
    if limit is not None and len(bars) > limit:
        bars = bars.take(slice(len(bars) - limit, None))
    return {"candles": _candles_json(state, spec, bars.t, [bars.o, bars.h, bars.l, bars.c, bars.v])}


def _trades_json(spec: SymbolSpec, tr: TradesArr) -> list[dict]:
    pd_, qd, pid = spec.price_decimals, spec.qty_decimals, f"{spec.base}-{spec.quote}"
    times = np.datetime_as_string(tr.ts.astype("datetime64[ms]").astype("datetime64[us]"), unit="us").tolist()
    ids, prices, sizes = tr.id.tolist(), tr.price.tolist(), tr.qty.tolist()
    # ``side`` is the maker's side, as on every Coinbase public trade feed: buyer-is-maker -> BUY
    sides = np.where(tr.buyer_maker, "BUY", "SELL").tolist()
    return [
        {
            "trade_id": str(ids[i]),
            "product_id": pid,
            "price": dec(prices[i], pd_),
            "size": dec(sizes[i], qd),
            "time": times[i] + "Z",
            "side": sides[i],
            "bid": "",
            "ask": "",
            "exchange": "coinbase",
        }
        for i in range(len(ids) - 1, -1, -1)
    ]


def _ticker(state: EmulatorState, q: Any) -> Any:
    spec = _product(state, q)
    limit = _int(q, "limit")
    if limit is None or limit == 0:
        limit = DEFAULT_TRADES
    if limit > MAX_TRADES:
        raise CoinbaseError(500, "INTERNAL", "Internal error")
    if limit < 0:
        raise _invalid("limit argument is invalid - must be positive")
    start, end = _int(q, "start", unix=True), _int(q, "end", unix=True)
    if start is not None and end is not None and end < start:
        raise _invalid("start and end argument is invalid - start must be before end")
    now = state.clock.now_ms()
    # trades with start <= time < end (seconds; end exclusive, default now), the newest `limit` first
    hi = now if end is None else min(now, end * 1000 - 1)
    tr = state.market.select_agg_trades(spec.symbol, from_id=None, start_ms=None, end_ms=hi, limit=limit, now_ms=now)
    if start is not None and len(tr) and tr.ts[0] < start * 1000:
        tr = tr.take(tr.ts >= start * 1000)
    last = _last_price(state, spec, now)
    best_ask = "" if last is None else dec(last, spec.price_decimals)
    best_bid = "" if last is None else dec(max(1, last - 1), spec.price_decimals)
    return {"trades": _trades_json(spec, tr), "best_bid": best_bid, "best_ask": best_ask}


def _time(state: EmulatorState, q: Any) -> Any:
    now = state.clock.now_ms()
    iso = np.datetime_as_string(np.datetime64(now, "ms"), unit="ms") + "Z"
    return {"iso": iso, "epochSeconds": str(now // 1000), "epochMillis": str(now)}


def _v2_time(state: EmulatorState, q: Any) -> Any:
    now = state.clock.now_ms()
    return {"data": {"iso": np.datetime_as_string(np.datetime64(now // 1000, "s")) + "Z", "epoch": now // 1000}}


_ROUTES = {
    "/api/v3/brokerage/market/products": _products,
    "/api/v3/brokerage/market/products/{product_id}": _one_product,
    "/api/v3/brokerage/market/products/{product_id}/candles": _candles,
    "/api/v3/brokerage/market/products/{product_id}/ticker": _ticker,
    "/api/v3/brokerage/time": _time,
    "/v2/currencies": lambda state, q: currencies_fiat(state),
    "/v2/currencies/crypto": lambda state, q: currencies_crypto(state),
    "/v2/exchange-rates": lambda state, q: exchange_rates(state, q.get("currency") or "USD"),
    "/v2/time": _v2_time,
}


class _Coinbase(Dialect):
    """Coinbase Advanced Trade public REST: 10 requests per second per IP, no rate-limit headers."""

    name = "coinbase"
    routes = {path: Route(handler, 1) for path, handler in _ROUTES.items()}
    default_limit = PUBLIC_REQUESTS_PER_SECOND
    budget_window_s = 1

    def rate_limited(self, retry_after_s: int, used: int, limit: int) -> Answer:
        return Answer(429, RATE_LIMIT_BODY)

    def fault(self, rule: FaultRule, used: int) -> Answer:
        kind = rule.kind
        if kind in ("429", "418"):
            # Coinbase sends no Retry-After; the emulator adds one only when the fault asks for it
            headers = {} if rule.retry_after is None else {"Retry-After": str(rule.retry_after)}
            return Answer(int(kind), RATE_LIMIT_BODY, headers)
        if kind == "403":
            return Answer(403, _CLOUDFLARE_403, {}, "text/html")
        if kind == "500":
            return Answer(500, {"error": "INTERNAL", "error_details": "Internal error", "message": "Internal error"})
        return gateway_page(int(kind))

    def mangle(self, rule: FaultRule, payload: Any) -> Any:
        key = next(
            (
                k
                for k in ("candles", "trades", "products")
                if isinstance(payload, dict) and isinstance(payload.get(k), list)
            ),
            None,
        )
        rows = payload[key] if key else None
        return mangle_rows_at(rule, payload, rows, lambda new: {**payload, key: new})


COINBASE = _Coinbase()
