"""Real ccxt (sync and async) against the emulator: markets, candles, trades, errors, URL rewrite."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import ccxt
import pytest
from ccxt_support import burst_start, run_on

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.emulator.market import DAY_MS, HOUR_MS, MINUTE_MS
from ccxt_questdb_assets.exchange.client import (
    build_exchange,
    clear_markets_cache,
    load_markets_cached,
    load_markets_cached_async,
    require_symbol,
    require_timeframe,
)
from ccxt_questdb_assets.exchange.retry import MalformedResponse

KLINES = "/api/v3/klines"
AGG = "/api/v3/aggTrades"
INFO = "/api/v3/exchangeInfo"
NOW = int(datetime(2024, 6, 1, 12, 0, tzinfo=UTC).timestamp() * 1000) + 42_424

MODES = ["sync", "async"]


def call(emulator, mode: str, fn: Callable[[Any], Any], *, timeout_ms: int = 10_000, load: bool = True) -> Any:
    """Run ``fn(exchange)`` on a fresh binance exchange of ``mode``; markets loaded unless ``load``."""
    ex = build_exchange(
        "binance", base_url=emulator.base_url, async_=(mode == "async"), timeout_ms=timeout_ms, enable_rate_limit=False
    )
    return run_on(ex, fn, load=load)


def as_tuples(trades: list[dict[str, Any]]) -> list[tuple]:
    return [(int(t["id"]), t["timestamp"], t["price"], t["amount"], t["side"]) for t in trades]


# ----------------------------------------------------------------------------- markets


@pytest.mark.parametrize("mode", MODES)
def test_load_markets_makes_exactly_one_request(emulator, emulator_control, mode):
    markets = call(emulator, mode, lambda ex: ex.load_markets(), load=False)
    assert [(r["method"], r["path"]) for r in emulator_control.requests()] == [("GET", INFO)]
    assert sorted(markets) == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    btc = markets["BTC/USDT"]
    assert btc["id"] == "BTCUSDT" and btc["spot"] and btc["active"] and btc["type"] == "spot"
    assert btc["precision"] == {"amount": 1e-05, "price": 0.01, "base": 1e-08, "quote": 1e-08}
    assert btc["limits"]["cost"]["min"] == 5.0


def test_markets_cache_loads_once_per_process(emulator, emulator_control):
    clear_markets_cache()
    try:
        exchanges = [build_exchange("binance", base_url=emulator.base_url, async_=False) for _ in range(3)]
        for ex in exchanges:
            assert sorted(load_markets_cached(ex)) == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
            assert ex.markets_by_id["ETHUSDT"][0]["symbol"] == "ETH/USDT"
        assert emulator_control.count(INFO) == 1
        clear_markets_cache()
        emulator_control.clear_requests()

        async def many() -> None:
            exs = [build_exchange("binance", base_url=emulator.base_url) for _ in range(4)]
            try:
                results = await asyncio.gather(*(load_markets_cached_async(ex) for ex in exs))
                assert all(sorted(r) == ["BTC/USDT", "ETH/USDT", "SOL/USDT"] for r in results)
                await exs[0].fetch_ohlcv("SOL/USDT", "1h", limit=2)  # a cached instance works
            finally:
                await asyncio.gather(*(ex.close() for ex in exs))

        asyncio.run(many())
        assert emulator_control.count(INFO) == 1
    finally:
        clear_markets_cache()


def test_require_symbol_and_timeframe(emulator, emulator_control):
    ex = build_exchange("binance", base_url=emulator.base_url, async_=False)
    with pytest.raises(ConfigError, match="markets are not loaded"):
        require_symbol(ex, "BTC/USDT")
    ex.load_markets()
    assert require_symbol(ex, "ETH/USDT")["id"] == "ETHUSDT"
    with pytest.raises(ConfigError, match=r"'BTC/USDC'.*BTC/USDT"):
        require_symbol(ex, "BTC/USDC")
    assert require_timeframe(ex, "1h") == "1h"
    with pytest.raises(ConfigError, match=r"'7m'.*1m, 3m, 5m"):
        require_timeframe(ex, "7m")


# ----------------------------------------------------------------------------- candles


def _ohlcv_cases(market) -> list[tuple[str, str, str, int, int]]:
    btc_listing = market.listing_ms("BTCUSDT")
    ((btc_out, btc_back),) = market.outages("BTCUSDT")
    ((eth_out, _),) = market.outages("ETHUSDT")
    sol_listing = market.listing_ms("SOLUSDT")
    return [
        ("listing-1m", "BTC/USDT", "1m", btc_listing - 30 * MINUTE_MS, 100),
        ("outage-1m", "BTC/USDT", "1m", btc_out - 60 * MINUTE_MS, 1000),
        ("outage-1h", "ETH/USDT", "1h", eth_out - 10 * HOUR_MS, 50),
        ("listing-1d", "SOL/USDT", "1d", sol_listing - 10 * DAY_MS, 20),
        ("after-outage-5m", "BTC/USDT", "5m", btc_back - 7 * MINUTE_MS, 30),
    ]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", range(5))
def test_fetch_ohlcv_equals_ground_truth(emulator, emulator_control, mode, case):
    emulator_control.freeze_clock(NOW)
    name, symbol, tf, since, limit = _ohlcv_cases(emulator.market)[case]
    got = call(emulator, mode, lambda ex: ex.fetch_ohlcv(symbol, tf, since=since, limit=limit))
    tf_ms = {"1m": MINUTE_MS, "5m": 5 * MINUTE_MS, "1h": HOUR_MS, "1d": DAY_MS}[tf]
    want = emulator.market.candles(symbol, tf, since, since + 2 * limit * tf_ms + DAY_MS, now_ms=NOW)[:limit]
    assert got == want, name
    assert emulator_control.count(KLINES) == 1


@pytest.mark.parametrize("mode", MODES)
def test_fetch_ohlcv_recent_and_until(emulator, emulator_control, mode):
    emulator_control.freeze_clock(NOW)

    def fn(ex):
        if mode == "sync":
            return ex.fetch_ohlcv("ETH/USDT", "1m", limit=5), ex.fetch_ohlcv(
                "ETH/USDT", "15m", since=NOW - DAY_MS, params={"until": NOW - DAY_MS + HOUR_MS}
            )

        async def both():
            return (
                await ex.fetch_ohlcv("ETH/USDT", "1m", limit=5),
                await ex.fetch_ohlcv("ETH/USDT", "15m", since=NOW - DAY_MS, params={"until": NOW - DAY_MS + HOUR_MS}),
            )

        return both()

    recent, window = call(emulator, mode, fn)
    assert recent == emulator.market.candles("ETH/USDT", "1m", NOW - 10 * MINUTE_MS, NOW + 1, now_ms=NOW)[-5:]
    assert recent[-1][0] == NOW - NOW % MINUTE_MS  # the open candle, cut at now
    first_open = NOW - DAY_MS - (NOW - DAY_MS) % (15 * MINUTE_MS) + 15 * MINUTE_MS
    assert [r[0] for r in window] == [first_open + i * 15 * MINUTE_MS for i in range(4)]  # endTime inclusive
    assert window == emulator.market.candles("ETH/USDT", "15m", NOW - DAY_MS, NOW - DAY_MS + HOUR_MS + 1)


def test_open_candle_moves_with_the_clock(emulator, emulator_control):
    ex = build_exchange("binance", base_url=emulator.base_url, async_=False)
    ex.load_markets()
    emulator_control.freeze_clock(NOW)
    before = ex.fetch_ohlcv("BTC/USDT", "1h", limit=1)[-1]
    emulator_control.freeze_clock(NOW + 30 * MINUTE_MS)
    after = ex.fetch_ohlcv("BTC/USDT", "1h", limit=1)[-1]
    assert before[0] == after[0] and after[5] > before[5]
    assert after == emulator.market.candles("BTC/USDT", "1h", after[0], after[0] + 1, now_ms=NOW + 30 * MINUTE_MS)[0]


# ----------------------------------------------------------------------------- trades


@pytest.mark.parametrize("mode", MODES)
def test_fetch_trades_paged_by_from_id_through_bursts(emulator, emulator_control, mode):
    emulator_control.freeze_clock(NOW)
    market = emulator.market
    start_id = burst_start(market, "BTCUSDT", NOW - 5 * HOUR_MS)
    want = market.trades_from_id("BTCUSDT", start_id, 60, now_ms=NOW)

    def pages(ex):
        def step(from_id):
            return ex.fetch_trades("BTC/USDT", limit=7, params={"fromId": from_id})

        if mode == "sync":
            out, nxt = [], start_id
            while len(out) < 60:
                page = step(nxt)
                out += page
                nxt = int(page[-1]["id"]) + 1
            return out

        async def run():
            out, nxt = [], start_id
            while len(out) < 60:
                page = await step(nxt)
                out += page
                nxt = int(page[-1]["id"]) + 1
            return out

        return run()

    got = call(emulator, mode, pages)[:60]
    assert as_tuples(got) == [tuple(t) for t in want]
    assert len({t["timestamp"] for t in got}) < 60  # same-millisecond trades crossed page edges
    assert all(r["params"]["limit"] == "7" for r in emulator_control.requests(AGG))


@pytest.mark.parametrize("mode", MODES)
def test_fetch_trades_since_uses_a_one_hour_window(emulator, emulator_control, mode):
    emulator_control.freeze_clock(NOW)
    ((out_start, _),) = emulator.market.outages("SOLUSDT")
    since = out_start - 30 * MINUTE_MS
    got = call(emulator, mode, lambda ex: ex.fetch_trades("SOL/USDT", since=since, limit=1000))
    want = emulator.market.trades("SOLUSDT", since, since + HOUR_MS + 1)
    assert as_tuples(got) == [tuple(t) for t in want]
    assert max(t["timestamp"] for t in got) < out_start  # the outage half of the hour is empty
    (req,) = emulator_control.requests(AGG)
    assert int(req["params"]["endTime"]) - int(req["params"]["startTime"]) == HOUR_MS


# ----------------------------------------------------------------------------- errors

FAULTS: list[tuple[str, int, type[Exception]]] = [
    ("429", 1, ccxt.DDoSProtection),
    ("418", 1, ccxt.DDoSProtection),
    ("403", 1, ccxt.RateLimitExceeded),  # -1003 body on a non-429 status
    ("500", 1, ccxt.OperationFailed),  # Binance JSON -1000; exactly OperationFailed, not a NetworkError
    ("502", 1, ccxt.ExchangeNotAvailable),
    ("503", 1, ccxt.ExchangeNotAvailable),
    ("504", 1, ccxt.RequestTimeout),
    ("delay", 1, ccxt.RequestTimeout),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("kind", "count", "exc"), FAULTS, ids=[f[0] for f in FAULTS])
def test_faults_raise_the_expected_ccxt_exception(emulator, emulator_control, mode, kind, count, exc):
    emulator_control.inject(kind, count=count, path=KLINES, retry_after=3, delay_s=1.0)

    def fn(ex):
        return ex.fetch_ohlcv("BTC/USDT", "1m", limit=5)

    with pytest.raises(exc) as info:
        call(emulator, mode, fn, timeout_ms=400)
    if kind == "500":
        assert type(info.value) is ccxt.OperationFailed
    if kind in ("429", "418"):
        assert not isinstance(info.value, ccxt.RateLimitExceeded)


@pytest.mark.parametrize("mode", MODES)
def test_retry_after_is_readable_from_last_response_headers(emulator, emulator_control, mode):
    emulator_control.inject("429", retry_after=17, path=KLINES)

    def fn(ex):
        async def run():
            with pytest.raises(ccxt.DDoSProtection):
                await ex.fetch_ohlcv("BTC/USDT", "1m", limit=5)
            return ex.last_response_headers

        if mode == "async":
            return run()
        with pytest.raises(ccxt.DDoSProtection):
            ex.fetch_ohlcv("BTC/USDT", "1m", limit=5)
        return ex.last_response_headers

    headers = call(emulator, mode, fn)
    assert {k.lower(): v for k, v in headers.items()}["retry-after"] == "17"


def test_dropped_connection_sync_raises_network_error(emulator, emulator_control):
    emulator_control.inject("drop_connection", path=KLINES)
    with pytest.raises(ccxt.NetworkError) as info:
        call(emulator, "sync", lambda ex: ex.fetch_ohlcv("BTC/USDT", "1m", limit=5))
    assert type(info.value) is ccxt.NetworkError


def test_dropped_connection_async_is_retried_once_by_aiohttp(emulator, emulator_control):
    emulator_control.inject("drop_connection", path=KLINES)
    rows = call(emulator, "async", lambda ex: ex.fetch_ohlcv("BTC/USDT", "1m", limit=5))
    assert len(rows) == 5
    assert [r["fault"] for r in emulator_control.requests(KLINES)] == ["drop_connection", None]
    emulator_control.inject("drop_connection", count=2, path=KLINES)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        call(emulator, "async", lambda ex: ex.fetch_ohlcv("BTC/USDT", "1m", limit=5))


@pytest.mark.parametrize("mode", MODES)
def test_plain_ccxt_turns_broken_json_into_junk_rows(emulator, emulator_control, mode):
    """Plain ccxt does not raise on a cut 200 body: it parses the raw text character by character."""

    def plain(ex):
        del ex.on_rest_response  # back to ccxt's own hook, without our JSON check
        return ex.fetch_ohlcv("BTC/USDT", "1m", limit=5)

    emulator_control.inject("truncated_json", path=KLINES)
    rows = call(emulator, mode, plain)
    assert len(rows) == 5 and all(r[1:] == [None] * 5 for r in rows)


@pytest.mark.parametrize("mode", MODES)
def test_broken_json_raises_malformed_response(emulator, emulator_control, mode):
    """Exchanges from build_exchange refuse a 2xx body that is not JSON (a transient error)."""
    emulator_control.inject("truncated_json", path=KLINES)
    with pytest.raises(MalformedResponse, match="not valid JSON"):
        call(emulator, mode, lambda ex: ex.fetch_ohlcv("BTC/USDT", "1m", limit=5))
    emulator_control.inject("truncated_json", path=AGG)
    with pytest.raises(MalformedResponse):
        call(emulator, mode, lambda ex: ex.fetch_trades("BTC/USDT", limit=5))
    emulator_control.inject("empty_page", path=KLINES)
    assert call(emulator, mode, lambda ex: ex.fetch_ohlcv("BTC/USDT", "1m", limit=5)) == []


def test_duplicate_and_shuffled_rows_through_ccxt(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    since = NOW - DAY_MS

    def fetch(ex):
        return ex.fetch_ohlcv("BTC/USDT", "1m", since=since, limit=10)

    clean = call(emulator, "sync", fetch)
    emulator_control.inject("out_of_order_rows", path=KLINES)
    assert call(emulator, "sync", fetch) == clean  # ccxt sorts by timestamp
    emulator_control.inject("duplicate_rows", path=KLINES)
    dup = call(emulator, "sync", fetch)
    # 12 rows come back; with `since` ccxt keeps the first `limit`: a duplicate stays, the last row is lost
    assert len(dup) == 10 and dup[:6] == clean[:6] and dup[6] == clean[5] and dup[7:] == clean[6:9]
    emulator_control.inject("duplicate_rows", path=AGG)
    trades = call(emulator, "sync", lambda ex: ex.fetch_trades("BTC/USDT", limit=10, params={"fromId": 1000}))
    ids = [int(t["id"]) for t in trades]
    assert ids == [1002, 1003, 1004, 1005, 1005, 1006, 1007, 1008, 1009, 1009]  # without since: the last `limit`


def test_truncated_exchange_info_raises_instead_of_loading_no_markets(emulator, emulator_control):
    emulator_control.inject("truncated_json", path=INFO)
    with pytest.raises(MalformedResponse):
        call(emulator, "sync", lambda ex: ex.load_markets(), load=False)


@pytest.mark.parametrize("mode", MODES)
def test_weight_burst_gets_429_with_retry_after(emulator, emulator_control, mode):
    emulator_control.set_weight_limit(30)  # exchangeInfo (20) + five klines (2 each)

    def fn(ex):
        async def run():
            for _ in range(40):
                await ex.fetch_ohlcv("BTC/USDT", "1m", limit=1)

        if mode == "async":
            return run()
        for _ in range(40):
            ex.fetch_ohlcv("BTC/USDT", "1m", limit=1)

    with pytest.raises(ccxt.DDoSProtection):
        call(emulator, mode, fn)
    last = emulator_control.requests(KLINES)[-1]
    assert last["status"] == 429
    assert emulator_control.used_weight() > 30


BINANCE_PARAM_ERRORS: list[tuple[str, Callable[[Any], Any], type[Exception]]] = [
    ("limit>1000", lambda ex: ex.fetch_trades("BTC/USDT", limit=1001), ccxt.BadRequest),
    ("bad symbol", lambda ex: ex.publicGetKlines({"symbol": "NOPEUSDT", "interval": "1m"}), ccxt.BadSymbol),
    ("bad interval", lambda ex: ex.fetch_ohlcv("BTC/USDT", "2m"), ccxt.BadRequest),
    (
        "aggTrades > 1h",
        lambda ex: ex.fetch_trades("BTC/USDT", since=NOW - 3 * HOUR_MS, params={"until": NOW - HOUR_MS}),
        ccxt.BadRequest,
    ),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("name", "fn", "exc"), BINANCE_PARAM_ERRORS, ids=[e[0] for e in BINANCE_PARAM_ERRORS])
def test_binance_parameter_errors_map_to_ccxt(emulator, emulator_control, mode, name, fn, exc):
    emulator_control.freeze_clock(NOW)
    with pytest.raises(exc):
        call(emulator, mode, fn)
    assert emulator_control.requests()[-1]["status"] == 400


# ----------------------------------------------------------------------------- base URL


def _all_urls(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [u for v in value.values() for u in _all_urls(v)]
    if isinstance(value, list):
        return [u for v in value for u in _all_urls(v)]
    return []


@pytest.mark.parametrize("exchange_id", ["binance", "okx", "bybit", "kraken", "coinbase", "kucoin", "gate", "bitget"])
def test_base_url_rewrite_leaves_nothing_pointing_elsewhere(exchange_id):
    base = "http://127.0.0.1:9/prefix"
    ex = build_exchange(exchange_id, base_url=base + "/", async_=False)
    for section in ("api", "test", "demo"):
        urls = _all_urls(ex.urls.get(section))
        assert all(u.startswith(base) for u in urls if "://" in u), (section, urls)
    assert _all_urls(ex.urls["api"])
    if exchange_id == "binance":
        assert ex.urls["api"]["public"] == base + "/api/v3"
        assert ex.urls["api"]["fapiPublic"] == base + "/fapi/v1"
    if getattr(ex, "hostname", None):
        assert ex.hostname == "127.0.0.1:9"


@pytest.mark.parametrize(
    ("exchange_id", "path"),
    [
        ("okx", "/api/v5/public/time"),
        ("bybit", "/v5/market/time"),
        ("kraken", "/0/public/Time"),
        ("gate", "/api/v4/spot/time"),
    ],
)
def test_other_exchanges_reach_only_the_base_url(emulator, emulator_control, exchange_id, path):
    ex = build_exchange(exchange_id, base_url=emulator.base_url, async_=False, timeout_ms=3000)
    try:
        ex.fetch_time()  # the dialects the emulator speaks answer; the others get its 404
    except ccxt.BaseError:
        assert exchange_id == "gate", f"{exchange_id} is spoken by the emulator but fetch_time failed"
    assert [r["path"] for r in emulator_control.requests()] == [path]


@pytest.mark.parametrize(
    "bad",
    [
        "ftp://host",
        "127.0.0.1:8080",
        "http://h/?q=1",
        "http://h/#f",
        " http://h",
        "http://h:99999",
        "http://user:pw@h",
        "http://",
    ],
)
def test_bad_base_urls_are_config_errors(bad):
    with pytest.raises(ConfigError, match="base_url"):
        build_exchange("binance", base_url=bad, async_=False)


def test_unknown_exchange_id_names_close_matches():
    with pytest.raises(ConfigError, match=r"'binanse'.*binance"):
        build_exchange("binanse", async_=False)


def test_user_options_override_defaults_and_credentials_stay_out_of_messages():
    ex = build_exchange(
        "binance",
        async_=False,
        options={"fetchMarkets": {"types": ["spot", "linear"]}},
        api_key="KEY-123",
        secret="SECRET-456",
    )
    assert ex.options["fetchMarkets"]["types"] == ["spot", "linear"]
    assert ex.options["fetchCurrencies"] is False
    assert ex.apiKey == "KEY-123"
    with pytest.raises(ConfigError) as info:
        build_exchange("binance", base_url="http://k:SECRET-456@h", async_=False, secret="SECRET-456")
    assert "SECRET-456" not in str(info.value)
