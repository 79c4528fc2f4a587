"""Real ccxt (class ``coinbase``) against the emulator's Coinbase Advanced Trade dialect: markets,
candles, market trades, Coinbase's error bodies, the 10 requests/s budget and faults."""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import ccxt
import pytest
from ccxt_support import run_on

from ccxt_questdb_assets.emulator.market import DAY_MS, HOUR_MS, MINUTE_MS, SyntheticMarket, listing_spec
from ccxt_questdb_assets.exchange.client import build_exchange

NOW = int(datetime(2024, 6, 1, 12, 0, tzinfo=UTC).timestamp() * 1000) + 42_424
PRODUCTS = "/api/v3/brokerage/market/products"
CANDLES = PRODUCTS + "/BTC-USDT/candles"
TICKER = PRODUCTS + "/BTC-USDT/ticker"
V2 = ["/v2/currencies", "/v2/currencies/crypto", "/v2/exchange-rates"]
MODES = ["sync", "async"]


# ----------------------------------------------------------------------------- helpers


def _http(base_url: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        base_url + path, data=data, method=method, headers={"Content-Type": "application/json"} if data else {}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, headers, raw = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        status, headers, raw = exc.code, dict(exc.headers), exc.read()
    try:
        return status, headers, json.loads(raw)
    except ValueError:
        return status, headers, raw.decode()


def get(emulator, path: str) -> tuple[int, dict[str, str], Any]:
    return _http(emulator.base_url, "GET", path)


def set_budget(emulator, limit: int) -> None:
    status, _, body = _http(
        emulator.base_url,
        "POST",
        "/_emulator/config",
        {"dialect": "coinbase", "weight_limit": limit, "reset_weight": True},
    )
    assert status == 200 and body["limits"]["coinbase"] == limit


@pytest.fixture
def cb(emulator, emulator_control):
    """Reset emulator, clock frozen at NOW, Coinbase budget out of the way (tests of the budget lower it)."""
    emulator_control.freeze_clock(NOW)
    set_budget(emulator, 1_000_000)
    return emulator_control


def exchange(emulator, mode: str = "sync", **kw: Any) -> Any:
    """ccxt's coinbase as ccxt ships it (its currency requests on: the project turns them off)."""
    kw.setdefault("enable_rate_limit", False)
    kw.setdefault("config", {"has": {"fetchCurrencies": True}})
    return build_exchange("coinbase", base_url=emulator.base_url, async_=(mode == "async"), **kw)


def run(ex: Any, fn: Callable[[Any], Any], *, load: bool = True) -> Any:
    """``fn(ex)`` on a sync exchange, or awaited on an async one (closed after)."""
    return run_on(ex, fn, load=load)


def loaded(emulator, **kw: Any) -> Any:
    ex = exchange(emulator, **kw)
    ex.load_markets()
    return ex


def as_tuples(trades: list[dict[str, Any]]) -> list[tuple]:
    return [(int(t["id"]), t["timestamp"], t["price"], t["amount"], t["side"]) for t in trades]


def maker_side(truth) -> list[tuple]:
    """Ground truth as ccxt parses Coinbase trades: Coinbase's ``side`` is the maker's, the truth's the taker's."""
    flip = {"buy": "sell", "sell": "buy"}
    return [(t.id, t.timestamp, t.price, t.amount, flip[t.side]) for t in truth]


# ----------------------------------------------------------------------------- markets


@pytest.mark.parametrize("mode", MODES)
def test_load_markets_requests_and_markets(emulator, cb, mode):
    ex = exchange(emulator, mode)
    markets = run(ex, lambda e: e.load_markets(), load=False)
    log = [(r["method"], r["path"], r["params"], r["status"]) for r in cb.requests()]
    want = [("GET", p, {}, 200) for p in V2] + [
        ("GET", PRODUCTS, {}, 200),
        ("GET", PRODUCTS, {"product_type": "FUTURE"}, 200),
    ]
    assert (log if mode == "sync" else sorted(log[:3]) + log[3:]) == want  # async gathers the three v2 calls
    assert sorted(markets) == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    btc = markets["BTC/USDT"]
    assert (btc["id"], btc["baseId"], btc["quoteId"], btc["type"], btc["spot"], btc["active"]) == (
        "BTC-USDT",
        "BTC",
        "USDT",
        "spot",
        True,
        True,
    )
    assert btc["precision"] == {"amount": 1e-05, "price": 0.01}
    assert btc["limits"]["amount"] == {"min": 1e-05, "max": 9000.0} and btc["limits"]["cost"]["min"] == 1.0
    assert markets["ETH/USDT"]["precision"]["amount"] == 1e-04 and markets["SOL/USDT"]["id"] == "SOL-USDT"
    assert {"BTC", "ETH", "SOL", "USDT", "USD"} <= set(ex.currencies)


def test_load_markets_without_currencies_makes_two_requests(emulator, cb):
    ex = build_exchange("coinbase", base_url=emulator.base_url, async_=False)  # the project's default
    assert sorted(ex.load_markets()) == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    assert [(r["path"], r["params"]) for r in cb.requests()] == [(PRODUCTS, {}), (PRODUCTS, {"product_type": "FUTURE"})]


def test_markets_listed_at_runtime(emulator, cb):
    cb.list_market("NEW", "USDT", listing_ms=NOW - 3 * HOUR_MS, base_price=5.0)
    cb.list_market("OLD", "USDT", listing_ms=NOW - 3 * HOUR_MS, status="HALT")
    ex = loaded(emulator)
    new, old = ex.markets["NEW/USDT"], ex.markets["OLD/USDT"]
    assert (new["id"], new["active"], old["id"], old["active"]) == ("NEW-USDT", True, "OLD-USDT", False)
    _, _, body = get(emulator, PRODUCTS + "/OLD-USDT")
    assert (body["status"], body["trading_disabled"]) == ("offline", True)
    _, _, body = get(emulator, PRODUCTS + "?product_ids=NEW-USDT&product_ids=ETH-USDT")
    assert [p["product_id"] for p in body["products"]] == ["ETH-USDT", "NEW-USDT"] and body["num_products"] == 2
    assert get(emulator, PRODUCTS + "?product_type=OPTION")[:3:2] == (
        400,
        {
            "error": "INVALID_ARGUMENT",
            "error_details": "invalid value for product_type: 'OPTION'",
            "message": "invalid value for product_type: 'OPTION'",
        },
    )
    assert get(emulator, PRODUCTS + "/NOPE-USDT")[0] == 404
    truth = SyntheticMarket([listing_spec("NEW", "USDT", NOW - 3 * HOUR_MS, base_price=5.0)])
    since = NOW - 4 * HOUR_MS
    want = truth.candles("NEWUSDT", "1h", since, NOW + 1, now_ms=NOW)
    assert ex.fetch_ohlcv("NEW/USDT", "1h", since=since) == want and len(want) == 4
    trades = ex.fetch_trades("NEW/USDT", since=NOW - HOUR_MS, limit=1000, params={"until": NOW + 1000})
    assert as_tuples(trades) == maker_side(truth.trades("NEWUSDT", NOW - HOUR_MS, NOW + 1, now_ms=NOW))


# ----------------------------------------------------------------------------- candles


@pytest.mark.parametrize("mode", MODES)
def test_two_days_of_1m_candles_paged_with_ccxt_equal_ground_truth(emulator, cb, mode):
    start = (NOW - 3 * DAY_MS) // DAY_MS * DAY_MS
    end = start + 2 * DAY_MS

    def page_all(ex):
        def done(rows, acc):
            acc.extend(r for r in rows if r[0] < end)
            return not rows or rows[-1][0] + MINUTE_MS >= end

        if mode == "sync":
            acc, cursor = [], start
            while True:
                rows = ex.fetch_ohlcv("BTC/USDT", "1m", since=cursor, limit=300)
                if done(rows, acc):
                    return acc
                cursor = rows[-1][0] + MINUTE_MS

        async def pages():
            acc, cursor = [], start
            while True:
                rows = await ex.fetch_ohlcv("BTC/USDT", "1m", since=cursor, limit=300)
                if done(rows, acc):
                    return acc
                cursor = rows[-1][0] + MINUTE_MS

        return pages()

    got = run(exchange(emulator, mode), page_all)
    assert got == emulator.market.candles("BTC/USDT", "1m", start, end, now_ms=NOW) and len(got) == 2880
    reqs = cb.requests(CANDLES)
    assert len(reqs) == 10  # 300 candles a request, the most ccxt keeps of a page
    s0 = start // 1000
    assert reqs[0]["params"] == {"start": str(s0), "end": str(s0 + 300 * 60), "granularity": "ONE_MINUTE"}
    assert reqs[1]["params"]["start"] == str(s0 + 300 * 60)


def test_candles_wire_format_inclusive_bounds_and_cap(emulator, cb):
    s = (NOW - DAY_MS) // 3600_000 * 3600  # seconds, hour-aligned
    status, headers, body = get(emulator, f"{CANDLES}?start={s}&end={s + 300 * 60}&granularity=ONE_MINUTE")
    rows = body["candles"]
    assert status == 200 and len(rows) == 301  # start and end both inclusive
    assert [int(r["start"]) for r in rows] == [s + 60 * i for i in range(300, -1, -1)]  # newest first
    assert all(isinstance(v, str) for r in rows for v in r.values()) and sorted(rows[0]) == sorted(
        ["start", "low", "high", "open", "close", "volume"]
    )
    assert not any(h.lower().startswith(("x-ratelimit", "retry-after")) for h in headers)
    truth = emulator.market.candles("BTCUSDT", "1m", s * 1000, (s + 18001) * 1000)
    assert [
        [int(r["start"]) * 1000, *(float(r[k]) for k in ("open", "high", "low", "close", "volume"))]
        for r in reversed(rows)
    ] == truth
    # a start inside a bucket: buckets starting at or after it
    _, _, body = get(emulator, f"{CANDLES}?start={s + 30}&end={s + 150}&granularity=ONE_MINUTE")
    assert [int(r["start"]) for r in body["candles"]] == [s + 120, s + 60]
    # the cap: (end - start) / granularity <= 350
    status, _, body = get(emulator, f"{CANDLES}?start={s}&end={s + 350 * 60}&granularity=ONE_MINUTE")
    assert status == 200 and len(body["candles"]) == 351
    status, _, body = get(emulator, f"{CANDLES}?start={s}&end={s + 351 * 60}&granularity=ONE_MINUTE")
    msg = "start and end argument is invalid - number of candles requested should be less than 350"
    assert (status, body) == (400, {"error": "INVALID_ARGUMENT", "error_details": msg, "message": msg})
    status, _, body = get(emulator, f"{CANDLES}?start={s - 7 * 86400}&end={s}&granularity=ONE_HOUR&limit=3")
    assert status == 200 and [int(r["start"]) for r in body["candles"]] == [s, s - 3600, s - 7200]  # the newest


def test_ccxt_candle_pages_cap_and_errors(emulator, cb):
    ex = loaded(emulator)
    since = (NOW - DAY_MS) // MINUTE_MS * MINUTE_MS
    rows = ex.fetch_ohlcv("BTC/USDT", "1m", since=since, params={"until": since + 350 * MINUTE_MS})
    assert len(rows) == 300 and rows[-1][0] == since + 299 * MINUTE_MS  # 351 served, ccxt keeps 300
    assert (
        len(
            get(emulator, f"{CANDLES}?start={since // 1000}&end={since // 1000 + 21000}&granularity=ONE_MINUTE")[2][
                "candles"
            ]
        )
        == 351
    )
    with pytest.raises(ccxt.BadRequest, match="less than 350"):
        ex.fetch_ohlcv("BTC/USDT", "1m", since=since, params={"until": since + 351 * MINUTE_MS})
    with pytest.raises(ccxt.BadRequest, match="start must be before end"):
        ex.fetch_ohlcv("BTC/USDT", "1m", since=since, params={"until": since - MINUTE_MS})
    with pytest.raises(ccxt.BadRequest, match="granularity argument is invalid"):
        ex.fetch_ohlcv("BTC/USDT", "3m", since=since)  # ccxt sends '3m' as is
    n = len(cb.requests())
    with pytest.raises(ccxt.BadSymbol):
        ex.fetch_ohlcv("NOPE/USDT", "1m", since=since)  # raised by ccxt before any request
    assert len(cb.requests()) == n
    with pytest.raises(ccxt.ExchangeError, match="NOT_FOUND") as info:
        ex.v3PublicGetBrokerageMarketProductsProductIdCandles(
            {"product_id": "NOPE-USDT", "start": "0", "end": "60", "granularity": "ONE_MINUTE"}
        )
    assert type(info.value) is ccxt.ExchangeError and cb.requests()[-1]["status"] == 404
    with pytest.raises(ccxt.BadRequest):
        ex.v3PublicGetBrokerageMarketProductsProductIdCandles(
            {"product_id": "BTC-USDT", "start": "yesterday", "end": "60", "granularity": "ONE_MINUTE"}
        )


@pytest.mark.parametrize("tf", ["1m", "1h", "1d"])
def test_open_bar_is_partial_and_nothing_after_now(emulator, cb, tf):
    ex = loaded(emulator)
    dur = {"1m": MINUTE_MS, "1h": HOUR_MS, "1d": DAY_MS}[tf]
    rows = ex.fetch_ohlcv("BTC/USDT", tf, since=NOW - 5 * dur)
    assert rows == emulator.market.candles("BTC/USDT", tf, NOW - 5 * dur, NOW + 1, now_ms=NOW)
    assert rows[-1][0] == NOW - NOW % dur  # the bar containing now is the last one ...
    full = emulator.market.candles("BTC/USDT", tf, rows[-1][0], rows[-1][0] + 1)[0]
    later = emulator.market.trades("BTCUSDT", NOW + 1, rows[-1][0] + dur)
    assert rows[-1][5] + sum(t.amount for t in later) == pytest.approx(full[5])  # ... up to now only
    assert bool(later) == (tf != "1m") and (rows[-1] != full) == bool(later)
    # ccxt without `since` asks for the 300 bars before the client's own clock: after the frozen now
    assert ex.fetch_ohlcv("BTC/USDT", tf) == []


def test_before_listing_is_empty(emulator, cb):
    ex = loaded(emulator)
    listing = emulator.market.listing_ms("SOLUSDT")
    assert ex.fetch_ohlcv("SOL/USDT", "1m", since=listing - 301 * MINUTE_MS) == []
    assert ex.fetch_ohlcv("SOL/USDT", "1m", since=listing - 300 * MINUTE_MS)[0][0] == listing  # end inclusive
    assert ex.fetch_ohlcv("SOL/USDT", "1d", since=listing - 300 * DAY_MS, params={"until": listing - DAY_MS}) == []
    assert ex.fetch_trades("SOL/USDT", since=listing - HOUR_MS, limit=1000, params={"until": listing}) == []
    first = ex.fetch_trades("SOL/USDT", since=listing - HOUR_MS, limit=1000, params={"until": listing + 60_000})
    assert as_tuples(first) == maker_side(emulator.market.trades("SOLUSDT", listing, listing + 60_000))


# ----------------------------------------------------------------------------- trades


def _burst_hour(market: SyntheticMarket, around: int) -> int:
    """Start of an hour holding a run of >= 3 BTC trades sharing one millisecond."""
    for h in range(around, around + 24 * HOUR_MS, HOUR_MS):
        tr = market.trades("BTCUSDT", h, h + HOUR_MS)
        if any(len(list(g)) >= 3 for _, g in itertools.groupby(tr, key=lambda t: t.timestamp)):
            return h
    raise AssertionError("no burst found")


@pytest.mark.parametrize("mode", MODES)
def test_trades_of_a_window_equal_ground_truth_through_bursts(emulator, cb, mode):
    start = _burst_hour(emulator.market, (NOW - DAY_MS) // HOUR_MS * HOUR_MS)
    truth = emulator.market.trades("BTCUSDT", start, start + HOUR_MS)
    got = run(
        exchange(emulator, mode),
        lambda e: e.fetch_trades("BTC/USDT", since=start, limit=1000, params={"until": start + HOUR_MS}),
    )
    assert as_tuples(got) == maker_side(truth) and len(truth) == 360
    assert [t["id"] for t in got] == [str(t.id) for t in truth]  # ids are strings
    assert cb.requests(TICKER)[-1]["params"] == {
        "start": str(start // 1000),
        "end": str((start + HOUR_MS) // 1000),
        "limit": "1000",
    }
    _, _, body = get(emulator, f"{TICKER}?limit=1000&start={start // 1000}&end={(start + HOUR_MS) // 1000}")
    ids = [int(t["trade_id"]) for t in body["trades"]]
    assert ids == sorted(ids, reverse=True) == [t.id for t in reversed(truth)]  # newest first
    row = body["trades"][0]
    assert sorted(row) == sorted(["trade_id", "product_id", "price", "size", "time", "side", "bid", "ask", "exchange"])
    assert row["time"].endswith("000Z") and len(row["time"]) == 27 and row["side"] in ("BUY", "SELL")


def test_trades_bounds_limit_and_page_cap(emulator, cb):
    market = emulator.market
    start = (NOW - 2 * DAY_MS) // HOUR_MS * HOUR_MS
    trade = market.trades("BTCUSDT", start + 1500, start + HOUR_MS)[0]  # not on a second boundary
    sec = trade.timestamp // 1000

    def ids(query: str) -> list[int]:
        status, _, body = get(emulator, f"{TICKER}?{query}")
        assert status == 200, body
        return [int(t["trade_id"]) for t in body["trades"]]

    assert trade.id in ids(f"limit=1000&start={sec}&end={sec + 1}")  # start inclusive ...
    assert trade.id not in ids(f"limit=1000&start={sec - 60}&end={sec}")  # ... end exclusive
    assert trade.id not in ids(f"limit=1000&start={sec + 1}&end={sec + 60}")
    six_hours = market.trades("BTCUSDT", start, start + 6 * HOUR_MS)
    assert ids(f"limit=1000&start={start // 1000}&end={(start + 6 * HOUR_MS) // 1000}") == [
        t.id for t in reversed(six_hours[-1000:])
    ]  # a full page: the newest 1000 of the window
    recent = market.trades("BTCUSDT", NOW - 3 * HOUR_MS, NOW + 1, now_ms=NOW)
    assert ids("limit=5") == [t.id for t in reversed(recent[-5:])]  # no bounds: the newest before now
    assert len(ids("")) == 100  # no limit: 100
    assert ids(f"limit=1000&start={(NOW - HOUR_MS) // 1000}") == [  # start without end: up to now
        t.id for t in reversed(market.trades("BTCUSDT", NOW - HOUR_MS - NOW % 1000, NOW + 1, now_ms=NOW))
    ]
    assert ids(f"limit=1000&end={sec}")[0] == market.trades("BTCUSDT", start - HOUR_MS, sec * 1000)[-1].id
    status, _, body = get(emulator, f"{TICKER}?limit=1001")
    assert (status, body["error"]) == (500, "INTERNAL")
    status, _, body = get(emulator, f"{TICKER}?limit=10&start={sec}&end={sec - 1}")
    assert (status, body["error"]) == (400, "INVALID_ARGUMENT")
    ex = loaded(emulator)
    with pytest.raises(ccxt.ExchangeError, match="INTERNAL"):
        ex.v3PublicGetBrokerageMarketProductsProductIdTicker({"product_id": "BTC-USDT", "limit": 1001})
    with pytest.raises(ccxt.ArgumentsRequired):
        ex.fetch_trades("BTC/USDT", since=start)  # ccxt wants `until` with `since`
    with pytest.raises(ccxt.BadRequest):
        ex.fetch_trades("BTC/USDT", since=start, params={"until": start - 1000})


def test_trades_history_paged_backwards_with_ccxt(emulator, cb):
    start = (NOW - 2 * DAY_MS) // HOUR_MS * HOUR_MS
    end = start + 8 * HOUR_MS
    ex = loaded(emulator)
    seen: dict[str, dict] = {}
    until, calls = end, 0
    while True:
        page = ex.fetch_trades("BTC/USDT", since=start, limit=1000, params={"until": until})
        calls += 1
        seen.update((t["id"], t) for t in page)
        if len(page) < 1000:  # a page short of the limit holds the rest of [since, until)
            break
        until = (page[0]["timestamp"] // 1000 + 1) * 1000  # end is exclusive and in seconds: re-read that second
    got = sorted(seen.values(), key=lambda t: int(t["id"]))
    assert as_tuples(got) == maker_side(emulator.market.trades("BTCUSDT", start, end)) and len(got) == 2880
    assert calls == 3


# ----------------------------------------------------------------------------- rate limits and faults


def test_request_budget_answers_coinbase_429(emulator, cb):
    ex = loaded(emulator)
    set_budget(emulator, 1)
    with pytest.raises(ccxt.RateLimitExceeded, match="rate_limit_exceeded"):
        for _ in range(6):  # 1 per second: two of them share a second
            ex.fetch_ohlcv("BTC/USDT", "1m", since=NOW - HOUR_MS)
    assert cb.requests()[-1]["status"] == 429
    for _ in range(6):
        status, headers, body = get(emulator, CANDLES)
        if status == 429:
            break
    assert (status, body) == (429, {"errors": [{"id": "rate_limit_exceeded", "message": "Too many requests"}]})
    assert "Retry-After" not in headers
    set_budget(emulator, 10)
    assert get(emulator, "/_emulator/config?dialect=coinbase")[2]["weight_limit"] == 10


def test_ccxt_throttling_stays_within_the_default_budget(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)  # budget left at Coinbase's 10 requests a second
    ex = exchange(emulator, enable_rate_limit=True)
    ex.load_markets()
    since = NOW - DAY_MS
    for i in range(12):
        ex.fetch_ohlcv("BTC/USDT", "1m", since=since + i * 300 * MINUTE_MS)
    assert [r["status"] for r in emulator_control.requests()] == [200] * 17


@pytest.mark.parametrize(
    ("kind", "exc"),
    [
        ("429", ccxt.RateLimitExceeded),
        ("418", ccxt.RateLimitExceeded),
        ("403", ccxt.ExchangeNotAvailable),
        ("500", ccxt.ExchangeError),
        ("502", ccxt.ExchangeNotAvailable),
        ("503", ccxt.ExchangeNotAvailable),
        ("504", ccxt.RequestTimeout),
    ],
)
def test_error_faults_raise_the_expected_ccxt_exception(emulator, cb, kind, exc):
    ex = loaded(emulator)
    cb.inject(kind, path=CANDLES)
    with pytest.raises(exc) as info:
        ex.fetch_ohlcv("BTC/USDT", "1m", since=NOW - HOUR_MS)
    assert type(info.value) is exc
    assert cb.requests(CANDLES)[-1]["status"] == int(kind)
    assert len(ex.fetch_ohlcv("BTC/USDT", "1m", since=NOW - HOUR_MS)) == 60  # one request only


def test_429_fault_headers(emulator, cb):
    cb.inject("429", path=TICKER)
    status, headers, body = get(emulator, TICKER)
    assert (status, body["errors"][0]["id"]) == (429, "rate_limit_exceeded") and "Retry-After" not in headers
    cb.inject("429", path=TICKER, retry_after=7)
    assert get(emulator, TICKER)[1]["Retry-After"] == "7"  # only when the fault asks for one


def test_data_faults_apply_to_candles_and_trades(emulator, cb):
    ex = loaded(emulator)
    since = (NOW - DAY_MS) // MINUTE_MS * MINUTE_MS
    until = since + 10 * MINUTE_MS
    want = emulator.market.candles("BTC/USDT", "1m", since, until + 1)
    cb.inject("empty_page", path=CANDLES)
    assert ex.fetch_ohlcv("BTC/USDT", "1m", since=since, params={"until": until}) == []
    cb.inject("duplicate_rows", path=CANDLES)
    rows = ex.fetch_ohlcv("BTC/USDT", "1m", since=since, params={"until": until})
    assert len(rows) == len(want) + 2 and sorted(set(map(tuple, rows))) == sorted(map(tuple, want))
    cb.inject(
        "rows",
        path=CANDLES,
        rows={
            "candles": [
                {"start": str(since // 1000), "low": "1", "high": "3", "open": "2", "close": "2.5", "volume": "0.1"}
            ]
        },
    )
    assert ex.fetch_ohlcv("BTC/USDT", "1m", since=since, params={"until": until}) == [[since, 2.0, 3.0, 1.0, 2.5, 0.1]]
    trades = emulator.market.trades("BTCUSDT", since, until)
    cb.inject("duplicate_rows", path=TICKER)
    got = ex.fetch_trades("BTC/USDT", since=since, limit=1000, params={"until": until})
    assert len(got) == len(trades) + 2 and {t["id"] for t in got} == {str(t.id) for t in trades}
    cb.inject("empty_page", path=TICKER)
    assert ex.fetch_trades("BTC/USDT", since=since, limit=1000, params={"until": until}) == []
    cb.inject("empty_page", path=PRODUCTS)
    assert ex.load_markets(reload=True) == {}
