"""Request weights per endpoint: how many tokens of the ``tokens_per_interval`` bucket a call costs.

Order of precedence for an endpoint (or a ccxt method name such as ``fetch_ohlcv``):

1. the config's ``endpoint_weights`` overrides;
2. this project's table for the exchange (Binance spot: the request weights of Binance's docs);
3. ccxt's own ``api`` cost metadata (``cost`` and ``byLimit``), scaled for Binance spot sections
   (ccxt counts Binance spot costs in units of 5 weight: ``exchangeInfo`` 4 -> 20);
4. 1.

The ``min_interval_s`` bucket ignores weights (it spaces requests).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from ccxt_questdb_assets.core.ccxt_modules import exchange_class
from ccxt_questdb_assets.core.errors import ConfigError

_log = logging.getLogger(__name__)

# Binance spot REST weights (developers.binance.com, "General API Information" / "Market Data
# endpoints"), as (limit upper bound, weight) steps where the weight depends on ``limit``.
_BINANCE_SPOT: dict[str, float | tuple[tuple[int, float], ...]] = {
    "ping": 1,
    "time": 1,
    "exchangeInfo": 20,
    "klines": 2,
    "uiKlines": 2,
    "aggTrades": 4,
    "trades": 25,
    "historicalTrades": 25,
    "avgPrice": 2,
    "depth": ((100, 5), (500, 25), (1000, 50), (5000, 250)),
}

#: ccxt unified methods -> the endpoint they call (one call per page).
_BINANCE_METHODS = {
    "fetch_time": "time",
    "fetch_status": "ping",
    "load_markets": "exchangeInfo",
    "fetch_markets": "exchangeInfo",
    "fetch_ohlcv": "klines",
    "fetch_trades": "aggTrades",
    "fetch_order_book": "depth",
}

EXCHANGE_TABLES: dict[str, dict[str, Any]] = {"binance": _BINANCE_SPOT}
#: The endpoint each unified method calls per exchange (one call per page), named as in ccxt's ``api``,
#: so that ccxt's own cost metadata weighs it (the units of the exchange's ``rateLimit``).
EXCHANGE_METHODS: dict[str, dict[str, str]] = {
    "binance": _BINANCE_METHODS,
    "binanceusdm": {
        "load_markets": "exchangeInfo",
        "fetch_markets": "exchangeInfo",
        "fetch_ohlcv": "klines",
        "fetch_trades": "aggTrades",
        "fetch_time": "time",
    },
    "okx": {
        "load_markets": "public/instruments",
        "fetch_markets": "public/instruments",
        "fetch_ohlcv": "market/history-candles",
        "fetch_trades": "market/history-trades",
        "fetch_time": "public/time",
    },
    "bybit": {
        "load_markets": "v5/market/instruments-info",
        "fetch_markets": "v5/market/instruments-info",
        "fetch_ohlcv": "v5/market/kline",
        "fetch_trades": "v5/market/recent-trade",
        "fetch_time": "v5/market/time",
    },
    "coinbase": {
        "load_markets": "brokerage/market/products",
        "fetch_markets": "brokerage/market/products",
        "fetch_ohlcv": "brokerage/market/products/{product_id}/candles",
        "fetch_trades": "brokerage/market/products/{product_id}/ticker",
    },
    "kraken": {
        "load_markets": "AssetPairs",
        "fetch_markets": "AssetPairs",
        "fetch_ohlcv": "OHLC",
        "fetch_trades": "Trades",
        "fetch_time": "Time",
    },
}
#: The ccxt ``api`` section to weigh an exchange's endpoints from, where several share a name.
_CCXT_SECTION = {"binanceusdm": "fapiPublic"}
# ccxt cost unit -> exchange weight, per (exchange, api section). Other sections: ccxt's cost as is.
_CCXT_COST_SCALE = {("binance", "public"): 5.0, ("binance", "private"): 5.0}

_PATH_PREFIXES = ("api/v3/", "api/v1/", "fapi/v1/", "dapi/v1/", "sapi/v1/")


def normalize_endpoint(endpoint: str) -> str:
    """``/api/v3/klines`` -> ``klines``; ``GET klines`` -> ``klines``; method names unchanged."""
    name = endpoint.strip()
    if " " in name:
        name = name.split()[-1]
    name = name.lstrip("/")
    for prefix in _PATH_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _stepped(spec: Any, limit: int | None) -> float:
    if isinstance(spec, (int, float)):
        return float(spec)
    steps = list(spec)
    if limit is None:
        return float(steps[0][1])
    for bound, weight in steps:
        if limit <= bound:
            return float(weight)
    return float(steps[-1][1])


@lru_cache(maxsize=32)
def _ccxt_api(exchange_id: str) -> dict[str, Any] | None:
    try:
        cls = exchange_class(exchange_id, async_=False)  # that exchange's module alone
    except ConfigError:  # not an exchange ccxt has
        return None
    try:
        return cls().api
    except Exception:  # noqa: BLE001 - an exchange that cannot be built offline has no metadata
        _log.debug("no ccxt api metadata for %s", exchange_id, exc_info=True)
        return None


def ccxt_cost(exchange_id: str, endpoint: str, *, limit: int | None = None, method: str = "get") -> float | None:
    """The weight ccxt's metadata gives ``endpoint`` (first matching section), or None."""
    api = _ccxt_api(exchange_id)
    if not api:
        return None
    # the exchange's own section first, then the main ones (binance: spot before futures/options,
    # which reuse endpoint names); nested sections (coinbase: v3 -> public) are walked too
    preferred = _CCXT_SECTION.get(exchange_id)
    flat = list(_sections(api))
    sections = sorted(flat, key=lambda kv: -1 if kv[0] == preferred else {"public": 0, "private": 1}.get(kv[0], 2))
    for section, by_method in sections:
        if not isinstance(by_method, Mapping):
            continue
        entries = by_method.get(method.lower()) or by_method.get(method.upper())
        if not isinstance(entries, Mapping) or endpoint not in entries:
            continue
        meta = entries[endpoint]
        if isinstance(meta, (int, float)):
            cost = float(meta)
        elif isinstance(meta, Mapping):
            cost = float(meta.get("cost", 1))
            by_limit = meta.get("byLimit")
            if by_limit and limit is not None:
                cost = _stepped([(int(b), float(w)) for b, w in by_limit], limit)
        else:
            cost = 1.0
        scale = 1.0
        for (ex, prefix), factor in _CCXT_COST_SCALE.items():
            if ex == exchange_id and section == prefix:
                scale = factor
                break
        return cost * scale
    return None


