"""Build ccxt exchanges that talk only to the host we choose, and load their markets once.

Layer rule: this module imports ccxt and ``core`` only (no dagster, nothing from ``testing``).

Base URL rule (``build_exchange(..., base_url=...)``): every URL string found anywhere in the
exchange's ``urls['api']`` mapping (and in ``urls['test']``/``urls['demo']``, which sandbox or demo
mode would swap in) keeps its path and query and gets ``base_url`` as scheme, host and prefix:
``https://api.binance.com/api/v3`` -> ``{base_url}/api/v3``, ``https://{hostname}`` ->
``{base_url}``. Nothing is left that can reach the public exchange. Exchanges that build URLs
from a ``hostname`` attribute get it set to the base URL's ``host[:port]`` too.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import difflib
import json
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ccxt_questdb_assets.core.ccxt_modules import exchange_class
from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.exchange.bulk_candles import install_bulk_candles
from ccxt_questdb_assets.exchange.loops import PerLoop
from ccxt_questdb_assets.exchange.retry import MalformedResponse

__all__ = [
    "DEFAULT_OPTIONS",
    "build_exchange",
    "market_type_options",
    "clear_markets_cache",
    "load_markets_cached",
    "load_markets_cached_async",
    "markets_cache_key",
    "normalize_base_url",
    "require_symbol",
    "require_timeframe",
    "rewrite_api_urls",
]

# Per-exchange option defaults that keep market loading to what a spot-data pipeline needs.
# binance: exactly one request (GET /api/v3/exchangeInfo) instead of spot + USD-M + COIN-M
# exchangeInfo plus currencies (verified against ccxt 4.5.90). User options override these.
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "binance": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False},
    "binanceus": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False},
    # USD-M perpetuals: GET /fapi/v1/exchangeInfo only (no sapi currencies/margin requests even with API keys)
    "binanceusdm": {"fetchMarkets": {"types": ["linear"]}, "fetchCurrencies": False, "fetchMargins": False},
    "okx": {"fetchMarkets": {"types": ["spot"]}},
    "bybit": {"fetchMarkets": {"types": ["spot"]}},
}

# Constructor settings per exchange, deep-merged under the caller's ``config``: markets without
# ccxt's fetchCurrencies (unused here; no option turns it off): coinbase 2 requests instead of 5
# (its three /v2 currency calls), kraken 1 instead of 2 (/0/public/Assets). Same markets.
DEFAULT_CONFIG: dict[str, dict[str, Any]] = {
    "coinbase": {"has": {"fetchCurrencies": False}},
    "kraken": {"has": {"fetchCurrencies": False}},
}

# The market type a derivative symbol (``BTC/USDT:USDT``) needs loaded beside spot, per exchange
# (one more markets request, made only when a configured symbol is one).
_DERIVATIVE_TYPES: dict[str, str] = {"binance": "linear", "okx": "swap", "bybit": "linear"}


def market_type_options(exchange_id: str, symbols: list[str] | tuple[str, ...] | None) -> dict[str, Any]:
    """ccxt options loading the market types ``symbols`` need: spot, plus perpetual swaps when one is
    configured (``{}`` when the defaults do)."""
    extra = _DERIVATIVE_TYPES.get(exchange_id)
    if extra and any(":" in s for s in symbols or ()):
        return {"fetchMarkets": {"types": ["spot", extra]}}
    return {}


# urls sections that hold API endpoints (sandbox/demo modes swap 'test'/'demo' into 'api').
_URL_SECTIONS = ("api", "test", "demo")


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def normalize_base_url(base_url: str) -> str:
    """Validate ``http(s)://host[:port][/prefix]`` and return it without a trailing slash."""
    if not isinstance(base_url, str) or not base_url or base_url != base_url.strip():
        raise ConfigError(f"base_url {base_url!r} must be a non-empty URL without surrounding spaces")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"base_url {base_url!r} must start with http:// or https://")
    if not parts.hostname:
        raise ConfigError(f"base_url {base_url!r} has no host")
    if parts.query or parts.fragment or "?" in base_url or "#" in base_url:
        raise ConfigError(f"base_url {base_url!r} must not contain a query or fragment")
    if parts.username or parts.password:
        raise ConfigError("base_url must not contain credentials (user:password@)")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"base_url {base_url!r} has an invalid port") from exc
    if any(ch.isspace() for ch in base_url):
        raise ConfigError(f"base_url {base_url!r} must not contain whitespace")
    return base_url.rstrip("/")


def _rewrite_one(url: str, base: str) -> str:
    parts = urlsplit(url)
    if not parts.scheme:  # not an absolute URL (e.g. a version tag): leave it
        return url
    path = parts.path
    return base + path + (f"?{parts.query}" if parts.query else "")


def rewrite_api_urls(urls: Any, base_url: str) -> Any:
    """Return a copy of a (nested) urls mapping with every URL string re-based on ``base_url``."""
    base = normalize_base_url(base_url)
    if isinstance(urls, str):
        return _rewrite_one(urls, base)
    if isinstance(urls, Mapping):
        return {k: rewrite_api_urls(v, base) for k, v in urls.items()}
    if isinstance(urls, list):
        return [rewrite_api_urls(v, base) for v in urls]
    return urls


