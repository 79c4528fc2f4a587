"""The project's Definitions as Dagster processes load them: no warning, the same job snapshot in
every process, the catalog's keys, tags, kinds, descriptions, freshness and automation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dagster import AssetKey, DefaultSensorStatus, FreshnessPolicy

from ccxt_questdb_assets.defs.project_config import ENV_PROJECT

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = (
    "from ccxt_questdb_assets.defs.definitions import defs; "
    "print(defs.resolve_job_def('binance_ingest').get_job_snapshot_id())"
)


def python(code: str, *flags: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *flags, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env
    )


def test_definitions_load_without_a_warning():
    done = python("import ccxt_questdb_assets.defs.definitions", "-W", "error")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == ""


DATA_LIBRARIES = ("pandas", "numpy", "pyarrow", "psycopg", "questdb", "ccxt", "aiohttp", "redis")


def test_definitions_load_without_the_libraries_that_move_data():
    """The webserver, the daemon and every run worker load the code location first: its assets,
    checks, jobs, sensors and resources are all built without pandas, numpy, the database drivers
    or ccxt, which load with the run that needs them (docs/architecture.md)."""
    code = (
        "import sys; from ccxt_questdb_assets.defs.definitions import defs; "
        "repo = defs.get_repository_def(); repo.load_all_definitions(); "
        "print(len(repo.assets_defs_by_key), len(repo.get_all_jobs()), len(repo.sensor_defs)); "
        f"print(','.join(m for m in {DATA_LIBRARIES!r} if m in sys.modules))"
    )
    done = python(code)
    assert done.returncode == 0, done.stderr[-3000:]
    counts, loaded = done.stdout.splitlines()[-2:]
    assets, jobs, sensors = map(int, counts.split())
    assert assets >= 3 and jobs >= 1 and sensors >= 1, counts
    assert loaded == "", f"definitions imported {loaded}"
    # what a run does brings them in when it runs: the checks' evaluations load numpy and the
    # database drivers (pandas only with a frame, tests/test_dagster_ingest.py)
    run = python(
        "import sys; import ccxt_questdb_assets.defs.check_evaluations; "
        f"print(','.join(m for m in {DATA_LIBRARIES!r} if m in sys.modules))"
    )
    assert run.stdout.strip() == "numpy,psycopg,questdb", run.stderr[-2000:]


def test_a_deployment_refuses_to_load_without_its_project_file(tmp_path):
    """The deployment's definitions never fall back to the embedded default (a localhost emulator)."""
    env = {k: v for k, v in os.environ.items() if k != ENV_PROJECT}
    refused = python("import ccxt_questdb_assets.defs.deployment", env=env)
    assert refused.returncode != 0
    assert f"ConfigError: {ENV_PROJECT} is not set" in refused.stderr, refused.stderr[-2000:]
    project = tmp_path / "project.yaml"
    project.write_text("exchanges:\n  okx:\n    symbols: [ETH/USDT]\n")
    code = (
        "from ccxt_questdb_assets.defs.deployment import defs; "
        "print(sorted(k.to_user_string() for k in defs.resolve_all_asset_keys()))"
    )
    loaded = python(code, env={**env, ENV_PROJECT: str(project)})
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip() == "['okx/ohlcv/ohlcv_1m']"


def test_the_job_snapshot_is_the_same_in_every_process():
    """A run launched by one code-server process is re-executed by another without Dagster's
    'the loaded version may differ' warning."""
    ids = {python(SNAPSHOT).stdout.strip() for _ in range(3)}
    assert len(ids) == 1 and len(next(iter(ids))) == 40, ids


def test_the_catalog_groups_by_exchange_and_data_type_and_names_each_asset():
    from ccxt_questdb_assets.defs.definitions import defs

    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    assert set(specs) == {
        AssetKey(["binance", "ohlcv", "ohlcv_1m"]),
        AssetKey(["binance", "ohlcv", "ohlcv_1h_resampled"]),
        AssetKey(["binance", "ohlcv", "trade_bars_1m"]),
        AssetKey(["binance", "trades"]),
        AssetKey(["okx", "ohlcv", "ohlcv_1m"]),
    }
    for exchange in ("binance", "okx"):  # a group's lineage graph shows a node by its key's last part
        labels = [key.path[-1] for key in specs if key.path[0] == exchange]
        assert len(set(labels)) == len(labels)
    for key, spec in specs.items():
        assert spec.group_name == key.path[0] and spec.tags["exchange"] == key.path[0]
        assert spec.tags["data_type"] == key.path[1] and "questdb" in spec.kinds
        assert spec.tags["source"] == ("exchange" if key.path[-1] in ("ohlcv_1m", "trades") else "questdb")
        assert spec.metadata["questdb/coverage_table"].endswith("_coverage")
        assert spec.metadata["dagster/code_references"].code_references, key
        assert spec.metadata["questdb/coverage_table"] in spec.description
        assert isinstance(spec.freshness_policy, FreshnessPolicy)
        follows = spec.automation_condition is not None
        assert follows == (spec.tags["source"] == "questdb"), key
    checks = {(k.asset_key.path[-1], k.name) for k in defs.resolve_asset_graph().asset_check_keys}
    assert checks == {
        (a, c)
        for a in ("ohlcv_1m", "ohlcv_1h_resampled", "trade_bars_1m")
        for c in ("no_gaps", "unique_increasing_timestamps", "ohlc_sanity")
    } | {("trade_bars_1m", "agrees_with_exchange_candles")}
    assert defs.resolve_sensor_def("follow_upstream").default_status == DefaultSensorStatus.RUNNING
