"""Automation through real Dagster, real QuestDB, real ccxt and the exchange emulator: the refresh
schedule, the symbols/listings sensor and the run-failure webhook sensor. (The refresh ticking in a
real daemon, and the computed assets following their upstream: tests/test_dagster_webserver.py.)"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
import yaml
from dagster import (
    AddDynamicPartitionsRequest,
    AssetKey,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
    job,
    op,
)

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.defs.alerts import redact_text, secret_values
from ccxt_questdb_assets.defs.automation import build_automation
from ccxt_questdb_assets.defs.build import build_resources
from ccxt_questdb_assets.defs.ingest_assets import build_ingest_assets
from ccxt_questdb_assets.defs.listings import sync_symbol_partitions
from ccxt_questdb_assets.defs.project_config import ProjectConfig
from ccxt_questdb_assets.exchange.client import build_exchange, load_markets_cached
from ccxt_questdb_assets.testing.webhook import WebhookReceiver

INFO = "/api/v3/exchangeInfo"
UTC = UTC
API_KEY_ENV, SECRET_ENV = "TEST_AUTOMATION_BINANCE_KEY", "TEST_AUTOMATION_BINANCE_SECRET"


def project_mapping(questdb, emulator, prefix: str, refresh: dict | None = None, **exchange) -> dict:
    conn = questdb.connection
    return {
        **({"refresh": refresh} if refresh else {}),
        "start_date": "2024-01-01",
        "questdb": {"host": conn.host, "port": conn.port, "http_port": conn.http_port, "table_prefix": prefix},
        "rate_limiter": {"scope": "local", "max_concurrency": 2},
        "alerts": {"webhook_url_env": "TEST_AUTOMATION_WEBHOOK"},
        "exchanges": {
            "binance": {
                "base_url": emulator.base_url,
                "symbols": ["BTC/USDT", "ETH/USDT"],
                "timeframes": ["1m"],
                "trades": True,
                "retry_backoff_s": 0.01,
                **exchange,
            }
        },
    }


def load_project(questdb, emulator, tmp_path, refresh: dict | None = None, **exchange) -> ProjectConfig:
    path = tmp_path / f"project-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(
        yaml.safe_dump(project_mapping(questdb, emulator, "a_" + uuid.uuid4().hex[:10], refresh, **exchange))
    )
    return ProjectConfig.load(path)


def build_defs(project: ProjectConfig, *, jobs=()) -> Definitions:
    assets = build_ingest_assets(project)
    auto = build_automation(project, assets)
    return Definitions(
        assets=assets,
        resources=build_resources(project),
        jobs=[*auto["jobs"], *jobs],
        schedules=auto["schedules"],
        sensors=auto["sensors"],
    )


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as inst:  # persistent: schedules need it
        yield inst


def partitions(instance) -> list[str]:
    return sorted(instance.get_dynamic_partitions("binance_symbols"))


def apply_partition_requests(instance, data) -> None:
    """What the sensor daemon does with a tick's dynamic partition requests."""
    for request in data.dynamic_partitions_requests:
        assert isinstance(request, AddDynamicPartitionsRequest)
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))


# ----------------------------------------------------------------------------- refresh schedule
CANDLES = AssetKey(["binance", "ohlcv", "ohlcv_1m"])


