"""Real ccxt (sync and async) against the emulator's Bybit v5 dialect: markets, klines, recent trades,
errors, rate limits and data faults."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import ccxt
import pytest
from ccxt_support import run_on

from ccxt_questdb_assets.emulator.dialects.bybit import SPOT_EXEC_ID_BASE, exec_id
from ccxt_questdb_assets.emulator.market import DAY_MS, HOUR_MS, MINUTE_MS
from ccxt_questdb_assets.exchange.client import build_exchange

KLINE = "/v5/market/kline"
TRADES = "/v5/market/recent-trade"
INFO = "/v5/market/instruments-info"
NOW = int(datetime(2024, 6, 1, 12, 0, tzinfo=UTC).timestamp() * 1000) + 42_424
MODES = ["sync", "async"]
BOTH = {"fetchMarkets": {"types": ["spot", "linear"]}}


def call(emulator, mode: str, fn: Callable[[Any], Any], *, options: dict | None = None, load: bool = True) -> Any:
    """Run ``fn(exchange)`` on a fresh bybit exchange of ``mode`` (markets loaded unless ``load``)."""
    ex = build_exchange(
        "bybit", base_url=emulator.base_url, async_=(mode == "async"), enable_rate_limit=False, options=options
    )
    return run_on(ex, fn, load=load)


def sync_ex(emulator, options: dict | None = None):
    ex = build_exchange("bybit", base_url=emulator.base_url, async_=False, enable_rate_limit=False, options=options)
    ex.load_markets()
    return ex


def set_budget(emulator, limit: int) -> None:
    """Set the bybit request budget and reset what is used, early in a 5-second window (the window is
    fixed on the wall clock: a test's burst must not straddle two windows)."""
    while time.time() % 5 > 3.0:
        time.sleep(0.05)
    body = json.dumps({"dialect": "bybit", "weight_limit": limit, "reset_weight": True}).encode()
    req = urllib.request.Request(
        f"{emulator.base_url}/_emulator/config", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.loads(resp.read())["limits"]["bybit"] == limit


def forward_windows(ex, symbol: str, tf_ms: int, start: int, end: int, limit: int = 1000) -> list[list]:
    """[start, end) page by page: windows of exactly ``limit`` bar opens, ``until`` inclusive."""
    out: list[list] = []
    since = start
    while since < end:
        until = min(since + limit * tf_ms, end) - 1
        out += ex.fetch_ohlcv(
            symbol, "1m" if tf_ms == MINUTE_MS else "1h", since=since, limit=limit, params={"until": until}
        )
        since += limit * tf_ms
    return out


def trade_tuples(trades: list[dict]) -> list[tuple]:
    return [(t["id"], t["timestamp"], t["price"], t["amount"], t["side"]) for t in trades]


def truth_trades(market, category: str, symbol: str, n: int, now: int) -> list[tuple]:
    ids = market.spec(symbol).symbol
    tr = market.trades(ids, now - 6 * HOUR_MS, now + 1, now_ms=now)[-n:]
    return [(exec_id(category, ids, t.id), t.timestamp, t.price, t.amount, t.side) for t in tr]


# ----------------------------------------------------------------------------- markets


@pytest.mark.parametrize("mode", MODES)
def test_load_markets_default_is_one_spot_request(emulator, emulator_control, mode):
    markets = call(emulator, mode, lambda ex: ex.load_markets(), load=False)
    assert [(r["path"], r["params"]) for r in emulator_control.requests()] == [(INFO, {"category": "spot"})]
    assert sorted(markets) == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    btc = markets["BTC/USDT"]
    assert btc["id"] == "BTCUSDT" and btc["spot"] and btc["active"] and btc["created"] is None
    assert btc["precision"] == {"amount": 1e-05, "price": 0.01}
    assert btc["limits"]["cost"]["min"] == 5.0


def test_load_markets_with_linear_lists_perpetuals(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    emulator_control.list_market("NEW", "USDT", listing_ms=NOW - 3 * HOUR_MS)
    emulator_control.list_market("PRE", "USDT", status="PRE_TRADING")
    emulator_control.list_market("HLT", "USDT", status="HALT")
    markets = sync_ex(emulator, BOTH).markets
    assert [(r["path"], r["params"]) for r in emulator_control.requests()] == [
        (INFO, {"category": "spot"}),
        (INFO, {"category": "linear", "limit": "1000"}),
        (INFO, {"category": "linear", "limit": "1000", "status": "PreLaunch"}),
    ]
    assert sorted(markets) == [
        "BTC/USDT",
        "BTC/USDT:USDT",
        "ETH/USDT",
        "ETH/USDT:USDT",
        "NEW/USDT",
        "NEW/USDT:USDT",
        "PRE/USDT:USDT",
        "SOL/USDT",
        "SOL/USDT:USDT",
    ]
    perp = markets["BTC/USDT:USDT"]
    assert perp["id"] == "BTCUSDT" and perp["swap"] and perp["linear"] and perp["settle"] == "USDT"
    assert perp["created"] == emulator.market.listing_ms("BTCUSDT") and perp["active"]
    assert markets["NEW/USDT:USDT"]["created"] == NOW - NOW % HOUR_MS - 3 * HOUR_MS
    assert markets["PRE/USDT:USDT"]["active"] is False  # PreLaunch: listed, not trading
    assert perp["precision"] == {"amount": 1e-05, "price": 0.01} and perp["contractSize"] == 1.0


def test_linear_instruments_page_with_next_page_cursor(emulator, emulator_control):
    ex = sync_ex(emulator)
    first = ex.publicGetV5MarketInstrumentsInfo({"category": "linear", "limit": 2})["result"]
    assert [m["symbol"] for m in first["list"]] == ["BTCUSDT", "ETHUSDT"]
    assert first["nextPageCursor"] == "first%3DBTCUSDT%26last%3DETHUSDT"
    second = ex.publicGetV5MarketInstrumentsInfo({"category": "linear", "limit": 2, "cursor": first["nextPageCursor"]})[
        "result"
    ]
    assert [m["symbol"] for m in second["list"]] == ["SOLUSDT"] and second["nextPageCursor"] == ""
    spot = ex.publicGetV5MarketInstrumentsInfo({"category": "spot", "limit": 1})["result"]
    assert len(spot["list"]) == 3 and "nextPageCursor" not in spot  # spot ignores limit/cursor
    one = ex.publicGetV5MarketInstrumentsInfo({"category": "linear", "symbol": "SOLUSDT"})["result"]["list"]
    assert [(m["symbol"], m["launchTime"]) for m in one] == [("SOLUSDT", str(emulator.market.listing_ms("SOLUSDT")))]
    assert ex.publicGetV5MarketInstrumentsInfo({"category": "spot", "symbol": "NOPE"})["result"]["list"] == []
    with pytest.raises(ccxt.BadRequest):
        ex.publicGetV5MarketInstrumentsInfo({"category": "linear", "cursor": "first%3DX%26last%3DNOPE"})


def test_server_time_is_the_emulated_clock(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = sync_ex(emulator)
    assert ex.fetch_time() == NOW
    result = ex.publicGetV5MarketTime()["result"]
    assert result == {"timeSecond": str(NOW // 1000), "timeNano": str(NOW * 1_000_000)}


# ----------------------------------------------------------------------------- candles


@pytest.mark.parametrize("mode", MODES)
def test_two_days_of_1m_in_three_windows_equal_ground_truth(emulator, emulator_control, mode):
    emulator_control.freeze_clock(NOW)
    start = NOW - NOW % MINUTE_MS - 2 * DAY_MS
    end = NOW - NOW % MINUTE_MS  # the open minute is left out: [start, end) holds complete bars only

    async def pages_async(ex):
        out, since = [], start
        while since < end:
            out += await ex.fetch_ohlcv(
                "BTC/USDT", "1m", since=since, limit=1000, params={"until": min(since + 1000 * MINUTE_MS, end) - 1}
            )
            since += 1000 * MINUTE_MS
        return out

    emulator_control.clear_requests()
    fn = (lambda ex: forward_windows(ex, "BTC/USDT", MINUTE_MS, start, end)) if mode == "sync" else pages_async
    got = call(emulator, mode, fn)
    assert got == emulator.market.candles("BTCUSDT", "1m", start, end, now_ms=NOW)
    assert len(got) == 2880
    klines = emulator_control.requests(KLINE)
    assert [r["params"] for r in klines][0] == {
        "category": "spot",
        "symbol": "BTCUSDT",
        "interval": "1",
        "start": str(start),
        "end": str(start + 1000 * MINUTE_MS - 1),
        "limit": "1000",
    }
    assert len(klines) == 3


def test_linear_serves_the_spot_series(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = sync_ex(emulator, BOTH)
    start = NOW - NOW % HOUR_MS - 30 * HOUR_MS
    got = ex.fetch_ohlcv("ETH/USDT:USDT", "1h", since=start, limit=1000)
    assert emulator_control.requests(KLINE)[-1]["params"]["category"] == "linear"
    assert got == emulator.market.candles("ETHUSDT", "1h", start, NOW + 1, now_ms=NOW)
    assert got == ex.fetch_ohlcv("ETH/USDT", "1h", since=start, limit=1000)


def test_kline_rows_are_strings_newest_first_with_turnover(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = sync_ex(emulator)
    start = NOW - NOW % MINUTE_MS - 4 * MINUTE_MS
    result = ex.publicGetV5MarketKline({"category": "spot", "symbol": "SOLUSDT", "interval": "1", "start": start})
    rows = result["result"]["list"]
    assert result["result"]["symbol"] == "SOLUSDT" and result["result"]["category"] == "spot"
    assert result["retCode"] == 0 and result["time"] == NOW
    assert all(len(r) == 7 and all(isinstance(x, str) for x in r) for r in rows)
    assert [int(r[0]) for r in rows] == [start + k * MINUTE_MS for k in (4, 3, 2, 1, 0)]
    bars = emulator.market.bars("SOLUSDT", "1m", start, NOW + 1, now_ms=NOW)
    assert [r[6] for r in rows[::-1]] == [f"{q / 100_000:.5f}".rstrip("0").rstrip(".") for q in bars.qv.tolist()]


def test_kline_cursors_both_inclusive_and_the_bar_containing_start(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = sync_ex(emulator)
    base = NOW - NOW % MINUTE_MS - 100 * MINUTE_MS

    def opens(**params) -> list[int]:
        q = {"category": "spot", "symbol": "BTCUSDT", "interval": "1", **params}
        return [int(r[0]) for r in ex.publicGetV5MarketKline(q)["result"]["list"]]

    assert opens(start=base, end=base + 2 * MINUTE_MS) == [base + 2 * MINUTE_MS, base + MINUTE_MS, base]
    assert opens(start=base + 30_000, end=base + MINUTE_MS) == [base + MINUTE_MS, base]  # bar containing start
    assert opens(start=base, end=base + MINUTE_MS - 1) == [base]
    assert opens(start=base + 2 * MINUTE_MS, end=base) == []
    # ccxt rounds since up to the next bar, so the bar containing since is dropped before the request
    got = ex.fetch_ohlcv("BTC/USDT", "1m", since=base + 1, limit=3, params={"until": base + 10 * MINUTE_MS})
    assert emulator_control.requests(KLINE)[-1]["params"]["start"] == str(base + MINUTE_MS)
    assert [c[0] for c in got] == [base + k * MINUTE_MS for k in (8, 9, 10)]  # the newest 3 of the window
    # an exclusive-minded until (start + limit * tf) holds limit + 1 opens: the oldest is lost
    got = ex.fetch_ohlcv("BTC/USDT", "1m", since=base, limit=5, params={"until": base + 5 * MINUTE_MS})
    assert [c[0] for c in got] == [base + k * MINUTE_MS for k in (1, 2, 3, 4, 5)]


def test_start_without_end_answers_the_newest_bars(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = sync_ex(emulator)
    long_ago = NOW - NOW % MINUTE_MS - 300 * DAY_MS
    got = ex.fetch_ohlcv("BTC/USDT", "1m", since=long_ago, limit=5)
    assert emulator_control.requests(KLINE)[-1]["params"] == {
        "category": "spot",
        "symbol": "BTCUSDT",
        "interval": "1",
        "start": str(long_ago),
        "limit": "5",
    }
    assert got == emulator.market.candles("BTCUSDT", "1m", NOW - 10 * MINUTE_MS, NOW + 1, now_ms=NOW)[-5:]
    assert got[-1][0] == NOW - NOW % MINUTE_MS  # the open bar, not the bars after since


def test_ccxt_paginate_option_loses_bars_on_bybit(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = sync_ex(emulator)
    start = NOW - NOW % MINUTE_MS - 5 * DAY_MS
    until = start + 3000 * MINUTE_MS - 1
    got = ex.fetch_ohlcv("BTC/USDT", "1m", since=start, params={"paginate": True, "until": until})
    truth = emulator.market.candles("BTCUSDT", "1m", start, start + 3000 * MINUTE_MS, now_ms=NOW)
    assert len(truth) == 3000 and got == truth[-1000:]  # every page carried the same end: only the last 1000


def test_page_cap_default_and_limits(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = sync_ex(emulator)
    q = {"category": "spot", "symbol": "BTCUSDT", "interval": "1"}
    assert len(ex.publicGetV5MarketKline(q)["result"]["list"]) == 200
    assert len(ex.publicGetV5MarketKline({**q, "limit": 5000})["result"]["list"]) == 1000
    got = ex.fetch_ohlcv(
        "BTC/USDT", "1m", since=NOW - 3 * DAY_MS, limit=1500, params={"until": NOW - 3 * DAY_MS + 1500 * MINUTE_MS}
    )
    assert emulator_control.requests(KLINE)[-1]["params"]["limit"] == "1500" and len(got) == 1000
    assert got[-1][0] == NOW - NOW % MINUTE_MS - 3 * DAY_MS + 1500 * MINUTE_MS  # the newest 1000 of the window
    for bad in ("0", "-1", "x"):
        with pytest.raises(ccxt.BadRequest):
            ex.publicGetV5MarketKline({**q, "limit": bad})


def test_open_bar_is_partial_and_moves_with_the_clock(emulator, emulator_control):
    ex = sync_ex(emulator)
    minute = NOW - NOW % MINUTE_MS
    emulator_control.freeze_clock(minute + 20_000)
    first = ex.fetch_ohlcv("BTC/USDT", "1m", limit=2)
    assert first == emulator.market.candles(
        "BTCUSDT", "1m", minute - MINUTE_MS, minute + MINUTE_MS, now_ms=minute + 20_000
    )
    emulator_control.freeze_clock(minute + 59_999)
    later = ex.fetch_ohlcv("BTC/USDT", "1m", limit=2)
    assert later[0] == first[0] and later[1][0] == minute and later[1][5] > first[1][5]
    assert later[1] == emulator.market.candles("BTCUSDT", "1m", minute, minute + MINUTE_MS, now_ms=minute + 59_999)[0]
    day = ex.fetch_ohlcv("BTC/USDT", "1d", limit=1)
    assert day == emulator.market.candles("BTCUSDT", "1d", minute - minute % DAY_MS, minute + 1, now_ms=minute + 59_999)


@pytest.mark.parametrize(("tf", "interval"), [("1h", "60"), ("1d", "D"), ("1w", "W"), ("1M", "M")])
def test_higher_timeframes_equal_ground_truth(emulator, emulator_control, tf, interval):
    emulator_control.freeze_clock(NOW)
    ex = sync_ex(emulator)
    got = ex.fetch_ohlcv("SOL/USDT", tf, limit=20)
    assert emulator_control.requests(KLINE)[-1]["params"]["interval"] == interval
    assert got == emulator.market.candles("SOLUSDT", tf, NOW - 800 * DAY_MS, NOW + 1, now_ms=NOW)[-20:]


def test_before_listing_is_empty_and_listing_is_the_first_bar(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = sync_ex(emulator)
    listing = emulator.market.listing_ms("SOLUSDT")
    assert ex.fetch_ohlcv("SOL/USDT", "1m", since=listing - DAY_MS, limit=1000, params={"until": listing - 1}) == []
    got = ex.fetch_ohlcv(
        "SOL/USDT", "1m", since=listing - 30 * MINUTE_MS, limit=60, params={"until": listing + 30 * MINUTE_MS - 1}
    )
    assert got[0][0] == listing and len(got) == 30
    emulator_control.freeze_clock(listing - HOUR_MS)  # nothing exists yet, not even with no start
    assert ex.fetch_ohlcv("SOL/USDT", "1m", limit=10) == []


def test_outage_minutes_are_absent(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = sync_ex(emulator)
    ((out_start, out_end),) = emulator.market.outages("BTCUSDT")
    since = out_start - 10 * MINUTE_MS
    got = ex.fetch_ohlcv("BTC/USDT", "1m", since=since, limit=1000, params={"until": since + 1000 * MINUTE_MS - 1})
    assert got == emulator.market.candles("BTCUSDT", "1m", since, since + 1000 * MINUTE_MS, now_ms=NOW)
    assert len(got) == 1000 - (out_end - out_start) // MINUTE_MS


# ----------------------------------------------------------------------------- trades


def _burst_end(market, symbol: str, before: int) -> int:
    """Timestamp of the last trade of a recent minute where >= 3 trades share a millisecond."""
    for minute in range(before - before % MINUTE_MS, before - DAY_MS, -MINUTE_MS):
        trades = market.trades(symbol, minute, minute + MINUTE_MS)
        stamps = [t.timestamp for t in trades]
        if any(stamps.count(s) >= 3 for s in stamps) and stamps.count(stamps[-1]) >= 2:
            return stamps[-1]
    raise AssertionError("no burst minute found")


@pytest.mark.parametrize("mode", MODES)
def test_spot_recent_trades_equal_the_latest_ground_truth_through_a_burst(emulator, emulator_control, mode):
    now = _burst_end(emulator.market, "BTCUSDT", NOW)
    emulator_control.freeze_clock(now)
    got = call(emulator, mode, lambda ex: ex.fetch_trades("BTC/USDT"))
    assert emulator_control.requests(TRADES)[-1]["params"] == {"category": "spot", "symbol": "BTCUSDT"}
    truth = truth_trades(emulator.market, "spot", "BTC/USDT", 60, now)
    assert trade_tuples(got) == truth and len(got) == 60  # default and cap of spot: 60
    assert got[-1]["timestamp"] == now and got[-2]["timestamp"] == now  # same-millisecond trades, in id order
    assert int(got[0]["id"]) - SPOT_EXEC_ID_BASE == emulator.market.trades("BTCUSDT", now - HOUR_MS, now + 1)[-60].id


def test_recent_trade_rows_newest_first_and_limits(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = sync_ex(emulator, BOTH)
    rows = ex.publicGetV5MarketRecentTrade({"category": "spot", "symbol": "ETHUSDT", "limit": 5})["result"]["list"]
    assert [sorted(r) for r in rows] == [
        sorted(["execId", "symbol", "price", "size", "side", "time", "isBlockTrade", "isRPITrade", "seq"])
    ] * 5
    truth = emulator.market.trades("ETHUSDT", NOW - HOUR_MS, NOW + 1, now_ms=NOW)[-5:][::-1]
    assert [
        (int(r["execId"]) - SPOT_EXEC_ID_BASE, int(r["time"]), float(r["price"]), float(r["size"]), r["side"])
        for r in rows
    ] == [(t.id, t.timestamp, t.price, t.amount, t.side.capitalize()) for t in truth]
    assert len(ex.fetch_trades("ETH/USDT", limit=100)) == 60  # spot cap
    assert emulator_control.requests(TRADES)[-1]["params"]["limit"] == "100"
    assert len(ex.fetch_trades("ETH/USDT:USDT")) == 500  # linear default
    assert len(ex.fetch_trades("ETH/USDT:USDT", limit=5000)) == 1000  # linear cap
    since = NOW - 10 * MINUTE_MS  # since is only a client-side filter: no parameter reaches Bybit
    got = ex.fetch_trades("ETH/USDT", since=since)
    assert "start" not in emulator_control.requests(TRADES)[-1]["params"]
    assert all(t["timestamp"] >= since for t in got) and len(got) < 60


def test_linear_recent_trades_have_uuid_ids_and_ccxt_sorts_them_within_a_millisecond(emulator, emulator_control):
    now = _burst_end(emulator.market, "BTCUSDT", NOW)
    emulator_control.freeze_clock(now)
    ex = sync_ex(emulator, BOTH)
    got = ex.fetch_trades("BTC/USDT:USDT", limit=200)
    assert emulator_control.requests(TRADES)[-1]["params"] == {
        "category": "linear",
        "symbol": "BTCUSDT",
        "limit": "200",
    }
    truth = truth_trades(emulator.market, "linear", "BTC/USDT", 200, now)
    # ccxt sorts by (timestamp, id): the UUIDs reorder trades sharing a millisecond
    assert trade_tuples(got) == sorted(truth, key=lambda t: (t[1], t[0]))
    assert trade_tuples(got) != truth and sorted(trade_tuples(got)) == sorted(truth)
    assert len(got[0]["id"]) == 36 and got[0]["id"].count("-") == 4


def test_recent_trades_before_listing_are_empty(emulator, emulator_control):
    listing = emulator.market.listing_ms("SOLUSDT")
    emulator_control.freeze_clock(listing - 1)
    assert sync_ex(emulator).fetch_trades("SOL/USDT") == []


# ----------------------------------------------------------------------------- errors and rate limits


@pytest.mark.parametrize(
    ("name", "fn", "exc"),
    [
        (
            "unknown symbol kline",
            lambda ex: ex.publicGetV5MarketKline({"category": "spot", "symbol": "NOPEUSDT", "interval": "1"}),
            ccxt.BadSymbol,
        ),
        (
            "inverse category kline",
            lambda ex: ex.publicGetV5MarketKline({"category": "inverse", "symbol": "BTCUSDT", "interval": "1"}),
            ccxt.BadSymbol,
        ),
        ("interval ccxt does not map", lambda ex: ex.fetch_ohlcv("BTC/USDT", "3d", limit=2), ccxt.BadRequest),
        (
            "missing interval",
            lambda ex: ex.publicGetV5MarketKline({"category": "spot", "symbol": "BTCUSDT"}),
            ccxt.BadRequest,
        ),
        (
            "bad start",
            lambda ex: ex.publicGetV5MarketKline(
                {"category": "spot", "symbol": "BTCUSDT", "interval": "1", "start": "x"}
            ),
            ccxt.BadRequest,
        ),
        (
            "bad category",
            lambda ex: ex.publicGetV5MarketKline({"category": "option", "symbol": "BTCUSDT", "interval": "1"}),
            ccxt.BadRequest,
        ),
        (
            "unknown symbol trades",
            lambda ex: ex.publicGetV5MarketRecentTrade({"category": "spot", "symbol": "NOPEUSDT"}),
            ccxt.BadRequest,
        ),
        ("missing category trades", lambda ex: ex.publicGetV5MarketRecentTrade({"symbol": "BTCUSDT"}), ccxt.BadRequest),
        ("missing category instruments", lambda ex: ex.publicGetV5MarketInstrumentsInfo(), ccxt.BadRequest),
    ],
)
def test_parameter_errors_map_to_ccxt(emulator, emulator_control, name, fn, exc):
    ex = sync_ex(emulator)
    with pytest.raises(exc) as info:
        fn(ex)
    assert type(info.value) is exc
    status, body = emulator_control.requests()[-1]["status"], json.loads(ex.last_http_response)
    assert status == 200 and body["retCode"] == 10001 and body["result"] is not None


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("kind", "status", "exc"),
    [
        ("429", 429, ccxt.RateLimitExceeded),
        ("418", 200, ccxt.RateLimitExceeded),  # Bybit's API rate-limit answer: retCode 10006 in a 200
        ("403", 403, ccxt.RateLimitExceeded),
        ("500", 500, ccxt.ExchangeError),  # retCode 10016: ccxt raises the plain ExchangeError
        ("502", 502, ccxt.ExchangeNotAvailable),
        ("503", 503, ccxt.ExchangeNotAvailable),
        ("504", 504, ccxt.RequestTimeout),
    ],
)
def test_error_faults_raise_the_expected_ccxt_exception(emulator, emulator_control, mode, kind, status, exc):
    emulator_control.inject(kind, path=KLINE, retry_after=3)

    def fetch(ex):
        return ex.fetch_ohlcv("BTC/USDT", "1m", limit=2)

    with pytest.raises(exc) as info:
        call(emulator, mode, fetch)
    assert type(info.value) is exc
    assert emulator_control.requests(KLINE)[-1]["status"] == status


def test_rate_limit_answers_carry_bybit_headers(emulator, emulator_control):
    ex = sync_ex(emulator)
    emulator_control.inject("429", path=KLINE, retry_after=7)
    with pytest.raises(ccxt.RateLimitExceeded):
        ex.fetch_ohlcv("BTC/USDT", "1m", limit=2)
    headers = {k.lower(): v for k, v in ex.last_response_headers.items()}
    assert "retry-after" not in headers and headers["x-bapi-limit-status"] == "0"
    assert int(headers["x-bapi-limit-reset-timestamp"]) > emulator_control.requests(KLINE)[-1]["time_ms"] + 6000
    assert json.loads(ex.last_http_response)["retCode"] == 10006


@pytest.mark.parametrize("mode", MODES)
def test_ip_budget_exhausted_answers_403_access_too_frequent(emulator, emulator_control, mode):
    set_budget(emulator, 4)  # markets (1) + three klines; the fifth request is over the budget

    async def burst_async(ex):
        for _ in range(3):
            await ex.fetch_ohlcv("BTC/USDT", "1m", limit=2)
        return await ex.fetch_ohlcv("BTC/USDT", "1m", limit=2)

    def burst(ex):
        for _ in range(3):
            ex.fetch_ohlcv("BTC/USDT", "1m", limit=2)
        return ex.fetch_ohlcv("BTC/USDT", "1m", limit=2)

    with pytest.raises(ccxt.RateLimitExceeded, match="access too frequent"):
        call(emulator, mode, burst if mode == "sync" else burst_async)
    assert [r["status"] for r in emulator_control.requests()] == [200, 200, 200, 200, 403]


# ----------------------------------------------------------------------------- data faults


def test_data_faults_apply_to_kline_rows(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = sync_ex(emulator)
    since = NOW - NOW % MINUTE_MS - 10 * MINUTE_MS
    args = ("BTC/USDT", "1m", since, 10, {"until": since + 10 * MINUTE_MS - 1})
    truth = emulator.market.candles("BTCUSDT", "1m", since, since + 10 * MINUTE_MS, now_ms=NOW)
    emulator_control.inject("empty_page", path=KLINE)
    assert ex.fetch_ohlcv(*args) == []
    emulator_control.inject("duplicate_rows", path=KLINE)
    got = ex.fetch_ohlcv(*args)  # oldest (last row) and middle row doubled, ccxt sorts and keeps the first 10
    assert len(got) == 10 and got[0] == got[1] == truth[0] and len({c[0] for c in got}) == 8
    assert set(map(tuple, got)) <= set(map(tuple, truth))
    emulator_control.inject("out_of_order_rows", path=KLINE)
    assert ex.fetch_ohlcv(*args) == truth  # ccxt sorts klines
    emulator_control.inject(
        "rows",
        path=KLINE,
        rows={
            "retCode": 0,
            "retMsg": "OK",
            "result": {"list": [[str(since), "1", "2", "0.5", "1.5", "3", "4"]]},
            "retExtInfo": {},
            "time": NOW,
        },
    )
    assert ex.fetch_ohlcv(*args) == [[since, 1.0, 2.0, 0.5, 1.5, 3.0]]
    assert ex.fetch_ohlcv(*args) == truth


def test_data_faults_apply_to_trade_rows(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = sync_ex(emulator)
    truth = truth_trades(emulator.market, "spot", "ETH/USDT", 10, NOW)
    emulator_control.inject("empty_page", path=TRADES)
    assert ex.fetch_trades("ETH/USDT", limit=10) == []
    emulator_control.inject("duplicate_rows", path=TRADES)
    got = trade_tuples(ex.fetch_trades("ETH/USDT", limit=10))
    assert len(got) == 10 and len(set(got)) < 10 and set(got) <= set(truth)
    emulator_control.inject("out_of_order_rows", path=TRADES)
    assert trade_tuples(ex.fetch_trades("ETH/USDT", limit=10)) == truth
