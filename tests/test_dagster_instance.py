"""The instance configs the project ships and documents load in Dagster as written."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from dagster import DagsterInstance

from ccxt_questdb_assets.instance_home import PROJECT_DAGSTER_YAML, prepare_dagster_home

ROOT = Path(__file__).resolve().parents[1]


def load_instance(config: dict, home: Path) -> DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return DagsterInstance.from_config(str(home))


def test_the_project_instance_config_loads_with_its_limits(tmp_path):
    """The top-level ``dagster.yaml`` is what ``ccxt-questdb demo`` and ``ccxt-questdb dev`` use."""
    assert PROJECT_DAGSTER_YAML == ROOT / "dagster.yaml"
    written = yaml.safe_load(PROJECT_DAGSTER_YAML.read_text())
    home = prepare_dagster_home({"DAGSTER_HOME": str(tmp_path / "home")})
    assert (home / "dagster.yaml").resolve() == PROJECT_DAGSTER_YAML
    with DagsterInstance.from_config(str(home)) as instance:
        coordinator = instance.run_coordinator
        assert type(coordinator).__name__ == "QueuedRunCoordinator"
        assert coordinator.dequeue_interval_seconds == 1
        assert coordinator.dequeue_use_threads is True
        runs = instance.get_concurrency_config().run_queue_config
        assert runs.max_concurrent_runs == written["concurrency"]["runs"]["max_concurrent_runs"] == 4
        assert runs.tag_concurrency_limits == written["concurrency"]["runs"]["tag_concurrency_limits"]
        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == written["concurrency"]["pools"]["default_limit"] == 2
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
        assert instance.code_server_process_startup_timeout >= 300
        assert not instance.nux_enabled
        assert instance.get_settings("telemetry") == {"enabled": False}


def test_the_local_home_links_the_project_config_and_a_home_of_your_own_keeps_its_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local = prepare_dagster_home({})
    assert local == tmp_path / "dagster_home"
    link = local / "dagster.yaml"
    assert link.is_symlink() and link.resolve() == PROJECT_DAGSTER_YAML
    assert prepare_dagster_home({}) == local  # again: nothing changes

    link.unlink()
    link.symlink_to(tmp_path / "moved" / "dagster.yaml")  # dangling: the checkout moved
    prepare_dagster_home({})
    assert link.resolve() == PROJECT_DAGSTER_YAML

    own = tmp_path / "own"
    own.mkdir()
    (own / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    assert prepare_dagster_home({"DAGSTER_HOME": str(own)}) == own
    assert not (own / "dagster.yaml").is_symlink()
    assert os.listdir(own) == ["dagster.yaml"]


def test_the_deployment_instance_loads_as_documented_except_its_postgres_storage(tmp_path):
    """deploy/dagster.yaml (docs/operations.md): everything but the storage, which needs a Postgres
    server (tests/test_deployment.py starts one), loads here with the settings the docs give."""
    config = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    storage = config.pop("storage")["postgres"]["postgres_db"]
    assert storage["scheme"] == "postgresql+psycopg2"
    assert all(isinstance(storage[k], dict) and "env" in storage[k] for k in storage if k != "scheme")
    with load_instance(config, tmp_path / "home") as instance:
        assert type(instance.run_launcher).__name__ == "PlacingRunLauncher"
        assert instance.run_launcher.supports_check_run_worker_health
        assert instance.run_launcher.lost_after_seconds == 30
        concurrency = instance.get_concurrency_config()
        assert concurrency.run_queue_config.max_concurrent_runs == 8
        assert concurrency.pool_config.default_pool_limit == 2
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 10
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert type(instance.compute_log_manager).__name__ == "NoOpComputeLogManager"
        assert instance.get_settings("telemetry") == {"enabled": False}