def build_exchange(
    exchange_id: str,
    *,
    base_url: str | None = None,
    options: Mapping[str, Any] | None = None,
    async_: bool = True,
    api_key: str | None = None,
    secret: str | None = None,
    timeout_ms: int = 10_000,
    enable_rate_limit: bool = True,
    config: Mapping[str, Any] | None = None,
) -> Any:
    """Create a ccxt exchange (``ccxt.async_support`` when ``async_``) pointed at ``base_url``.

    ``options`` are deep-merged over :data:`DEFAULT_OPTIONS` for that exchange; ``config`` is
    passed to the ccxt constructor as is (after our keys). Credentials are never logged.
    """
    if not isinstance(timeout_ms, int) or timeout_ms <= 0:
        raise ConfigError(f"timeout_ms must be a positive integer of milliseconds, got {timeout_ms!r}")
    base = normalize_base_url(base_url) if base_url is not None else None
    cls = exchange_class(exchange_id, async_=async_)
    merged = _deep_merge(DEFAULT_OPTIONS.get(exchange_id, {}), options or {})
    ctor: dict[str, Any] = {"enableRateLimit": enable_rate_limit, "timeout": timeout_ms, "options": merged}
    if api_key is not None:
        ctor["apiKey"] = api_key
    if secret is not None:
        ctor["secret"] = secret
    defaults = DEFAULT_CONFIG.get(exchange_id)
    if defaults or config:
        ctor = _deep_merge(ctor, _deep_merge(defaults or {}, config or {}))
    exchange = cls(ctor)
    _require_json_bodies(exchange)
    install_bulk_candles(exchange)
    if base is not None:
        for section in _URL_SECTIONS:
            if section in exchange.urls:
                exchange.urls[section] = rewrite_api_urls(exchange.urls[section], base)
        if getattr(exchange, "hostname", None):
            exchange.hostname = urlsplit(base).netloc
        if base.startswith("http://") and hasattr(exchange, "timeout_on_exit"):
            exchange.timeout_on_exit = 0  # async close() sleeps 250 ms for TLS shutdown; plain HTTP has none
    return exchange


# What the current task (or thread) last heard from the exchange; set inside ccxt's ``fetch``.
_last_answer: contextvars.ContextVar[tuple[int, Mapping[str, Any]] | None] = contextvars.ContextVar(
    "ccxt_questdb_last_answer", default=None
)
_last_list_len: contextvars.ContextVar[int | None] = contextvars.ContextVar("ccxt_questdb_last_list_len", default=None)
_pending_body: contextvars.ContextVar[tuple[int, str, str] | None] = contextvars.ContextVar(
    "ccxt_questdb_pending_body", default=None
)


def last_answer() -> tuple[int, Mapping[str, Any]] | None:
    """HTTP status and headers of the last answer the current task (or thread) received.

    ``exchange.last_response_headers`` is shared by every call on the exchange object; this is per
    asyncio task, so a 429 and its ``Retry-After`` are read from the very answer that raised.
    """
    return _last_answer.get()


def forget_last_answer() -> None:
    _last_answer.set(None)
    _last_list_len.set(None)


def last_answer_rows() -> int | None:
    """How many rows the last 2xx answer held (None: no list in it), before ccxt's parsers saw it: a
    parser that silently drops a row (a kline with a null time) shows as fewer rows."""
    return _last_list_len.get()


def _rows_in(parsed: Any) -> int | None:
    """The rows of an answer: a top-level list, else the longest list one or two levels inside the
    envelope (OKX ``data``, Bybit ``result.list``, Coinbase ``candles``, Kraken ``result.<pair>``)."""
    if isinstance(parsed, list):
        return len(parsed)
    if not isinstance(parsed, Mapping):
        return None
    lists = [len(v) for v in parsed.values() if isinstance(v, list)]
    lists += [len(w) for v in parsed.values() if isinstance(v, Mapping) for w in v.values() if isinstance(w, list)]
    return max(lists) if lists else None


def _require_json_bodies(exchange: Any) -> None:
    """Make a 2xx answer whose body is not valid JSON raise :class:`MalformedResponse`.

    ccxt swallows a JSON parse error and hands the raw text to its parsers, which then produce
    plausible junk (``limit`` rows of ``[n, None, ...]``, trades without ids, no markets). ccxt's
    ``fetch`` calls ``on_rest_response`` and then ``parse_json`` on the same body in the same task:
    the first notes a 2xx answer, the second parses it once (no second parse of every page) and
    raises if it is not JSON. A context variable carries the note, so concurrent calls cannot see
    each other's answers.
    """
    original_response, original_parse = exchange.on_rest_response, exchange.parse_json

    def on_rest_response(code, reason, url, method, headers, body, *rest):
        if isinstance(code, int):
            _last_answer.set((code, dict(headers or {})))
            ok_text = 200 <= code < 300 and isinstance(body, str) and body.strip()
            _pending_body.set((code, method, url) if ok_text else None)
        return original_response(code, reason, url, method, headers, body, *rest)

    def parse_json(body):
        pending = _pending_body.get()
        if pending is None:
            return original_parse(body)
        _pending_body.set(None)
        try:
            if isinstance(body, str) and body[:1] in ("{", "["):
                parsed = exchange.on_json_response(body)
                _last_list_len.set(_rows_in(parsed))
                return parsed
            json.loads(body)  # a JSON scalar passes; ccxt itself returns no JSON for it
            _last_list_len.set(None)
            return None
        except ValueError:
            code, method, url = pending
            raise MalformedResponse(
                f"{exchange.id} {method} {urlsplit(url).path}: HTTP {code} with a body that is not "
                f"valid JSON ({len(body)} characters)"
            ) from None

    exchange.on_rest_response = on_rest_response
    exchange.parse_json = parse_json


