"""Closed history from Binance's public archive (emulated), the rest through REST: real ccxt, real
QuestDB, the emulator serving both. Exact against the ground truth; months as monthly files, other
days as daily files, REST only for what the archive has not published or cannot give intact."""

from __future__ import annotations

import math

import pytest
from ccxt_support import provider_config

from ccxt_questdb_assets import CcxtQuestDBProvider
from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.testing.candles import assert_candles_exact, truth_candles

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
JAN1 = 1_704_067_200_000  # 2024-01-01T00:00Z
MAR1 = 1_709_251_200_000  # 2024-03-01T00:00Z
KLINES = {"binance": "/api/v3/klines", "binanceusdm": "/fapi/v1/klines"}


def archived_provider(questdb, emulator, emulator_control, now: int, exchange="binance", **extra):
    emulator_control.freeze_clock(now)
    cfg = provider_config(questdb, emulator, exchange, prefix="a_", archive={"base_url": emulator.base_url}, **extra)
    return CcxtQuestDBProvider.from_config(cfg, clock=lambda: now)


def requests_of(control, dialect: str, path: str | None = None) -> list[dict]:
    return [r for r in control.requests() if r.get("dialect") == dialect and (path is None or r["path"] == path)]


def test_closed_months_and_days_come_from_the_archive_and_only_the_tail_from_rest(questdb, emulator, emulator_control):
    now = MAR1 + 3 * DAY + 6 * HOUR  # 2024-03-04 06:00: January's file is out, February's not yet
    provider = archived_provider(questdb, emulator, emulator_control, now)
    start, end = JAN1, MAR1 + 2 * DAY + 12 * HOUR
    node = "ohlcv:binance:BTC/USDT:1m"
    emulator_control.clear_requests()
    frame = provider.fetch_sync(start / 1000, end / 1000, node_id=node)
    assert_candles_exact(frame, truth_candles(emulator, "BTC/USDT", start, end))
    files = [r["path"].rsplit("/", 1)[-1] for r in requests_of(emulator_control, "archive")]
    zips = [name for name in files if name.endswith(".zip")]
    assert zips[0] == "BTCUSDT-1m-2024-01.zip" and "BTCUSDT-1m-2024-02-29.zip" in zips
    assert len(zips) == 1 + 29 + 2  # January, February's days, March 1st and 2nd: each read once
    assert len(files) == 2 * len(zips)  # each with its checksum
    assert len(requests_of(emulator_control, "binance", KLINES["binance"])) == 1  # March 3rd to 12:00: 720 bars
    assert provider.fetcher.archive.counts.fallbacks == []

    emulator_control.clear_requests()
    again = provider.fetch_sync(start / 1000, end / 1000, node_id=node)
    assert emulator_control.requests() == []
    assert_candles_exact(again, truth_candles(emulator, "BTC/USDT", start, end))


def test_missing_or_corrupt_files_are_read_through_rest_and_the_data_is_exact(questdb, emulator, emulator_control):
    now = MAR1 + 10 * DAY
    provider = archived_provider(questdb, emulator, emulator_control, now, symbols=("ETH/USDT",))
    emulator_control.set_archive(
        missing=["ETHUSDT-1m-2024-01.zip", "ETHUSDT-1m-2024-01-10.zip"], corrupt=["ETHUSDT-1m-2024-01-11.zip"]
    )
    emulator_control.clear_requests()
    start, end = JAN1, JAN1 + 31 * DAY
    frame = provider.fetch_sync(start / 1000, end / 1000, node_id="ohlcv:binance:ETH/USDT:1m")
    assert_candles_exact(frame, truth_candles(emulator, "ETH/USDT", start, end))
    rest = requests_of(emulator_control, "binance", KLINES["binance"])
    assert len(rest) == 2 * math.ceil(1440 / 1000)  # January 10th and 11th only
    fallbacks = provider.fetcher.archive.counts.fallbacks
    assert [f.split(":")[0] for f in fallbacks] == [
        "ETHUSDT-1m-2024-01.zip",
        "ETHUSDT-1m-2024-01-10.zip",
        "ETHUSDT-1m-2024-01-11.zip",
    ]
    assert "404" in fallbacks[0] and "SHA-256" in fallbacks[2]


@pytest.mark.parametrize("exchange", ["binance", "binanceusdm"])
def test_microsecond_spot_files_and_futures_files_with_a_header(questdb, emulator, emulator_control, exchange):
    day0 = 1_738_368_000_000  # 2025-02-01: spot files in microseconds
    now = day0 + 5 * DAY
    symbol = "BTC/USDT" if exchange == "binance" else "BTC/USDT:USDT"
    provider = archived_provider(questdb, emulator, emulator_control, now, exchange=exchange, symbols=(symbol,))
    emulator_control.clear_requests()
    start, end = day0, day0 + 3 * DAY
    frame = provider.fetch_sync(start / 1000, end / 1000, node_id=f"ohlcv:{exchange}:{symbol}:1m")
    assert_candles_exact(frame, truth_candles(emulator, "BTC/USDT", start, end))
    assert requests_of(emulator_control, exchange, KLINES[exchange]) == []
    assert len(requests_of(emulator_control, "archive")) == 2 * 3


def test_trades_from_daily_agg_trade_files_exact_by_id(questdb, emulator, emulator_control):
    now = MAR1 + 5 * DAY
    provider = archived_provider(questdb, emulator, emulator_control, now, mode="trades")
    emulator_control.clear_requests()
    start, end = MAR1, MAR1 + 2 * DAY + 2 * HOUR
    frame = provider.fetch_sync(start / 1000, end / 1000, node_id="trades:binance:BTC/USDT")
    want = emulator.market.trades("BTCUSDT", start, end)
    assert frame["trade_id"].astype("int64").tolist() == [t.id for t in want]
    assert frame["side"].tolist() == [t.side for t in want]
    zips = [r["path"] for r in requests_of(emulator_control, "archive") if r["path"].endswith(".zip")]
    assert [z.rsplit("/", 1)[-1] for z in zips] == [
        "BTCUSDT-aggTrades-2024-03-01.zip",
        "BTCUSDT-aggTrades-2024-03-02.zip",
    ]
    assert requests_of(emulator_control, "binance", "/api/v3/aggTrades")  # the last 2 hours, through REST


def test_an_exchange_without_an_archive_is_refused_at_config(questdb, emulator):
    cfg = provider_config(questdb, emulator, "okx", archive=True)
    with pytest.raises(ConfigError, match="'okx' has no public archive"):
        CcxtQuestDBProvider.from_config(cfg, validate_markets=False)
