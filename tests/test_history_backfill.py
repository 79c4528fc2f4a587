"""The library's read path through real QuestDB, real ccxt and the exchange emulator."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from ccxt_support import provider_config

from ccxt_questdb_assets import CcxtQuestDBProvider
from ccxt_questdb_assets.core.errors import ConfigError

MIN = 60_000
DAY = 86_400_000
KLINES = "/api/v3/klines"
AGG = "/api/v3/aggTrades"
INFO = "/api/v3/exchangeInfo"


def utc_ms(*args) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def make_provider(questdb, emulator, *, mode="ohlcv", symbols=("BTC/USDT",), clock=None, **extra):
    cfg = provider_config(questdb, emulator, "binance", mode=mode, symbols=symbols, **extra)
    return CcxtQuestDBProvider.from_config(cfg, **({"clock": clock} if clock else {}))


def truth_candles(emulator, symbol, start_ms, end_ms, now_ms=None) -> pd.DataFrame:
    rows = emulator.market.candles(symbol.replace("/", ""), "1m", start_ms, end_ms, now_ms)
    frame = pd.DataFrame(rows, columns=["ts", "open", "high", "low", "close", "volume"])
    frame["ts"] = pd.to_datetime(frame["ts"], unit="ms", utc=True)
    return frame


def assert_candles_equal(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert len(got) == len(want)
    assert (got["ts"].astype("int64").to_numpy() // 1000 == want["ts"].astype("int64").to_numpy() // 1000).all()
    for col in ["open", "high", "low", "close", "volume"]:
        np.testing.assert_array_equal(got[col].to_numpy(), want[col].to_numpy(), err_msg=col)


def klines_requests(control):
    return [r for r in control.requests() if r["path"] == KLINES]


def test_cold_fetch_then_warm_fetch_costs_nothing(questdb, emulator, emulator_control):
    provider = make_provider(questdb, emulator)
    start = datetime(2024, 3, 1, tzinfo=UTC)
    end = start + timedelta(days=3)
    node = "ohlcv:binance:BTC/USDT:1m"
    frame = provider.fetch_sync(start, end, node_id=node, interval=60)
    assert_candles_equal(frame, truth_candles(emulator, "BTC/USDT", utc_ms(2024, 3, 1), utc_ms(2024, 3, 4)))
    assert str(frame["ts"].dt.tz) == "UTC"
    assert len(klines_requests(emulator_control)) == math.ceil(4320 / 1000)
    assert len([r for r in emulator_control.requests() if r["path"] == INFO]) <= 1

    emulator_control.clear_requests()
    again = provider.fetch_sync(start, end, node_id=node, interval="1m")
    assert emulator_control.requests() == []
    assert_candles_equal(again, frame)


def test_only_the_missing_middle_day_is_requested(questdb, emulator, emulator_control):
    node = "ohlcv:binance:ETH/USDT:1m"
    provider = make_provider(questdb, emulator, symbols=("ETH/USDT",))
    d0 = utc_ms(2024, 5, 1)
    provider.ensure_range_sync(d0 / 1000, (d0 + DAY) / 1000, node_id=node)
    provider.ensure_range_sync((d0 + 2 * DAY) / 1000, (d0 + 3 * DAY) / 1000, node_id=node)
    emulator_control.clear_requests()
    frame = provider.fetch_sync(d0 / 1000, (d0 + 3 * DAY) / 1000, node_id=node)
    reqs = klines_requests(emulator_control)
    assert len(reqs) == math.ceil(1440 / 1000)
    for r in reqs:
        assert d0 + DAY <= int(r["params"]["startTime"]) < d0 + 2 * DAY
    assert_candles_equal(frame, truth_candles(emulator, "ETH/USDT", d0, d0 + 3 * DAY))


def test_outage_and_pre_listing_are_remembered_as_empty(questdb, emulator, emulator_control):
    symbol = "SOL/USDT"
    listing = emulator.market.listing_ms("SOLUSDT")
    outage_start, outage_end = emulator.market.outages("SOLUSDT")[0]
    provider = make_provider(questdb, emulator, symbols=(symbol,))
    node = f"ohlcv:binance:{symbol}:1m"
    for start, end in [(listing - DAY, listing + 3600_000), (outage_start - 3600_000, outage_end + 3600_000)]:
        frame = provider.fetch_sync(start / 1000, end / 1000, node_id=node)
        assert_candles_equal(frame, truth_candles(emulator, symbol, start, end))
        emulator_control.clear_requests()
        provider.fetch_sync(start / 1000, end / 1000, node_id=node)
        assert klines_requests(emulator_control) == []
    empties = asyncio.run(provider.backend.load_coverage(provider.fetcher.node(node))).empty_windows()
    assert any(w.start_ms <= listing - DAY and w.end_ms == listing for w in empties), [str(w) for w in empties]
    assert any(w.start_ms == outage_start and w.end_ms == outage_end for w in empties)


def test_open_candle_is_not_covered_and_is_replaced_once_closed(questdb, emulator, emulator_control):
    now = {"ms": utc_ms(2024, 6, 1, 12, 30) + 25_000}
    emulator_control.freeze_clock(now["ms"])
    provider = make_provider(questdb, emulator, clock=lambda: now["ms"], final_lag_ms=0)
    node = "ohlcv:binance:BTC/USDT:1m"
    start = utc_ms(2024, 6, 1, 12, 0)
    frame = provider.fetch_sync(start / 1000, (now["ms"] + MIN) / 1000, node_id=node)
    assert len(frame) == 31  # 30 closed bars and the open one, provisionally
    open_bar = frame.iloc[-1]
    cov = provider.coverage_sync(node_id=node)
    assert cov[-1][1] * 1000 == utc_ms(2024, 6, 1, 12, 29)  # last covered bar opens 12:29

    now["ms"] += MIN  # 12:31:25: the 12:30 bar has closed
    emulator_control.freeze_clock(now["ms"])
    emulator_control.clear_requests()
    frame2 = provider.fetch_sync(start / 1000, (utc_ms(2024, 6, 1, 12, 31)) / 1000, node_id=node)
    assert len(klines_requests(emulator_control)) == 1
    closed = truth_candles(emulator, "BTC/USDT", start, utc_ms(2024, 6, 1, 12, 31))
    assert_candles_equal(frame2, closed)
    assert frame2.iloc[-1]["volume"] >= open_bar["volume"]
    assert provider.coverage_sync(node_id=node)[-1][1] * 1000 == utc_ms(2024, 6, 1, 12, 30)


def test_trades_hour_with_bursts_is_exact(questdb, emulator, emulator_control):
    # Small pages put many page edges inside same-millisecond bursts.
    provider = make_provider(questdb, emulator, mode="trades", window_size=50)
    start, end = utc_ms(2024, 2, 10, 8), utc_ms(2024, 2, 10, 9)
    frame = provider.fetch_sync(start / 1000, end / 1000, node_id="trades:binance:BTC/USDT")
    truth = emulator.market.trades("BTCUSDT", start, end)
    assert len(truth) > 5 * 50  # needs several pages
    ts = pd.Series([t.timestamp for t in truth])
    assert ts.duplicated().any(), "the hour must contain same-millisecond bursts"
    got = sorted(
        zip(
            frame["trade_id"].astype(int),
            frame["ts"].astype("int64") // 1000,
            frame["price"],
            frame["amount"],
            frame["side"],
            strict=True,
        )
    )
    want = sorted((t.id, t.timestamp * 1000 // 1000, t.price, t.amount, t.side) for t in truth)
    assert got == want
    assert len(frame) == len(set(frame["trade_id"]))
    emulator_control.clear_requests()
    provider.fetch_sync(start / 1000, end / 1000, node_id="trades:binance:BTC/USDT")
    assert [r for r in emulator_control.requests() if r["path"] == AGG] == []


def test_a_quiet_day_of_trades_is_paged_by_id_after_its_first_hour(questdb, emulator, emulator_control):
    """Binance: the first page asks an hour by time; once it holds a trade, the next pages follow
    the last trade id, 1,000 trades a request, however few trades each hour has (by time it
    would be a request an hour, 24 a day)."""
    provider = make_provider(questdb, emulator, mode="trades", symbols=("ETH/USDT",))
    start, end = utc_ms(2024, 2, 12), utc_ms(2024, 2, 13)
    frame = provider.fetch_sync(start / 1000, end / 1000, node_id="trades:binance:ETH/USDT")
    truth = emulator.market.trades("ETHUSDT", start, end)
    first_hour = emulator.market.trades("ETHUSDT", start, start + 3_600_000)
    assert 0 < len(first_hour) < 1000 and len(truth) > 3000  # quiet hours, a busy day
    assert sorted(frame["trade_id"].astype(int)) == sorted(t.id for t in truth)
    asked = [r for r in emulator_control.requests() if r["path"] == AGG]
    by_id = [r for r in asked if "fromId" in r["params"]]
    assert len(asked) - len(by_id) == 1 and "startTime" in asked[0]["params"]
    # the rest of the day by id: full pages, the last one reaching past the day's end
    assert len(by_id) == (len(truth) - len(first_hour)) // 1000 + 1, (len(by_id), len(truth))


def test_force_refetches_a_covered_window_without_duplicates(questdb, emulator, emulator_control):
    provider = make_provider(questdb, emulator)
    start, end, node = utc_ms(2024, 4, 1) / 1000, utc_ms(2024, 4, 2) / 1000, "ohlcv:binance:BTC/USDT:1m"
    provider.ensure_range_sync(start, end, node_id=node)
    emulator_control.clear_requests()
    report = provider.ensure_range_sync(start, end, node_id=node, force=True)
    assert report.requests == len(klines_requests(emulator_control)) == math.ceil(1440 / 1000)
    frame = provider.fetch_sync(start, end, node_id=node)
    assert len(frame) == 1440 and frame["ts"].is_unique


def test_trades_up_to_now_stop_at_the_live_edge(questdb, emulator, emulator_control):
    """A window reaching past now ends at now - lag with a bounded number of requests."""
    provider = make_provider(questdb, emulator, mode="trades")
    now = datetime.now(UTC)
    report = provider.ensure_range_sync(
        now - timedelta(minutes=10), now + timedelta(hours=1), node_id="trades:binance:BTC/USDT"
    )
    assert report.requests <= 4, report
    assert len([r for r in emulator_control.requests() if r["path"] == AGG]) == report.requests


def test_truncated_json_is_retried_and_never_stored(questdb, emulator, emulator_control):
    """A cut 200 body is a transient MalformedResponse: retried, and the data ends exact."""
    provider = make_provider(questdb, emulator)
    start, end = utc_ms(2024, 5, 1), utc_ms(2024, 5, 2)
    emulator_control.inject("truncated_json", count=2, path=KLINES)
    frame = provider.fetch_sync(start / 1000, end / 1000, node_id="ohlcv:binance:BTC/USDT:1m")
    assert_candles_equal(frame, truth_candles(emulator, "BTC/USDT", start, end))
    assert [r["fault"] for r in klines_requests(emulator_control)][:3] == ["truncated_json", "truncated_json", None]
    assert len(klines_requests(emulator_control)) == 2 + math.ceil(1440 / 1000)
    assert provider.last_report.rows_written == 1440


def test_from_config_loads_markets_through_the_limiter_inside_an_event_loop(questdb, emulator, emulator_control):
    """The spec's quick start builds the provider inside ``async def main``: the market check must
    not need a free event loop, and goes through the shared limiter (counted by ``track``)."""
    from ccxt_questdb_assets.exchange.client import clear_markets_cache
    from ccxt_questdb_assets.ratelimit import track

    clear_markets_cache()

    async def main():
        with track() as scope:
            provider = make_provider(questdb, emulator)
        frame = await provider.fetch(
            utc_ms(2024, 6, 1) / 1000, utc_ms(2024, 6, 1, 1) / 1000, node_id="ohlcv:binance:BTC/USDT:1m"
        )
        await provider.close()
        return scope.stats, frame

    stats, frame = asyncio.run(main())
    assert len(frame) == 60
    assert stats.requests >= 1
    assert len([r for r in emulator_control.requests() if r["path"] == INFO]) == 1


@pytest.mark.parametrize(
    "patch,match",
    [
        ({"exchnage": "binance"}, "exchnage"),
        ({"exchange": "binanse"}, "binanse"),
        ({"symbols": "BTC/USDT"}, "symbols"),
        ({"symbols": ["NOPE/USDT"]}, "NOPE/USDT"),
        ({"timeframe": "7m"}, "7m"),
        ({"timeframe": "1M"}, "1M"),
        ({"mode": "candles"}, "candles"),
        ({"window_size": 0}, "window_size"),
        ({"max_retries": -1}, "max_retries"),
        ({"rate_limiter": {"scope": "galaxy"}}, "scope"),
        ({"rate_limiter": {"min_interval_s": 1, "min_interval_ms": 500}}, "disagree"),
        ({"questdb": {"table": "x; DROP TABLE y"}}, "table"),
        ({"questdb": {"table_prefix": "1abc"}}, "table_prefix"),
        ({"questdb": {"password": "hunter2"}}, "CCXT_QUESTDB_PASSWORD"),
        ({"base_url": "ftp://example"}, "base_url|http"),
    ],
)
def test_bad_configs_raise_clear_errors(emulator, patch, match):
    cfg = {"exchange": "binance", "symbols": ["BTC/USDT"], "timeframe": "1m", "base_url": emulator.base_url}
    for key, value in patch.items():
        if key == "exchnage":
            cfg.pop("exchange")
        cfg[key] = value
    with pytest.raises(ConfigError, match=match) as err:
        CcxtQuestDBProvider.from_config(cfg)
    assert "hunter2" not in str(err.value)


def test_a_typed_request_keeps_every_millisecond():
    """The Dagster layer asks the engine in epoch ms (``request(node, window)``), not in seconds:
    what it asks is what is covered, to the millisecond for trades, on the bar grid for candles."""
    from ccxt_questdb_assets.core.node_ids import NodeId
    from ccxt_questdb_assets.core.windows import TimeWindow

    provider = CcxtQuestDBProvider.from_config(
        {"mode": "trades", "exchange": "binance", "symbols": ["BTC/USDT"], "base_url": "http://127.0.0.1:9"},
        validate_markets=False,
    )
    node = NodeId("trades", "binance", "BTC/USDT")
    rng = np.random.default_rng(7)
    starts = rng.integers(1_500_000_000_000, 1_800_000_000_000, size=2000)
    for s in starts.tolist():
        request = provider.request(node, TimeWindow(s, s + 1234))
        assert (request.window.start_ms, request.window.end_ms) == (s, s + 1234)
    candles = CcxtQuestDBProvider.from_config(
        {"exchange": "binance", "symbols": ["BTC/USDT"], "base_url": "http://127.0.0.1:9"}, validate_markets=False
    )
    request = candles.request(NodeId.parse("ohlcv:binance:BTC/USDT:1m"), TimeWindow(60_001, 119_999))
    assert (request.window.start_ms, request.window.end_ms) == (60_000, 120_000)