def test_refresh_schedule_runs_today_per_symbol_and_yesterday_too_in_the_first_hour(
    questdb, emulator, emulator_control, instance, tmp_path
):
    project = load_project(questdb, emulator, tmp_path)
    defs = build_defs(project)
    sched = defs.resolve_schedule_def("binance_refresh")
    assert sched.cron_schedule == "*/5 * * * *" and sched.execution_timezone == "UTC"
    assert sched.job_name == "binance_ingest" and sched.default_status == DefaultScheduleStatus.STOPPED
    on = build_defs(load_project(questdb, emulator, tmp_path, refresh={"cron": "* * * * *", "running": True}))
    assert on.resolve_schedule_def("binance_refresh").cron_schedule == "* * * * *"
    assert on.resolve_schedule_def("binance_refresh").default_status == DefaultScheduleStatus.RUNNING

    def tick(*when):
        ctx = build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime(*when, tzinfo=UTC),
            repository_def=defs.get_repository_def(),
        )
        return sched.evaluate_tick(ctx)

    empty = tick(2024, 3, 1, 0, 5)
    assert empty.run_requests == [] and "no symbols" in empty.skip_message

    def days(request) -> tuple[str, str]:
        if request.partition_key:
            return (request.partition_key, request.partition_key)
        return (request.tags["dagster/asset_partition_range_start"], request.tags["dagster/asset_partition_range_end"])

    instance.add_dynamic_partitions("binance_symbols", ["ETH/USDT", "BTC/USDT"])
    first_hour = tick(2024, 3, 1, 0, 5)  # one run per symbol over yesterday (just closed) and today
    assert [days(r) for r in first_hour.run_requests] == [
        ("2024-02-29|BTC/USDT", "2024-03-01|BTC/USDT"),
        ("2024-02-29|ETH/USDT", "2024-03-01|ETH/USDT"),
    ]
    assert all(r.tags["ccxt_questdb/trigger"] == "refresh" for r in first_hour.run_requests)
    run_keys = [r.run_key for r in first_hour.run_requests]
    assert len(set(run_keys)) == 2
    # the same tick evaluated again asks for the same run keys (Dagster launches a run key once)
    assert [r.run_key for r in tick(2024, 3, 1, 0, 5).run_requests] == run_keys

    later = tick(2024, 3, 1, 13, 5)
    assert [r.partition_key for r in later.run_requests] == ["2024-03-01|BTC/USDT", "2024-03-01|ETH/USDT"]
    for r in later.run_requests:
        assert r.tags["dagster/partition"] == r.partition_key
    assert not set(r.run_key for r in later.run_requests) & set(run_keys)  # the next tick runs again
    # the first day of the partitions has no yesterday
    assert [r.partition_key for r in tick(2024, 1, 1, 0, 5).run_requests] == [
        "2024-01-01|BTC/USDT",
        "2024-01-01|ETH/USDT",
    ]

    # a requested run is runnable as is: yesterday's (closed) day and today's of BTC/USDT in one run of
    # the job (candles only, to keep the test short; the trades asset takes the same partitions)
    request = first_hour.run_requests[0]
    ingest = defs.resolve_job_def("binance_ingest")
    selected = {k.to_user_string() for k in ingest.asset_layer.selected_asset_keys}
    assert selected == {"binance/ohlcv/ohlcv_1m", "binance/trades"}
    yesterday = tick(2024, 3, 2, 0, 5).run_requests[0]  # a closed day before a day that has closed too
    result = ingest.execute_in_process(instance=instance, tags=yesterday.tags, asset_selection=[CANDLES])
    assert result.success
    events = result.asset_materializations_for_node(CANDLES.to_python_identifier())
    assert sorted((e.partition, e.metadata["dagster/row_count"].value) for e in events) == [
        ("2024-03-01|BTC/USDT", 1440),
        ("2024-03-02|BTC/USDT", 1440),
    ]
    assert len(emulator_control.requests("/api/v3/klines")) == 3  # ceil(2880 / 1000)
    assert request.run_key.startswith("BTC/USDT@")


# ----------------------------------------------------------------------------- symbols sensor