def _sections(api: Mapping[str, Any]):
    """(section name, {http method: {endpoint: cost}}) pairs, nested sections flattened."""
    for name, value in api.items():
        if not isinstance(value, Mapping):
            continue
        if any(m in value for m in ("get", "post", "GET", "POST")):
            yield name, value
        else:
            for sub, inner in _sections(value):
                yield sub if sub in ("public", "private") and name in ("v3", "v2") else f"{name}.{sub}", inner


class EndpointWeights:
    """Weights of one exchange's endpoints. ``weight('klines')``, ``for_call('fetch_ohlcv', limit=1000)``."""

    def __init__(
        self, exchange_id: str | None, overrides: Mapping[str, float] | None = None, *, use_ccxt_metadata: bool = True
    ) -> None:
        self.exchange_id = (exchange_id or "").lower()
        self.overrides = {normalize_endpoint(k): float(v) for k, v in (overrides or {}).items()}
        self.use_ccxt_metadata = use_ccxt_metadata

    def weight(self, endpoint: str, *, limit: int | None = None, default: float = 1.0) -> float:
        name = normalize_endpoint(endpoint)
        if name in self.overrides:
            return self.overrides[name]
        table = EXCHANGE_TABLES.get(self.exchange_id, {})
        if name in table:
            return _stepped(table[name], limit)
        if self.use_ccxt_metadata and self.exchange_id:
            cost = ccxt_cost(self.exchange_id, name, limit=limit)
            if cost is not None and cost > 0:
                return cost
        return default

    def endpoint_for(self, method: str) -> str | None:
        return EXCHANGE_METHODS.get(self.exchange_id, {}).get(method)

    def for_call(self, method: str, *, limit: int | None = None, default: float = 1.0) -> float:
        """Weight of one call of a ccxt unified method (override by method name or by endpoint)."""
        if method in self.overrides:
            return self.overrides[method]
        endpoint = self.endpoint_for(method)
        if endpoint is None:
            return default
        return self.weight(endpoint, limit=limit, default=default)
