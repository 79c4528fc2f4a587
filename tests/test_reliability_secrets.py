"""Secrets never leave the process: not in logs, errors, reprs, Dagster's event log, run records or alerts.

Distinctive random values are set where the project reads secrets (exchange API key and secret
through ``api_key_env``/``secret_env``, ``CCXT_QUESTDB_PASSWORD``, the Redis DSN of the cluster rate
limiter, the alert webhook URL). A private QuestDB requires that password on PG wire and HTTP, and
the session Redis gets an ACL user with the Redis password, so the secrets are really used. Then a
library backfill through 500/503/429/418/dropped connections, a bad symbol, exhausted retries and
wrong QuestDB/Redis passwords, at DEBUG everywhere; a Dagster run that succeeds and two that fail,
and the run-failure sensor's webhook. Everything written anywhere is searched for every secret, raw
and encoded.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pandas as pd
import pytest
import redis
import yaml
from dagster import AssetKey, build_sensor_context, instance_for_test
from dagster._serdes import serialize_value

from ccxt_questdb_assets.core.errors import CcxtQuestDBError
from ccxt_questdb_assets.defs.alerts import DEFAULT_WEBHOOK_ENV
from ccxt_questdb_assets.defs.build import build_definitions, build_resources
from ccxt_questdb_assets.defs.io_manager import QuestDBIOManager
from ccxt_questdb_assets.defs.project_config import ProjectConfig
from ccxt_questdb_assets.defs.questdb_resource import QuestDBResource
from ccxt_questdb_assets.defs.rate_limiter_resource import RateLimiterResource
from ccxt_questdb_assets.exchange.client import clear_markets_cache
from ccxt_questdb_assets.history.ccxt_provider import CcxtQuestDBProvider
from ccxt_questdb_assets.history.config import ProviderConfig
from ccxt_questdb_assets.ratelimit import get_rate_limiter, reset_registry
from ccxt_questdb_assets.services.questdb_server import QuestDBServer
from ccxt_questdb_assets.storage.client import QuestDBClient
from ccxt_questdb_assets.storage.connection import ENV_PASSWORD
from ccxt_questdb_assets.testing.webhook import WebhookReceiver

KEY_ENV, SECRET_ENV, REDIS_ENV = "TEST_SECRETS_API_KEY", "TEST_SECRETS_API_SECRET", "CCXT_QUESTDB_RATE_LIMITER_REDIS"
DAY = ("2024-03-01", 1709251200, 1709337600)  # partition date, start and end (epoch s)
LOGGERS = ("", "ccxt", "ccxt_questdb_assets", "urllib3", "aiohttp", "asyncio", "psycopg", "redis", "dagster", "questdb")


def _secret(tag: str) -> str:
    # characters that URL-encoding, DSN quoting and ILP escaping all change
    return f"{tag}-{uuid.uuid4().hex[:12]}/+@:%!{uuid.uuid4().hex[:8]}"


QDB_PASSWORD = _secret("qdbpw")


@pytest.fixture(scope="module")
def secured_questdb(tmp_path_factory) -> Iterator[QuestDBServer]:
    """A private QuestDB that accepts only ``QDB_PASSWORD`` on PG wire and HTTP (ILP, REST)."""
    server = QuestDBServer(
        tmp_path_factory.mktemp("secured-questdb"),
        extra_env={"QDB_PG_PASSWORD": QDB_PASSWORD, "QDB_HTTP_USER": "admin", "QDB_HTTP_PASSWORD": QDB_PASSWORD},
    )
    try:
        server.start()
    except CcxtQuestDBError as exc:
        pytest.fail(f"a password-protected QuestDB could not start: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def secrets(redis_server, redis_url, monkeypatch, secured_questdb) -> Iterator[dict[str, str]]:
    """Every secret the project reads, set in the environment; a Redis ACL user owns the Redis one."""
    values = {
        KEY_ENV: _secret("apikey"),
        SECRET_ENV: _secret("apisecret"),
        "redis": _secret("redispw"),
        ENV_PASSWORD: QDB_PASSWORD,
        "wrong_qdb": _secret("wrongqdb"),
        "wrong_redis": _secret("wrongredis"),
        "webhook_token": uuid.uuid4().hex + uuid.uuid4().hex[:8],
    }
    user = "secrets_" + uuid.uuid4().hex[:6]
    admin = redis.Redis.from_url(redis_url)
    admin.execute_command("ACL", "SETUSER", user, "on", f">{values['redis']}", "~*", "&*", "+@all")
    host, port = redis_server.host, redis_server.port
    values["redis_dsn"] = f"redis://{user}:{quote(values['redis'], safe='')}@{host}:{port}/0"
    values["wrong_redis_dsn"] = f"redis://{user}:{quote(values['wrong_redis'], safe='')}@{host}:{port}/0"
    for name in (KEY_ENV, SECRET_ENV, ENV_PASSWORD):
        monkeypatch.setenv(name, values[name])
    monkeypatch.setenv(REDIS_ENV, values["redis_dsn"])
    clear_markets_cache()
    reset_registry()
    try:
        yield values
    finally:
        reset_registry()
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


def forms(values: dict[str, str]) -> dict[str, str]:
    """Each secret raw, URL-encoded (path and form styles) and base64 (HTTP basic auth) -> its name."""
    out: dict[str, str] = {}
    for name, value in values.items():
        if name.endswith("_dsn"):
            continue
        for form in (
            value,
            quote(value, safe=""),
            quote(value),
            quote_plus(value),
            base64.b64encode(value.encode()).decode(),
            base64.b64encode(f"admin:{value}".encode()).decode(),
        ):
            out[form] = name
    return out


def leaked(text: str, values: dict[str, str]) -> list[str]:
    return sorted({name for form, name in forms(values).items() if form in text})


def assert_clean(where: str, text: str, values: dict[str, str]) -> None:
    leaks = leaked(text, values)
    assert not leaks, f"{where} carries the secret(s) {leaks}"


def test_the_scan_finds_every_form_of_a_secret():
    values = {"pw": _secret("probe")}
    for shown in (
        values["pw"],
        quote(values["pw"], safe=""),
        quote_plus(values["pw"]),
        f"Authorization: Basic {base64.b64encode(('admin:' + values['pw']).encode()).decode()}",
    ):
        assert leaked(f"before {shown} after", values) == ["pw"]
    assert leaked("postgresql://admin:***@h:8812/qdb", values) == []


def errors_text(excs: list[BaseException]) -> str:
    return "\n".join(f"{e}\n{e!r}\n{''.join(traceback.format_exception(e))}" for e in excs)


def provider_mapping(server: QuestDBServer, emulator, prefix: str, **extra) -> dict:
    conn = server.connection
    return {
        "exchange": "binance",
        "symbols": ["BTC/USDT"],
        "timeframe": "1m",
        "base_url": emulator.base_url,
        "questdb": {"host": conn.host, "port": conn.port, "http_port": conn.http_port, "table_prefix": prefix},
        "rate_limiter": {"scope": "cluster", "max_concurrency": 2, "penalty_backoff_ms": 200},
        "api_key_env": KEY_ENV,
        "secret_env": SECRET_ENV,
        "max_retries": 6,
        "retry_backoff_s": 0.01,
        **extra,
    }


def backfill(mapping: dict) -> object:
    async def run():
        provider = CcxtQuestDBProvider.from_config(mapping)
        try:
            return await provider.ensure_range(DAY[1], DAY[2], node_id="ohlcv:binance:BTC/USDT:1m")
        finally:
            await provider.close()

    return asyncio.run(run())


def test_library_errors_logs_and_reprs_carry_no_secret(
    secrets, secured_questdb, emulator, emulator_control, caplog, capfd, monkeypatch
):
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    prefix = "sec_" + uuid.uuid4().hex[:8]
    mapping = provider_mapping(secured_questdb, emulator, prefix)
    caught: list[BaseException] = []

    # a backfill through server errors, rate limits, a ban and a dropped connection: it recovers
    for kind in ("500", "503", "429", "418", "drop_connection", "drop_connection"):
        emulator_control.inject(kind, 1, path="/api/v3/klines", retry_after=1 if kind in ("429", "418") else None)
    report = backfill(mapping)
    assert report.rows_written == 1440
    served = {r["fault"] for r in emulator_control.requests("/api/v3/klines") if r["fault"]}
    assert served == {"500", "503", "429", "418", "drop_connection"}
    with QuestDBClient(secured_questdb.connection.with_(password=QDB_PASSWORD)) as client:
        assert client.query(f"SELECT count() FROM {prefix}_ohlcv") == [(1440,)]

    # permanent and exhausted errors
    for broken, faults in (
        ({"symbols": ["NOPE/USDT"]}, ()),
        ({"max_retries": 1}, ("500", "500", "500")),
        ({"max_retries": 1}, ("418", "418")),
    ):
        emulator_control.clear_faults()
        for kind in faults:
            emulator_control.inject(kind, 1, path="/api/v3/klines", retry_after=1 if kind == "418" else None)
        with pytest.raises(CcxtQuestDBError) as info:
            backfill({**mapping, **broken, "questdb": {**mapping["questdb"], "table_prefix": prefix + "_b"}})
        caught.append(info.value)
    assert "NOPE/USDT" in str(caught[0]) and "after 2 attempts" in str(caught[1]) and "DDoSProtection" in str(caught[2])

    # a wrong QuestDB password (PG wire and ILP over HTTP), a wrong Redis password
    monkeypatch.setenv(ENV_PASSWORD, secrets["wrong_qdb"])
    emulator_control.clear_faults()
    with pytest.raises(Exception) as info:
        backfill({**mapping, "questdb": {**mapping["questdb"], "table_prefix": prefix + "_w"}})
    caught.append(info.value)
    wrong = ProviderConfig.from_mapping(mapping).connection
    assert wrong.password == secrets["wrong_qdb"]
    for attempt in (
        lambda c: c.query("SELECT 1"),
        lambda c: c.write_frame(
            prefix + "_x", pd.DataFrame({"ts": pd.to_datetime([0], utc=True), "v": [1.0]}), symbols=()
        ),
    ):
        with QuestDBClient(wrong) as client, pytest.raises(Exception) as info:
            attempt(client)
        caught.append(info.value)
    monkeypatch.setenv(ENV_PASSWORD, QDB_PASSWORD)
    for on_error in ("raise", "fallback"):
        limiter = get_rate_limiter(
            {
                "scope": "cluster",
                "redis_dsn": secrets["wrong_redis_dsn"],
                "on_redis_error": on_error,
                "key_suffix": on_error,
            },
            "binance",
        )

        async def take(lim=limiter):
            async with lim.acquire():
                pass

        if on_error == "raise":
            with pytest.raises(CcxtQuestDBError, match="AuthenticationError") as info:
                asyncio.run(take())
            caught.append(info.value)
        else:
            asyncio.run(take())  # falls back to the in-process limiter, with a warning naming the cause
            assert "AuthenticationError" in caplog.text and "redis://secrets_" in caplog.text
    # two budgets for one key: the conflict names both Redis DSNs, redacted
    with pytest.raises(CcxtQuestDBError) as info:
        get_rate_limiter(
            {
                "scope": "cluster",
                "redis_dsn": secrets["wrong_redis_dsn"],
                "on_redis_error": "fallback",
                "key_suffix": "raise",
            },
            "binance",
        )
    caught.append(info.value)

    # configs and resources as shown to a user
    cfg = ProviderConfig.from_mapping(mapping)
    project = ProjectConfig.from_mapping(project_mapping(secured_questdb, emulator, prefix))
    resolved = QuestDBResource(host="127.0.0.1", password=QDB_PASSWORD)  # as inside a run, EnvVar resolved
    limiter_resource = RateLimiterResource(scope="cluster", redis_dsn=secrets["redis_dsn"])
    shown = [
        cfg,
        cfg.backfill,
        cfg.backfill.rate_limiter,
        cfg.connection,
        project,
        build_resources(project),
        resolved,
        limiter_resource,
        QuestDBIOManager(questdb=resolved),
        limiter_resource.to_config(),
        get_rate_limiter(cfg.backfill.rate_limiter, "binance"),
        QuestDBClient(cfg.connection),
        secured_questdb,
        secured_questdb.settings,
    ]
    text = "\n".join(f"{o!r}\n{o}" for o in shown) + str(cfg.backfill.rate_limiter.to_mapping())
    assert_clean("reprs and strs of configs and resources", text, secrets)
    assert "***" in repr(cfg.connection) and "password='***'" in repr(resolved) and ":***@" in str(limiter_resource)
    assert_clean("exception texts and tracebacks", errors_text(caught), secrets)
    out, err = capfd.readouterr()
    assert_clean("stdout/stderr", out + err, secrets)
    assert_clean("Python logging at DEBUG", caplog.text + "\n".join(repr(r.args) for r in caplog.records), secrets)
    assert any(r.name.startswith("ccxt") for r in caplog.records) and len(caplog.records) > 20


def project_mapping(server: QuestDBServer, emulator, prefix: str) -> dict:
    conn = server.connection
    return {
        "start_date": "2024-01-01",
        "questdb": {"host": conn.host, "port": conn.port, "http_port": conn.http_port, "table_prefix": prefix},
        "rate_limiter": {"scope": "cluster", "max_concurrency": 2},
        "alerts": {"webhook_url_env": DEFAULT_WEBHOOK_ENV},
        "exchanges": {
            "binance": {
                "base_url": emulator.base_url,
                "symbols": ["BTC/USDT"],
                "timeframes": ["1m"],
                "api_key_env": KEY_ENV,
                "secret_env": SECRET_ENV,
                "retry_backoff_s": 0.01,
            }
        },
    }


def test_dagster_runs_events_and_alerts_carry_no_secret(
    secrets, secured_questdb, emulator, emulator_control, caplog, capfd, monkeypatch, tmp_path
):
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    receiver = WebhookReceiver()
    webhook = f"{receiver.url}/services/T0/B0/{secrets['webhook_token']}"
    monkeypatch.setenv(DEFAULT_WEBHOOK_ENV, webhook)
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(project_mapping(secured_questdb, emulator, "secd_" + uuid.uuid4().hex[:8])))
    monkeypatch.setenv("CCXT_QUESTDB_PROJECT", str(path))
    home = tmp_path / "dagster"
    home.mkdir()
    try:
        with instance_for_test(temp_dir=str(home)) as instance:
            instance.add_dynamic_partitions("binance_symbols", ["BTC/USDT", "NOPE/USDT"])
            defs = build_definitions(ProjectConfig.load(path))
            job = defs.resolve_job_def("binance_ingest")
            sensor = defs.resolve_sensor_def("run_failure_webhook")

            def tick(cursor):
                return sensor.evaluate_tick(
                    build_sensor_context(instance=instance, cursor=cursor, repository_def=defs.get_repository_def())
                )

            cursor = tick(None).cursor
            partition = f"{DAY[0]}|BTC/USDT"
            only_candles = [AssetKey(["binance", "ohlcv", "ohlcv_1m"])]
            ok = job.execute_in_process(
                instance=instance, partition_key=partition, asset_selection=only_candles, tags={"team": "data"}
            )
            assert ok.success
            md = ok.asset_materializations_for_node(only_candles[0].to_python_identifier())[0].metadata
            assert md["rows_written"].value == 1440
            bad_symbol = job.execute_in_process(
                instance=instance,
                partition_key=f"{DAY[0]}|NOPE/USDT",
                asset_selection=only_candles,
                raise_on_error=False,
            )
            monkeypatch.setenv(ENV_PASSWORD, secrets["wrong_qdb"])
            bad_password = job.execute_in_process(
                instance=instance,
                partition_key="2024-03-02|BTC/USDT",
                asset_selection=only_candles,
                raise_on_error=False,
            )
            monkeypatch.setenv(ENV_PASSWORD, QDB_PASSWORD)
            assert not bad_symbol.success and not bad_password.success
            cursor = tick(cursor).cursor
            assert len(receiver.posts) == 2
            bodies = "\n".join(p["body"] for p in receiver.posts)
            assert bad_symbol.run_id in bodies and bad_password.run_id in bodies
            assert "NOPE/USDT" in bodies and "invalid username/password" in bodies

            # the webhook down: logged by host only
            receiver.close()
            job.execute_in_process(
                instance=instance,
                partition_key=f"{DAY[0]}|NOPE/USDT",
                asset_selection=only_candles,
                raise_on_error=False,
            )
            tick(cursor)

            runs = [ok, bad_symbol, bad_password]
            events = "\n".join(serialize_value(e) for r in runs for e in instance.all_logs(r.run_id))
            records = "\n".join(serialize_value(instance.get_run_by_id(r.run_id)) for r in runs)
            assert "invalid username/password" in events and "NOPE/USDT" in events and "rows_written" in events
            assert_clean("Dagster event log", events, secrets)
            assert_clean("Dagster run records (config, tags)", records, secrets)
            assert_clean("run-failure webhook payloads", bodies, secrets)
            assert_clean("materialization metadata", serialize_value(md), secrets)
            assert_clean("definitions' resources", repr(defs.resources) + str(defs.resources), secrets)
        stored = b"".join(p.read_bytes() for p in Path(home).rglob("*") if p.is_file())
        assert_clean("files of the Dagster instance", stored.decode("latin-1"), secrets)
    finally:
        receiver.close()
    out, err = capfd.readouterr()
    assert_clean("stdout/stderr", out + err, secrets)
    assert_clean("Python logging at DEBUG", caplog.text + "\n".join(repr(r.args) for r in caplog.records), secrets)
    assert os.environ[DEFAULT_WEBHOOK_ENV] == webhook  # the secret really was in play