def test_symbols_sensor_adds_config_symbols_then_only_new_matching_active_listings(
    questdb, emulator, emulator_control, instance, tmp_path
):
    project = load_project(questdb, emulator, tmp_path, listing_pattern="*/USDT")
    defs = build_defs(project)
    sensor = defs.resolve_sensor_def("binance_symbols")
    assert sensor.default_status == DefaultSensorStatus.RUNNING and sensor.minimum_interval_seconds == 300

    def tick(cursor):
        data = sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=cursor))
        apply_partition_requests(instance, data)
        return data

    # exchange down at the first tick: the config's symbols are still added, no baseline yet
    emulator_control.inject("500", count=100, path=INFO)
    first = tick(None)
    assert [(r.partitions_def_name, list(r.partition_keys)) for r in first.dynamic_partitions_requests] == [
        ("binance_symbols", ["BTC/USDT", "ETH/USDT"])
    ]
    assert first.cursor is None and partitions(instance) == ["BTC/USDT", "ETH/USDT"]
    with pytest.raises(Exception, match="load_markets"):  # nothing else to add: the tick fails visibly
        tick(first.cursor)
    emulator_control.clear_faults()
    emulator_control.clear_requests()

    baseline = tick(first.cursor)  # markets existing now are the baseline: SOL/USDT matches but is not new
    assert baseline.dynamic_partitions_requests == [] and "no new binance symbols" in baseline.skip_message
    assert json.loads(baseline.cursor)["known"] == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    quiet = tick(baseline.cursor)
    assert quiet.dynamic_partitions_requests == [] and quiet.cursor is not None
    assert len(emulator_control.requests(INFO)) == 2  # one fresh markets load per tick, not the process cache

    # this process has cached markets without the new listing
    load_markets_cached(build_exchange("binance", base_url=emulator.base_url, async_=False))
    emulator_control.list_market("NEW", "USDT")
    emulator_control.list_market("NEW", "BTC")  # does not match */USDT
    emulator_control.list_market("HALT", "USDT", status="BREAK")  # matches, not active
    listed = tick(quiet.cursor)
    assert [list(r.partition_keys) for r in listed.dynamic_partitions_requests] == [["NEW/USDT"]]
    assert partitions(instance) == ["BTC/USDT", "ETH/USDT", "NEW/USDT"]
    assert tick(listed.cursor).dynamic_partitions_requests == []

    # the new symbol's open day materializes in this process (the sensor refreshed the markets cache)
    today = datetime.now(UTC).date().isoformat()
    result = defs.resolve_job_def("binance_ingest").execute_in_process(
        instance=instance, partition_key=f"{today}|NEW/USDT", asset_selection=[CANDLES]
    )
    assert result.success
    assert emulator_control.requests("/api/v3/klines")[-1]["params"]["symbol"] == "NEWUSDT"


def test_symbols_sensor_without_pattern_asks_the_exchange_nothing_and_sync_adds_at_once(
    questdb, emulator, emulator_control, instance, tmp_path
):
    project = load_project(questdb, emulator, tmp_path, symbols=["BTC/USDT", "SOL/USDT"])
    sensor = build_defs(project).resolve_sensor_def("binance_symbols")
    instance.add_dynamic_partitions("binance_symbols", ["BTC/USDT"])
    data = sensor.evaluate_tick(build_sensor_context(instance=instance))
    assert [list(r.partition_keys) for r in data.dynamic_partitions_requests] == [["SOL/USDT"]]
    assert emulator_control.requests() == []

    assert sync_symbol_partitions(instance, project) == ["binance:SOL/USDT"]
    assert partitions(instance) == ["BTC/USDT", "SOL/USDT"]
    assert sync_symbol_partitions(instance, project) == []
    assert sensor.evaluate_tick(build_sensor_context(instance=instance)).dynamic_partitions_requests == []


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("BTCUSDT*", "has no '/'"),
        ("[z-a]/USDT", "empty character range"),
        ("[BE*/USDT", "unclosed"),
        ("*/USDT,*/BTC", "'|' or ','"),
    ],
)
def test_bad_listing_pattern_fails_at_load_with_a_clear_error(questdb, emulator, tmp_path, pattern, message):
    project = load_project(questdb, emulator, tmp_path, listing_pattern=pattern)
    with pytest.raises(ConfigError, match=rf"exchanges\.binance\.listing_pattern .*{message}"):
        build_automation(project, build_ingest_assets(project))


# ----------------------------------------------------------------------------- failure webhook


@pytest.fixture
def receiver():
    r = WebhookReceiver()
    yield r
    r.close()


