"""The Dagster layer through real Dagster runs, real QuestDB, real ccxt and the exchange emulator."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from dagster import AssetSelection, DagsterInstance, materialize
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from ccxt_questdb_assets.defs.asset_keys import ohlcv_key
from ccxt_questdb_assets.defs.build import build_definitions
from ccxt_questdb_assets.defs.partitions import keys_for
from ccxt_questdb_assets.defs.project_config import ProjectConfig
from ccxt_questdb_assets.testing.candles import (
    assert_candles_exact,
    stored_candles,
    truth_candles,
)

KLINES = "/api/v3/klines"
AGG = "/api/v3/aggTrades"
CANDLES = ohlcv_key("binance", "1m")
NODE = CANDLES.to_python_identifier()
CANDLE_CHECKS = {"no_gaps", "unique_increasing_timestamps", "ohlc_sanity"}


def utc_ms(*args) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def project_mapping(questdb, emulator, prefix: str) -> dict:
    conn = questdb.connection
    return {
        "start_date": "2024-01-01",
        "questdb": {"host": conn.host, "port": conn.port, "http_port": conn.http_port, "table_prefix": prefix},
        "rate_limiter": {"scope": "local", "max_concurrency": 2},
        "exchanges": {
            "binance": {
                "base_url": emulator.base_url,
                "symbols": ["BTC/USDT", "ETH/USDT"],
                "timeframes": ["1m"],
                "trades": True,
                "retry_backoff_s": 0.01,
            }
        },
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
    asset = defs.resolve_assets_def(CANDLES)
    key = keys_for(["2024-03-01"], ["BTC/USDT"])[0]
    emulator_control.clear_requests()
    result = materialize([asset], partition_key=key, instance=instance)
    assert result.success
    table = cfg.exchanges[0].ohlcv.tables.data
    assert_candles_exact(
        stored_candles(questdb, table, "BTC/USDT", utc_ms(2024, 3, 1), utc_ms(2024, 3, 2)),
        truth_candles(emulator, "BTC/USDT", utc_ms(2024, 3, 1), utc_ms(2024, 3, 2)),
    )
    assert len(emulator_control.requests(KLINES)) == math.ceil(1440 / 1000)
    md = result.asset_materializations_for_node(NODE)[0].metadata
    assert md["rows_written"].value == 1440 and md["exchange_requests"].value == 2
    assert md["dagster/row_count"].value == 1440 and md["coverage_after"].value == 1.0
    assert md["rows_already_present"].value == 0 and md["coverage_before"].value == 0.0

    emulator_control.clear_requests()
    again = materialize([asset], partition_key=key, instance=instance)
    assert again.success
    assert emulator_control.requests() == []  # no request of any kind: not even the markets
    md = again.asset_materializations_for_node(NODE)[0].metadata
    assert md["exchange_requests"].value == 0 and md["rows_already_present"].value == 1440
    assert md["coverage_before"].value == 1.0 and md["rows_written"].value == 0


REPEAT_IN_A_FRESH_PROCESS = """
import json, sys
from dagster import DagsterInstance, materialize
from ccxt_questdb_assets.defs.asset_keys import ohlcv_key
from ccxt_questdb_assets.defs.build import build_definitions
from ccxt_questdb_assets.defs.project_config import ProjectConfig

defs = build_definitions(ProjectConfig.load(sys.argv[1]))
asset = defs.resolve_assets_def(ohlcv_key("binance", "1m"))
with DagsterInstance.ephemeral(tempdir=sys.argv[2]) as instance:
    instance.add_dynamic_partitions("binance_symbols", ["BTC/USDT"])
    result = materialize([asset], partition_key=sys.argv[3], instance=instance)
    md = result.asset_materializations_for_node(asset.node_def.name)[0].metadata
    checks = [e.passed for e in result.get_asset_check_evaluations()]
    print(json.dumps({
        "success": result.success, "requests": md["exchange_requests"].value, "rows": md["dagster/row_count"].value,
        "preview": md["preview"].value.splitlines()[2], "checks": checks,
        "loaded": [m for m in ("pandas", "pyarrow", "ccxt", "aiohttp") if m in sys.modules],
    }))
