"""One project file, several exchanges, through real Dagster materializations.

Each exchange gets its own assets, group, pool and partitions; a two-day range run of each
exchange's 1m candles equals the ground truth at the fewest requests its dialect allows, a
rerun asks nothing, a range run fetches only the days not stored; a day of trades is exact on
every exchange that keeps them; a perpetual swap symbol is a partition key; Kraken, whose candles reach back
only 720 bars, gets exact 1m bars from its trades; Bybit's trades are refused in the file.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from dagster import AssetKey, DagsterInstance, materialize
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.node_ids import NodeId
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.core.windows import TimeWindow
from ccxt_questdb_assets.defs.asset_keys import ohlcv_key, trade_bars_key, trades_key
from ccxt_questdb_assets.defs.build import build_definitions
from ccxt_questdb_assets.defs.derived_assets import trade_bars_table
from ccxt_questdb_assets.defs.partitions import keys_for
from ccxt_questdb_assets.defs.project_config import ProjectConfig
from ccxt_questdb_assets.storage.client import QuestDBClient
from ccxt_questdb_assets.storage.series import SeriesStore
from ccxt_questdb_assets.storage.series_kind import CANDLE_KIND, TRADE_KIND
from ccxt_questdb_assets.testing.candles import assert_bars_equal, assert_candles_exact, stored_candles, truth_candles

DAY = 86_400_000
PAGE = {"binance": 1000, "okx": 300, "bybit": 1000, "coinbase": 300}
CANDLE_PATH = {
    "binance": lambda p: p == "/api/v3/klines",
    "okx": lambda p: p.endswith("candles"),
    "bybit": lambda p: p == "/v5/market/kline",
    "coinbase": lambda p: p.endswith("/candles"),
}
SWAP = "BTC/USDT:USDT"


def utc_ms(*args) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def mapping(questdb, emulator, prefix: str) -> dict:
    conn = questdb.connection
    url = emulator.base_url
    common = {"base_url": url, "timeframes": ["1m"], "retry_backoff_s": 0.01}
    return {
        "start_date": "2024-01-01",
        "questdb": {"host": conn.host, "port": conn.port, "http_port": conn.http_port, "table_prefix": prefix},
        "rate_limiter": {"scope": "process", "max_concurrency": 2},
        "exchanges": {
            "binance": {**common, "symbols": ["BTC/USDT"]},
            "okx": {**common, "symbols": ["BTC/USDT", SWAP], "trades": True},
            "bybit": {**common, "symbols": ["BTC/USDT"]},
            "coinbase": {**common, "symbols": ["BTC/USDT"], "trades": True},
            "kraken": {"base_url": url, "retry_backoff_s": 0.01, "symbols": ["BTC/USDT"], "trades": True},
        },
    }


@pytest.fixture
def project(questdb, emulator, tmp_path):
    cfg = ProjectConfig.from_mapping(mapping(questdb, emulator, "x_" + uuid.uuid4().hex[:10]))
    with DagsterInstance.ephemeral(tempdir=str(tmp_path / "dagster")) as instance:
        for ex in cfg.exchanges:
            instance.add_dynamic_partitions(f"{ex.exchange_id}_symbols", list(ex.symbols))
        yield cfg, build_definitions(cfg), instance


def test_each_exchange_has_its_own_assets_group_pool_and_partitions(project):
    cfg, defs, _ = project
    graph = defs.resolve_asset_graph()
    for ex in ("binance", "okx", "bybit", "coinbase", "kraken"):
        node = graph.get(ohlcv_key(ex, "1m") if ex != "kraken" else trades_key(ex))
        assert node.group_name == ex
        assert node.pools == {f"ccxt_{ex}"}
        assert node.partitions_def.get_partitions_def_for_dimension("symbol").name == f"{ex}_symbols"
    assert graph.has(trades_key("kraken")) and graph.has(trade_bars_key("kraken"))
    assert not graph.has(ohlcv_key("kraken", "1m"))  # its candles reach back 720 bars: its 1m bars come from trades
    assert not graph.has(trades_key("bybit"))


def assert_exact_range_run(result, cfg, exchange: str, questdb, emulator, control, days: list[str]) -> list[dict]:
    """The run succeeded and stored BTC/USDT's candles of ``days`` equal to the ground truth; its
    candle requests."""
    assert result.success
    start, end = utc_ms(*map(int, days[0].split("-"))), utc_ms(*map(int, days[-1].split("-"))) + DAY
    table = cfg.exchange(exchange).ohlcv.tables.data
    assert_candles_exact(
        stored_candles(questdb, table, "BTC/USDT", start, end, exchange=exchange),
        truth_candles(emulator, "BTC/USDT", start, end),
        exchange,
    )
    return [r for r in control.requests() if r.get("dialect") == exchange and CANDLE_PATH[exchange](r["path"])]


@pytest.mark.parametrize("exchange", sorted(PAGE))
def test_two_days_of_each_exchange_exact_at_the_fewest_requests(project, questdb, emulator, emulator_control, exchange):
    cfg, defs, instance = project
    asset = defs.resolve_assets_def(ohlcv_key(exchange, "1m"))
    days = ["2024-03-01", "2024-03-02"]
    tags = {
        ASSET_PARTITION_RANGE_START_TAG: f"{days[0]}|BTC/USDT",
        ASSET_PARTITION_RANGE_END_TAG: f"{days[1]}|BTC/USDT",
    }
    result = materialize([asset], instance=instance, tags=tags)
    asked = assert_exact_range_run(result, cfg, exchange, questdb, emulator, emulator_control, days)
    assert len(asked) == math.ceil(2880 / PAGE[exchange])
    events = {e.partition: e.metadata for e in result.asset_materializations_for_node(asset.node_def.name)}
    assert sorted(events) == [f"{d}|BTC/USDT" for d in days]
    assert all(md["dagster/row_count"].value == 1440 and md["coverage_after"].value == 1.0 for md in events.values())
    assert sum(md["exchange_requests"].value for md in events.values()) == len(asked)
    assert all(c.passed for c in result.get_asset_check_evaluations())

    emulator_control.clear_requests()
    assert materialize([asset], instance=instance, tags=tags).success
    assert emulator_control.requests() == []


@pytest.mark.parametrize("exchange", sorted(PAGE))
def test_a_range_run_fetches_only_the_days_not_stored(project, questdb, emulator, emulator_control, exchange):
    cfg, defs, instance = project
    asset = defs.resolve_assets_def(ohlcv_key(exchange, "1m"))
    day2 = keys_for(["2024-04-02"], ["BTC/USDT"])[0]
    assert materialize([asset], instance=instance, partition_key=day2).success
    emulator_control.clear_requests()
    tags = {
        ASSET_PARTITION_RANGE_START_TAG: "2024-04-01|BTC/USDT",
        ASSET_PARTITION_RANGE_END_TAG: "2024-04-03|BTC/USDT",
    }
    result = materialize([asset], instance=instance, tags=tags)
    asked = assert_exact_range_run(
        result, cfg, exchange, questdb, emulator, emulator_control, ["2024-04-01", "2024-04-02", "2024-04-03"]
    )
    assert len(asked) == 2 * math.ceil(1440 / PAGE[exchange])  # days 1 and 3 only
    events = {e.partition: e.metadata for e in result.asset_materializations_for_node(asset.node_def.name)}
    assert events["2024-04-02|BTC/USDT"]["exchange_requests"].value == 0
    assert events["2024-04-02|BTC/USDT"]["rows_already_present"].value == 1440


@pytest.mark.parametrize("exchange", sorted(PAGE))
def test_a_rate_limit_answer_mid_run_ends_exact(project, questdb, emulator, emulator_control, exchange):
    cfg, defs, instance = project
    asset = defs.resolve_assets_def(ohlcv_key(exchange, "1m"))
    assert materialize([asset], instance=instance, partition_key=keys_for(["2024-05-01"], ["BTC/USDT"])[0]).success
    path = [
        r for r in emulator_control.requests() if r.get("dialect") == exchange and CANDLE_PATH[exchange](r["path"])
    ][-1]["path"]
    emulator_control.clear_requests()
    emulator_control.inject("429", count=1, path=path, after=1, retry_after=1)
    result = materialize([asset], instance=instance, partition_key=keys_for(["2024-05-02"], ["BTC/USDT"])[0])
    asked = assert_exact_range_run(result, cfg, exchange, questdb, emulator, emulator_control, ["2024-05-02"])
    assert [r["status"] for r in asked].count(429) == 1
    assert len(asked) == math.ceil(1440 / PAGE[exchange]) + 1


@pytest.mark.parametrize("exchange", ["okx", "coinbase", "kraken"])
def test_a_day_of_trades_through_dagster_is_exact(project, questdb, emulator, emulator_control, exchange):
    """By trade id (Kraken's too: its rows carry ids here), same-millisecond bursts included."""
    cfg, defs, instance = project
    day = datetime.now(UTC).date() - timedelta(days=2)  # OKX serves the last 90 days of trades
    asset = defs.resolve_assets_def(trades_key(exchange))
    result = materialize([asset], instance=instance, partition_key=keys_for([day.isoformat()], ["BTC/USDT"])[0])
    assert result.success
    start = utc_ms(day.year, day.month, day.day)
    want = emulator.market.trades("BTCUSDT", start, start + DAY)
    client = QuestDBClient(questdb.connection)
    try:
        store = SeriesStore(client, cfg.exchange(exchange).trades_config.tables.data, TRADE_KIND)
        got = store.read(NodeId("trades", exchange, "BTC/USDT"), TimeWindow(start, start + DAY))
    finally:
        client.close()
    stored = sorted(
        zip(
            got["ts"].dt.as_unit("ms").astype("int64"),
            got["trade_id"].astype("int64"),
            got["price"],
            got["amount"],
            got["side"],
            strict=True,
        )
    )
    assert stored == sorted((t.timestamp, t.id, t.price, t.amount, t.side) for t in want)
    md = result.asset_materializations_for_node(asset.node_def.name)[0].metadata
    assert md["dagster/row_count"].value == len(want) and md["coverage_after"].value == 1.0


def test_a_perpetual_swap_is_a_partition_key(project, questdb, emulator):
    cfg, defs, instance = project
    asset = defs.resolve_assets_def(ohlcv_key("okx", "1m"))
    result = materialize([asset], instance=instance, partition_key=keys_for(["2024-03-05"], [SWAP])[0])
    assert result.success
    start = utc_ms(2024, 3, 5)
    table = cfg.exchange("okx").ohlcv.tables.data
    assert_candles_exact(
        stored_candles(questdb, table, SWAP, start, start + DAY, exchange="okx"),
        truth_candles(emulator, "BTC/USDT", start, start + DAY),
        SWAP,
    )
    assert stored_candles(questdb, table, "BTC/USDT", start, start + DAY, exchange="okx").empty  # its own series


def test_kraken_one_minute_bars_from_its_trades_equal_the_ground_truth(project, questdb, emulator):
    cfg, defs, instance = project
    assets = [defs.resolve_assets_def(trades_key("kraken")), defs.resolve_assets_def(trade_bars_key("kraken"))]
    result = materialize(assets, instance=instance, partition_key=keys_for(["2024-03-07"], ["BTC/USDT"])[0])
    assert result.success
    start = utc_ms(2024, 3, 7)
    client = QuestDBClient(questdb.connection)
    try:
        store = SeriesStore(client, trade_bars_table(cfg.exchange("kraken")).table, CANDLE_KIND)
        bars = store.read(NodeId("ohlcv", "kraken", "BTC/USDT", Timeframe.parse("1m")), TimeWindow(start, start + DAY))
    finally:
        client.close()
    assert_bars_equal(bars, np.array(emulator.market.candles("BTCUSDT", "1m", start, start + DAY), dtype=float)[:, :6])


def test_bybit_trades_are_refused_in_the_project_file(questdb, emulator):
    raw = mapping(questdb, emulator, "x_refused")
    raw["exchanges"]["bybit"]["trades"] = True
    with pytest.raises(
        ConfigError, match=r"exchanges.bybit.trades: bybit keeps no public trade history.*trades: false"
    ):
        ProjectConfig.from_mapping(raw)


def test_kraken_candle_assets_are_refused_in_the_project_file(questdb, emulator):
    raw = mapping(questdb, emulator, "x_refused")
    raw["exchanges"]["kraken"]["timeframes"] = ["1m"]
    with pytest.raises(
        ConfigError,
        match=r"exchanges.kraken.timeframes: kraken's OHLC serves only the latest 720.*"
        r"remove timeframes",
    ):
        ProjectConfig.from_mapping(raw)
    raw["exchanges"]["kraken"] = {"base_url": emulator.base_url, "symbols": ["BTC/USDT"]}
    with pytest.raises(ConfigError, match=r"exchanges.kraken: .*Set trades: true"):
        ProjectConfig.from_mapping(raw)


def test_asset_keys_name_the_exchange():
    assert ohlcv_key("okx", "1m") == AssetKey(["okx", "ohlcv", "ohlcv_1m"])