def test_failure_sensor_posts_one_redacted_slack_message_per_failed_run(
    questdb, emulator, emulator_control, instance, tmp_path, receiver, monkeypatch
):
    secrets = {
        API_KEY_ENV: "ak-" + uuid.uuid4().hex,
        SECRET_ENV: "sk-" + uuid.uuid4().hex,
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    project = load_project(questdb, emulator, tmp_path, api_key_env=API_KEY_ENV, secret_env=SECRET_ENV)

    @op
    def open_database():
        raise RuntimeError(
            f"cannot open postgresql://admin:{secrets['CCXT_QUESTDB_PASSWORD']}@db.internal:8812/qdb with key "
            f"{secrets[API_KEY_ENV]} (password={secrets['CCXT_QUESTDB_PASSWORD']})\nsecond line: never sent"
        )

    @job
    def leaky():
        open_database()

    defs = build_defs(project, jobs=[leaky])
    webhook = f"{receiver.url}/services/T0/B0/{uuid.uuid4().hex}"
    secrets["TEST_AUTOMATION_WEBHOOK"] = webhook
    monkeypatch.setenv("TEST_AUTOMATION_WEBHOOK", webhook)

    sensor = defs.resolve_sensor_def("run_failure_webhook")
    assert sensor.default_status == DefaultSensorStatus.RUNNING

    def tick(cursor):
        return sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=cursor))

    cursor = tick(None).cursor  # the first tick only marks where the sensor starts

    # a real run failing permanently: the exchange does not list the partition's symbol
    instance.add_dynamic_partitions("binance_symbols", ["NOPE/USDT"])
    failed = defs.resolve_job_def("binance_ingest").execute_in_process(
        instance=instance, partition_key="2024-03-01|NOPE/USDT", raise_on_error=False
    )
    assert not failed.success
    cursor = tick(cursor).cursor
    assert len(receiver.posts) == 1
    post = receiver.posts[0]
    assert post["path"] == webhook[len(receiver.url) :] and post["content_type"] == "application/json"
    payload = json.loads(post["body"])
    assert isinstance(payload["text"], str) and isinstance(payload["blocks"], list)
    assert [b["type"] for b in payload["blocks"]] == ["header", "section", "section", "context"]
    for needle in ("binance_ingest", failed.run_id, "2024-03-01|NOPE/USDT", "unknown symbol 'NOPE/USDT'"):
        assert needle in payload["text"]
    assert any(step in payload["text"] for step in ("binance__ohlcv__ohlcv_1m", "binance__trades"))
    assert failed.run_id in json.dumps(payload["blocks"])
    for value in secrets.values():
        assert value not in post["body"]

    assert tick(cursor).cursor and len(receiver.posts) == 1  # each failure is alerted once

    # from now on a QuestDB password is in the environment (runs of the project would read it: the
    # first run above needed the test server's own)
    secrets["CCXT_QUESTDB_PASSWORD"] = "pw-" + uuid.uuid4().hex
    monkeypatch.setenv("CCXT_QUESTDB_PASSWORD", secrets["CCXT_QUESTDB_PASSWORD"])

    # an error carrying secrets (DSN password, API key, key=value): redacted; the webhook's 500 is retried once
    receiver.statuses = [500]
    leaked = defs.resolve_job_def("leaky").execute_in_process(instance=instance, raise_on_error=False)
    assert not leaked.success
    cursor = tick(cursor).cursor
    assert len(receiver.posts) == 3 and receiver.posts[1]["body"] == receiver.posts[2]["body"]
    text = json.loads(receiver.posts[2]["body"])["text"]
    assert "postgresql://admin:***@db.internal:8812/qdb" in text and "password=***" in text
    assert "open_database" in text and leaked.run_id in text and "second line" not in text
    for value in secrets.values():
        assert value not in receiver.posts[2]["body"]

    # webhook unset: logged and skipped; webhook down: logged, the sensor goes on (no exception)
    monkeypatch.delenv("TEST_AUTOMATION_WEBHOOK")
    defs.resolve_job_def("leaky").execute_in_process(instance=instance, raise_on_error=False)
    cursor = tick(cursor).cursor
    receiver.close()
    monkeypatch.setenv("TEST_AUTOMATION_WEBHOOK", webhook)
    defs.resolve_job_def("leaky").execute_in_process(instance=instance, raise_on_error=False)
    after = tick(cursor)
    assert len(receiver.posts) == 3 and after.cursor != cursor


def test_redaction_of_free_text():
    env = {
        "CCXT_QUESTDB_PASSWORD": "hunter22",
        "MY_SERVICE_TOKEN": "tok-1234567890",
        "PLAIN": "visible-value",
        "SOME_SECRET_FLAG": "true",
    }
    values = secret_values(None, env)
    assert values == ["tok-1234567890", "hunter22"]
    text = redact_text(
        "redis://:hunter22@r:6379/0 and postgresql://u:p%40ss@h/qdb; apiKey: abc123 "
        "token=tok-1234567890 secret='s3' visible-value true",
        values,
    )
    assert text == (
        "redis://:***@r:6379/0 and postgresql://u:***@h/qdb; apiKey: *** token=*** secret='***' visible-value true"
    )