"""


def test_a_run_with_nothing_to_fetch_loads_neither_pandas_nor_ccxt(project, instance, questdb, emulator, tmp_path):
    """A partition already stored: its run reads coverage, the figures, a preview and the checks'
    inputs as rows (docs/architecture.md), so a fresh process never imports pandas, pyarrow or
    ccxt, and still shows the partition's real figures, preview and passed checks."""
    cfg, path = project
    key = keys_for(["2024-03-04"], ["BTC/USDT"])[0]
    assert materialize(
        [build_definitions(cfg).resolve_assets_def(CANDLES)], partition_key=key, instance=instance
    ).success
    done = subprocess.run(
        [sys.executable, "-c", REPEAT_IN_A_FRESH_PROCESS, str(path), str(tmp_path / "fresh"), str(key)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["success"] and seen["requests"] == 0 and seen["rows"] == 1440
    first = truth_candles(emulator, "BTC/USDT", utc_ms(2024, 3, 4), utc_ms(2024, 3, 4, 0, 1))[0]
    assert [c.strip() for c in seen["preview"].strip("|").split("|")] == [
        "2024-03-04 00:00:00+00:00",
        *(repr(float(v)) for v in first[1:6]),
    ]
    assert seen["checks"] == [True, True, True]
    assert seen["loaded"] == [], f"a run with nothing to fetch imported {seen['loaded']}"


def test_a_range_run_gives_each_partition_its_own_figures_and_checks(
    project, instance, questdb, emulator, emulator_control
):
    """Three days of one symbol in one run (a backfill's run): three materializations, each with
    its own day's rows, span, requests and coverage, and its own passed check evaluations."""
    cfg, _ = project
    asset = build_definitions(cfg).resolve_assets_def(CANDLES)
    days = ["2024-03-10", "2024-03-11", "2024-03-12"]
    emulator_control.clear_requests()
    result = materialize(
        [asset],
        instance=instance,
        tags={
            ASSET_PARTITION_RANGE_START_TAG: f"{days[0]}|ETH/USDT",
            ASSET_PARTITION_RANGE_END_TAG: f"{days[-1]}|ETH/USDT",
        },
    )
    assert result.success
    events = {e.partition: e.metadata for e in result.asset_materializations_for_node(NODE)}
    assert sorted(events) == [f"{d}|ETH/USDT" for d in days]
    requests = emulator_control.requests(KLINES)
    assert len(requests) == math.ceil(3 * 1440 / 1000)
    for i, day in enumerate(days):
        md, start = events[f"{day}|ETH/USDT"], utc_ms(2024, 3, 10 + i)
        assert md["dagster/row_count"].value == md["rows_written"].value == 1440
        assert md["first_ts"].value == start / 1000 and md["last_ts"].value == (start + 86_400_000 - 60_000) / 1000
        assert md["coverage_before"].value == 0.0 and md["coverage_after"].value == 1.0
        assert day in md["preview"].value
    # every request counted once, in the day its page started from
    assert sum(md["exchange_requests"].value for md in events.values()) == len(requests)
    assert [events[f"{d}|ETH/USDT"]["exchange_requests"].value for d in days] == [2, 1, 2]
    checks = result.get_asset_check_evaluations()
    assert {(c.check_name, c.partition) for c in checks} == {(n, f"{d}|ETH/USDT") for n in CANDLE_CHECKS for d in days}
    assert all(c.passed for c in checks)
    for c in checks:  # each evaluated against its own partition's materialization of this run
        assert c.target_materialization_data.run_id == result.run_id
        assert c.metadata["checked"].value.startswith("ETH/USDT [" + c.partition.split("|")[0])
    gaps = {c.partition: c.metadata["expected_bars"].value for c in checks if c.check_name == "no_gaps"}
    assert set(gaps.values()) == {1440}

    # the checks alone (the UI's "Execute checks"): no materialization, no request, same verdicts
    emulator_control.clear_requests()
    alone = materialize(
        [asset],
        selection=AssetSelection.checks_for_assets(CANDLES),
        instance=instance,
        tags={
            ASSET_PARTITION_RANGE_START_TAG: f"{days[0]}|ETH/USDT",
            ASSET_PARTITION_RANGE_END_TAG: f"{days[-1]}|ETH/USDT",
        },
    )
    assert alone.success and alone.asset_materializations_for_node(NODE) == []
    assert len(alone.get_asset_check_evaluations()) == 9 and all(c.passed for c in alone.get_asset_check_evaluations())
    assert {c.target_materialization_data.run_id for c in alone.get_asset_check_evaluations()} == {result.run_id}
    assert emulator_control.requests() == []


def test_cli_materialize_one_partition_is_exact_and_repeat_makes_no_request(
    project, questdb, emulator, emulator_control, tmp_path
):
    cfg, path = project
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "CCXT_QUESTDB_PROJECT": str(path)}
    with DagsterInstance.from_config(str(home)) as inst:
        inst.add_dynamic_partitions("binance_symbols", ["ETH/USDT"])
    cmd = [
        sys.executable,
        "-m",
        "dagster",
        "asset",
        "materialize",
        "-m",
        "ccxt_questdb_assets.defs.definitions",
        "--select",
        CANDLES.to_user_string(),
        "--partition",
        "2024-02-10|ETH/USDT",
    ]
    for attempt in range(2):
        emulator_control.clear_requests()
        done = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=240, cwd=Path(__file__).parent.parent
        )
        assert done.returncode == 0, done.stderr[-3000:]
        requests = emulator_control.requests(KLINES)
        assert len(requests) == (2 if attempt == 0 else 0)
        if attempt:  # a covered partition: no request of any kind (not even the markets) in a fresh process
            assert emulator_control.requests() == []
    table = cfg.exchanges[0].ohlcv.tables.data
    assert_candles_exact(
        stored_candles(questdb, table, "ETH/USDT", utc_ms(2024, 2, 10), utc_ms(2024, 2, 11)),
        truth_candles(emulator, "ETH/USDT", utc_ms(2024, 2, 10), utc_ms(2024, 2, 11)),
    )
