"""The Dagster layer through real Dagster runs, real QuestDB, real ccxt and the exchange emulator."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, materialize

from ccxt_questdb_assets.defs.definitions import build_definitions
from ccxt_questdb_assets.defs.partitions import keys_for
from ccxt_questdb_assets.defs.project_config import ProjectConfig
from ccxt_questdb_assets.testing.candles import (
    assert_candles_exact,
    stored_candles,
    truth_candles,
)

KLINES = "/api/v3/klines"
AGG = "/api/v3/aggTrades"


def utc_ms(*args) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


def project_mapping(questdb, emulator, prefix: str) -> dict:
    conn = questdb.connection
    return {
        "start_date": "2024-01-01",
        "questdb": {"host": conn.host, "port": conn.port, "http_port": conn.http_port, "table_prefix": prefix},
        "rate_limiter": {"scope": "local", "max_concurrency": 2},
        "exchanges": {"binance": {"base_url": emulator.base_url, "symbols": ["BTC/USDT", "ETH/USDT"],
                                  "timeframes": ["1m"], "trades": True, "retry_backoff_s": 0.01}},
    }


@pytest.fixture
def project(questdb, emulator, tmp_path):
    mapping = project_mapping(questdb, emulator, "d_" + uuid.uuid4().hex[:10])
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(mapping))
    return ProjectConfig.load(path), path


@pytest.fixture
def instance(tmp_path):
    with DagsterInstance.ephemeral(tempdir=str(tmp_path / "dagster")) as inst:
        inst.add_dynamic_partitions("binance_symbols", ["BTC/USDT", "ETH/USDT"])
        yield inst


def test_one_partition_in_process_then_repeat_costs_nothing(project, instance, questdb, emulator, emulator_control):
    cfg, _ = project
    defs = build_definitions(cfg)
    asset = defs.resolve_assets_def("binance_ohlcv_1m")
    key = keys_for(["2024-03-01"], ["BTC/USDT"])[0]
    result = materialize([asset], partition_key=key, instance=instance)
    assert result.success
    table = cfg.exchanges[0].ohlcv.tables.data
    assert_candles_exact(stored_candles(questdb, table, "BTC/USDT", utc_ms(2024, 3, 1), utc_ms(2024, 3, 2)),
                 truth_candles(emulator, "BTC/USDT", utc_ms(2024, 3, 1), utc_ms(2024, 3, 2)))
    assert len(emulator_control.requests(KLINES)) == math.ceil(1440 / 1000)
    md = result.asset_materializations_for_node("binance_ohlcv_1m")[0].metadata
    assert md["rows_written"].value == 1440 and md["exchange_requests"].value == 2
    assert md["dagster/row_count"].value == 1440 and md["coverage_after"].value == 1.0
    assert md["rows_already_present"].value == 0

    emulator_control.clear_requests()
    again = materialize([asset], partition_key=key, instance=instance)
    assert again.success
    assert emulator_control.requests(KLINES) == []
    md = again.asset_materializations_for_node("binance_ohlcv_1m")[0].metadata
    assert md["exchange_requests"].value == 0 and md["rows_already_present"].value == 1440


def test_cli_materialize_one_partition_is_exact_and_repeat_makes_no_request(project, questdb, emulator,
                                                                           emulator_control, tmp_path):
    cfg, path = project
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "CCXT_QUESTDB_PROJECT": str(path)}
    with DagsterInstance.from_config(str(home)) as inst:
        inst.add_dynamic_partitions("binance_symbols", ["ETH/USDT"])
    cmd = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "ccxt_questdb_assets.defs.definitions",
           "--select", "binance_ohlcv_1m", "--partition", "2024-02-10|ETH/USDT"]
    for attempt in range(2):
        emulator_control.clear_requests()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=Path(__file__).parent.parent)
        assert done.returncode == 0, done.stderr[-3000:]
        requests = emulator_control.requests(KLINES)
        assert len(requests) == (2 if attempt == 0 else 0)
    table = cfg.exchanges[0].ohlcv.tables.data
    assert_candles_exact(stored_candles(questdb, table, "ETH/USDT", utc_ms(2024, 2, 10), utc_ms(2024, 2, 11)),
                 truth_candles(emulator, "ETH/USDT", utc_ms(2024, 2, 10), utc_ms(2024, 2, 11)))
