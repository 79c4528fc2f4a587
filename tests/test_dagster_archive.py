"""The public archive through real Dagster materializations: a project file turns it on for Binance,
and a range run of past days stores them exact from the day files, with no kline request, each
partition's figures its own; an exchange without an archive is refused in the file."""

from __future__ import annotations

import uuid

import pytest
from dagster import DagsterInstance, materialize
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.defs.asset_keys import ohlcv_key
from ccxt_questdb_assets.defs.build import build_definitions
from ccxt_questdb_assets.defs.project_config import ProjectConfig
from ccxt_questdb_assets.testing.candles import assert_candles_exact, stored_candles, truth_candles

DAY = 86_400_000
MAR1 = 1_709_251_200_000  # 2024-03-01


def mapping(questdb, emulator, *, exchange: str = "binance") -> dict:
    conn = questdb.connection
    return {
        "start_date": "2024-01-01",
        "questdb": {
            "host": conn.host,
            "port": conn.port,
            "http_port": conn.http_port,
            "table_prefix": "arc_" + uuid.uuid4().hex[:10],
        },
        "rate_limiter": {"scope": "process", "max_concurrency": 2},
        "exchanges": {
            exchange: {
                "base_url": emulator.base_url,
                "symbols": ["BTC/USDT"],
                "archive": {"base_url": emulator.base_url},
            }
        },
    }


def test_a_range_run_of_past_days_comes_from_the_archive(questdb, emulator, emulator_control, tmp_path):
    cfg = ProjectConfig.from_mapping(mapping(questdb, emulator))
    defs = build_definitions(cfg)
    asset = defs.resolve_assets_def(ohlcv_key("binance", "1m"))
    with DagsterInstance.ephemeral(tempdir=str(tmp_path / "dagster")) as instance:
        instance.add_dynamic_partitions("binance_symbols", ["BTC/USDT"])
        emulator_control.clear_requests()
        tags = {
            ASSET_PARTITION_RANGE_START_TAG: "2024-03-01|BTC/USDT",
            ASSET_PARTITION_RANGE_END_TAG: "2024-03-02|BTC/USDT",
        }
        result = materialize([asset], instance=instance, tags=tags)
    assert result.success
    table = cfg.exchange("binance").ohlcv.tables.data
    assert_candles_exact(
        stored_candles(questdb, table, "BTC/USDT", MAR1, MAR1 + 2 * DAY),
        truth_candles(emulator, "BTC/USDT", MAR1, MAR1 + 2 * DAY),
    )
    asked = emulator_control.requests()
    assert [r for r in asked if r["path"] == "/api/v3/klines"] == []
    files = sorted(r["path"].rsplit("/", 1)[-1] for r in asked if r.get("dialect") == "archive")
    assert files == [
        "BTCUSDT-1m-2024-03-01.zip",
        "BTCUSDT-1m-2024-03-01.zip.CHECKSUM",
        "BTCUSDT-1m-2024-03-02.zip",
        "BTCUSDT-1m-2024-03-02.zip.CHECKSUM",
    ]
    events = {e.partition: e.metadata for e in result.asset_materializations_for_node(asset.node_def.name)}
    assert sorted(events) == ["2024-03-01|BTC/USDT", "2024-03-02|BTC/USDT"]
    for md in events.values():
        assert md["dagster/row_count"].value == 1440 and md["coverage_after"].value == 1.0
        assert md["exchange_requests"].value == 0  # true: the archive is not the exchange's API
    assert all(c.passed for c in result.get_asset_check_evaluations())


def test_an_exchange_without_an_archive_is_refused_in_the_project_file(questdb, emulator):
    with pytest.raises(ConfigError, match="'okx' has no public archive"):
        ProjectConfig.from_mapping(mapping(questdb, emulator, exchange="okx"))