# ----------------------------------------------------------------------------- markets cache

_CacheKey = tuple[str, str, str]
_markets_cache: dict[_CacheKey, dict[str, Any]] = {}
_sync_locks: dict[_CacheKey, threading.Lock] = {}
_async_locks: PerLoop[dict[_CacheKey, asyncio.Lock]] = PerLoop(dict)
_guard = threading.Lock()


def markets_cache_key(exchange: Any) -> _CacheKey:
    """(exchange id, API base, market types): two instances with the same key share markets."""
    api = exchange.urls.get("api")
    first = api if isinstance(api, str) else next(iter(_flatten_urls(api)), "")
    parts = urlsplit(first)
    types = repr(exchange.options.get("fetchMarkets"))
    return (exchange.id, f"{parts.scheme}://{parts.netloc}", types)


def _flatten_urls(urls: Any) -> list[str]:
    if isinstance(urls, str):
        return [urls]
    if isinstance(urls, Mapping):
        return [u for v in urls.values() for u in _flatten_urls(v)]
    return []


def _snapshot(exchange: Any) -> dict[str, Any]:
    helpers = exchange.options.get("marketHelperProps") or []
    return {
        "markets": copy.deepcopy(list(exchange.markets.values())),
        "currencies": copy.deepcopy(exchange.currencies),
        "helpers": {h: copy.deepcopy(exchange.options.get(h)) for h in helpers},
    }


def _restore(exchange: Any, snap: dict[str, Any]) -> dict[str, Any]:
    exchange.set_markets(copy.deepcopy(snap["markets"]), copy.deepcopy(snap["currencies"]))
    for key, value in snap["helpers"].items():
        exchange.options[key] = copy.deepcopy(value)
    return exchange.markets


def load_markets_cached(exchange: Any, *, reload: bool = False) -> dict[str, Any]:
    """Sync ``load_markets`` that hits the exchange once per process per cache key."""
    key = markets_cache_key(exchange)
    with _guard:
        lock = _sync_locks.setdefault(key, threading.Lock())
    with lock:
        if not reload and key in _markets_cache:
            return _restore(exchange, _markets_cache[key])
        exchange.load_markets(reload=reload)
        _markets_cache[key] = _snapshot(exchange)
        return exchange.markets


def restore_cached_markets(exchange: Any) -> bool:
    """Give ``exchange`` the process-wide cached markets without a request; False when none are cached."""
    key = markets_cache_key(exchange)
    with _guard:
        snap = _markets_cache.get(key)
    if snap is None:
        return False
    _restore(exchange, snap)
    return True


async def load_markets_cached_async(exchange: Any, *, reload: bool = False) -> dict[str, Any]:
    """Async ``load_markets`` sharing the process-wide cache; concurrent callers wait for one load."""
    key = markets_cache_key(exchange)
    lock = _async_locks.get().setdefault(key, asyncio.Lock())  # only the loop's own thread uses its dict
    async with lock:
        if not reload and key in _markets_cache:
            return _restore(exchange, _markets_cache[key])
        await exchange.load_markets(reload=reload)
        _markets_cache[key] = _snapshot(exchange)
        return exchange.markets


def clear_markets_cache() -> None:
    """Forget cached markets (tests; or after an exchange lists new symbols)."""
    with _guard:
        _markets_cache.clear()
    _async_locks.clear()


def require_symbol(exchange: Any, symbol: str) -> dict[str, Any]:
    """Return the loaded market for ``symbol`` or raise ConfigError naming close matches."""
    markets = exchange.markets or {}
    if not markets:
        raise ConfigError(f"{exchange.id}: markets are not loaded; cannot check symbol {symbol!r}")
    if symbol in markets:
        return markets[symbol]
    close = difflib.get_close_matches(symbol, list(markets), n=5, cutoff=0.5)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise ConfigError(f"{exchange.id}: unknown symbol {symbol!r}{hint}")


def require_timeframe(exchange: Any, timeframe: str) -> str:
    """Return ``timeframe`` if the exchange supports it, else raise ConfigError listing valid ones."""
    valid = list((exchange.timeframes or {}).keys())
    if timeframe not in valid:
        raise ConfigError(f"{exchange.id}: unsupported timeframe {timeframe!r}; valid: {', '.join(valid)}")
    return timeframe
