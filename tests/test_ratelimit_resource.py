"""The Dagster resource: typed fields, EnvVar DSN, the very limiter object the library layer uses,
waits, 429s and tokens in the run log and the materialization metadata (real ``materialize`` with
an instance, real ccxt through ExchangeSession against the emulator), and the multiprocess
executor's step processes sharing one cluster budget."""

import asyncio
import logging
import os
import threading
import time
import uuid

import pytest
from dagster import (
    AssetExecutionContext,
    AssetKey,
    DagsterInstance,
    Definitions,
    EnvVar,
    asset,
    define_asset_job,
    execute_job,
    instance_for_test,
    materialize,
    multiprocess_executor,
)
from dagster._core.definitions.reconstruct import ReconstructableJob

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.defs.rate_limiter_resource import RateLimiterResource
from ccxt_questdb_assets.exchange.client import clear_markets_cache
from ccxt_questdb_assets.exchange.config import CcxtBackfillConfig
from ccxt_questdb_assets.exchange.fetchers import CcxtOHLCVFetcher
from ccxt_questdb_assets.exchange.session import ExchangeSession
from ccxt_questdb_assets.ratelimit import get_rate_limiter, reset_registry, track

KLINES = "/api/v3/klines"
SINCE_MS = 1_609_459_200_000  # 2021-01-01: closed history the emulator always has
ENV_EMULATOR, ENV_REDIS, ENV_SUFFIX = "RL_TEST_EMULATOR_URL", "RL_TEST_REDIS_URL", "RL_TEST_KEY_SUFFIX"


@pytest.fixture(autouse=True)
def _fresh_registry():
    reset_registry()
    yield
    reset_registry()


def metadata_values(materialization) -> dict:
    return {k: getattr(v, "value", getattr(v, "text", v)) for k, v in materialization.metadata.items()}


async def fetch_candles(session: ExchangeSession, n: int) -> None:
    for i in range(n):
        await session.call("fetch_ohlcv", "BTC/USDT", "1m", since=SINCE_MS + i * 300_000, limit=5)


def test_fields_map_to_the_library_config():
    res = RateLimiterResource(scope="cluster", min_interval_s=1.2, burst=1, redis_dsn="redis://localhost:6379/0")
    cfg = res.to_config()
    assert cfg.scope == "cluster" and cfg.burst_tokens == 1 and cfg.min_interval_s == 1.2
    assert res.options() == {
        "scope": "cluster",
        "max_concurrency": 1,
        "min_interval_s": 1.2,
        "burst": 1.0,
        "penalty_backoff_ms": 1000,
        "redis_dsn": "redis://localhost:6379/0",
        "on_redis_error": "fallback",
        "redis_retry_s": 1.0,
        "redis_timeout_s": 1.0,
        "fallback_fraction": 1.0,
    }
    every = RateLimiterResource(
        scope="cluster",
        max_concurrency=4,
        min_interval_ms=50,
        tokens_per_interval=6000,
        interval_ms=60000,
        burst_tokens=300,
        local_semaphore=2,
        key_suffix="acct42",
        key_template="ccxt:{exchange}:{account?}",
        penalty_backoff_ms=2500,
        redis_dsn="redis://localhost:6379/0",
        endpoint_weights={"klines": 3},
    ).to_config()
    assert (every.concurrency, every.min_interval_s, every.tokens_per_interval, every.burst_tokens) == (
        2,
        0.05,
        6000,
        300,
    )
    assert (every.key_suffix, every.key_template, every.penalty_backoff_ms) == (
        "acct42",
        "ccxt:{exchange}:{account?}",
        2500,
    )
    with pytest.raises(ConfigError, match="scope"):
        RateLimiterResource(scope="clustr").to_config()
    with pytest.raises(ConfigError, match="unknown placeholder"):
        RateLimiterResource(key_template="ccxt:{exchnage}").to_config()


def test_redis_dsn_from_envvar_and_env_fallback(monkeypatch):
    monkeypatch.setenv("MY_REDIS", "redis://:pw@127.0.0.1:6390/0")
    monkeypatch.delenv("CCXT_QUESTDB_RATE_LIMITER_REDIS", raising=False)
    monkeypatch.delenv("QMTL_CCXT_RATE_LIMITER_REDIS", raising=False)

    @asset
    def probe(rate_limiter: RateLimiterResource):
        cfg = rate_limiter.to_config()
        assert cfg.redis_dsn == "redis://:pw@127.0.0.1:6390/0"
        assert "pw" not in repr(cfg)
        return 1

    res = RateLimiterResource(scope="cluster", redis_dsn=EnvVar("MY_REDIS"))
    assert materialize([probe], resources={"rate_limiter": res}).success

    monkeypatch.setenv("QMTL_CCXT_RATE_LIMITER_REDIS", "redis://127.0.0.1:6392/0")  # the spec's variable
    assert RateLimiterResource(scope="cluster").to_config().redis_dsn == "redis://127.0.0.1:6392/0"
    monkeypatch.setenv("CCXT_QUESTDB_RATE_LIMITER_REDIS", "redis://127.0.0.1:6391/0")  # this project's, first
    cfg = RateLimiterResource(scope="cluster").to_config()
    assert (cfg.redis_dsn, cfg.redis_dsn_source) == ("redis://127.0.0.1:6391/0", "$CCXT_QUESTDB_RATE_LIMITER_REDIS")


@pytest.mark.parametrize("scope", ["process", "cluster"])
def test_session_fetcher_and_resource_hold_the_very_same_limiter(scope, redis_url):
    extra = {"redis_dsn": redis_url, "key_suffix": uuid.uuid4().hex[:8]} if scope == "cluster" else {}
    res = RateLimiterResource(scope=scope, min_interval_s=0.5, **extra)
    cfg = CcxtBackfillConfig(exchange_id="binance", base_url="http://127.0.0.1:9", rate_limiter=res.to_config())
    session, fetcher = ExchangeSession(cfg), CcxtOHLCVFetcher(cfg)
    limiter = res.get_limiter("binance")
    assert session.limiter is limiter and fetcher.session.limiter is limiter
    assert get_rate_limiter(res.to_config(), "binance") is limiter
    assert limiter.scope == scope
    # local scope: every fetcher its own
    local = RateLimiterResource(scope="local", min_interval_s=0.5)
    lcfg = CcxtBackfillConfig(exchange_id="binance", base_url="http://127.0.0.1:9", rate_limiter=local.to_config())
    assert ExchangeSession(lcfg).limiter is not ExchangeSession(lcfg).limiter


def test_materialize_with_instance_429_in_run_log_and_counters_in_metadata(emulator, emulator_control):
    """A real asset materialization (with an instance) that fetches through the library's
    ExchangeSession; the emulator answers one 429 with Retry-After: 1."""
    clear_markets_cache()  # markets come from the emulator, through the limiter
    seen: dict = {}

    @asset
    def candles(context: AssetExecutionContext, rate_limiter: RateLimiterResource):
        with rate_limiter.track(context):
            cfg = CcxtBackfillConfig(
                exchange_id="binance", base_url=emulator.base_url, rate_limiter=rate_limiter.to_config(), max_retries=3
            )
            session = ExchangeSession(cfg)
            seen["same"] = session.limiter is rate_limiter.get_limiter("binance", context)

            async def run():
                try:
                    await session.markets()
                    emulator_control.inject("429", count=1, path=KLINES, retry_after=1)
                    await fetch_candles(session, 3)
                finally:
                    await session.close()

            asyncio.run(run())
            seen["candles"] = id(session.limiter)
        return 1

    @asset(deps=[candles])
    def more_candles(context: AssetExecutionContext, rate_limiter: RateLimiterResource):
        """A second step of the same run (in-process executor): the very same limiter object."""
        with rate_limiter.track(context):
            cfg = CcxtBackfillConfig(
                exchange_id="binance", base_url=emulator.base_url, rate_limiter=rate_limiter.to_config()
            )
            session = ExchangeSession(cfg)

            async def run():
                try:
                    await session.markets()  # from the process-wide cache: no request, no admission
                    await fetch_candles(session, 2)
                finally:
                    await session.close()

            asyncio.run(run())
            seen["more_candles"] = id(session.limiter)
        return 1

    # burst 20: the markets load (weight 20) empties the bucket, so the candles wait 50 ms each
    res = RateLimiterResource(tokens_per_interval=40, burst_tokens=20, penalty_backoff_ms=100, log_waits_over_s=0.02)
    with DagsterInstance.ephemeral() as instance:
        t0 = time.monotonic()
        result = materialize([candles, more_candles], resources={"rate_limiter": res}, instance=instance)
        elapsed = time.monotonic() - t0
        assert result.success
        records = instance.all_logs(result.run_id)
        event = instance.get_latest_materialization_event(AssetKey("candles"))
        more = instance.get_latest_materialization_event(AssetKey("more_candles"))
    assert seen["same"], "the session did not use the resource's limiter object"
    assert seen["candles"] == seen["more_candles"]  # two steps, one limiter
    log = emulator_control.requests()
    # exchangeInfo, the 429, the three candles, the second asset's two
    assert [r["status"] for r in log] == [200, 429, 200, 200, 200, 200, 200]
    warnings = [r.user_message for r in records if r.level == logging.WARNING]
    assert any("rate limiter ccxt:binance" in m and "429" in m and "pause 1.00 s" in m for m in warnings), warnings
    infos = "\n".join(r.user_message for r in records)
    assert "rate limiter ccxt:binance: wait 0.0" in infos  # waits over log_waits_over_s
    assert "rate limiter: 5 requests" in infos and "rate limiter: 2 requests" in infos
    md = metadata_values(event.asset_materialization)
    assert md["rate_limiter/requests"] == 5
    assert md["rate_limiter/tokens"] == 20 + 4 * 2  # exchangeInfo 20, klines 2 each (the 429'd one too)
    assert md["rate_limiter/penalties"] == 1
    assert md["rate_limiter/cooldown_s"] == pytest.approx(1.0)
    assert md["rate_limiter/waits"] >= 1 and md["rate_limiter/wait_s"] > 0
    assert md["rate_limiter/keys"] == "ccxt:binance" and md["rate_limiter/scope"] == "process"
    assert elapsed >= 1.0  # the retry waited for the Retry-After
    md2 = metadata_values(more.asset_materialization)
    assert (md2["rate_limiter/requests"], md2["rate_limiter/tokens"], md2["rate_limiter/penalties"]) == (2, 4, 0)


def test_track_counts_threads_started_with_a_copied_context():
    import contextvars

    lim = get_rate_limiter({"max_concurrency": 2}, "binance")
    with track() as scope:
        ctx = contextvars.copy_context()

        def work():
            with lim.acquire_sync():
                pass

        t = threading.Thread(target=ctx.run, args=(work,))
        t.start()
        t.join()
        with lim.acquire_sync(weight=3):
            pass
    assert scope.stats.requests == 2 and scope.stats.tokens == 4
    assert scope.keys == {"ccxt:binance"}


# ---------------------------------------------------------------------------- executors
def _step_asset(name: str):
    @asset(name=name)
    def step(context: AssetExecutionContext, rate_limiter: RateLimiterResource):
        with rate_limiter.track(context):
            cfg = CcxtBackfillConfig(
                exchange_id="binance", base_url=os.environ[ENV_EMULATOR], rate_limiter=rate_limiter.to_config()
            )
            session = ExchangeSession(cfg)

            async def run():
                try:
                    await session.markets()
                    await fetch_candles(session, 6)
                finally:
                    await session.close()

            asyncio.run(run())
            limiter = rate_limiter.get_limiter("binance")
            context.add_output_metadata({"pid": os.getpid(), "same": session.limiter is limiter})
        return 1

    return step


# Steps start from a fork server that imported the heavy modules once (not one import per step).
FORKSERVER = {
    "forkserver": {
        "preload_modules": [
            "dagster",
            "pytest",
            "ccxt.async_support",
            "ccxt_questdb_assets.exchange.fetchers",
            "ccxt_questdb_assets.defs.rate_limiter_resource",
        ]
    }
}


def executor_definitions() -> Definitions:
    """Two assets fetching through one cluster key (module level: the multiprocess executor's step
    processes rebuild it from this file)."""
    res = RateLimiterResource(
        scope="cluster",
        redis_dsn=os.environ[ENV_REDIS],
        key_suffix=os.environ[ENV_SUFFIX],
        min_interval_s=0.2,
        burst=2,
        max_concurrency=2,
    )
    job = define_asset_job(
        "fetch_both",
        executor_def=multiprocess_executor.configured({"max_concurrent": 2, "start_method": FORKSERVER}),
    )
    return Definitions(assets=[_step_asset("a"), _step_asset("b")], jobs=[job], resources={"rate_limiter": res})


def multiprocess_job():
    return executor_definitions().resolve_job_def("fetch_both")


def test_multiprocess_executor_steps_share_one_cluster_budget(
    emulator, emulator_control, redis_url, monkeypatch, tmp_path
):
    """Two assets of one run with the multiprocess executor, each fetching 7 times through
    ExchangeSession (markets + 6 candles) on a cluster key at 5 requests a second, burst 2: the
    steps are two processes sharing the budget through Redis. (The in-process executor: see the
    materialize test, whose two steps get one limiter object.)"""
    monkeypatch.setenv(ENV_EMULATOR, emulator.base_url)
    monkeypatch.setenv(ENV_REDIS, redis_url)
    monkeypatch.setenv(ENV_SUFFIX, uuid.uuid4().hex[:8])
    # step processes load the job from this file by path (pytest's module name means nothing to them)
    target = ReconstructableJob.for_file(os.path.abspath(__file__), "multiprocess_job")
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        with execute_job(target, instance=instance) as result:
            assert result.success
        events = {k: instance.get_latest_materialization_event(AssetKey(k)) for k in ("a", "b")}
    md = {k: metadata_values(e.asset_materialization) for k, e in events.items()}
    assert all(m["same"] for m in md.values())
    assert all(
        m["rate_limiter/requests"] == 7 and m["rate_limiter/keys"].startswith("ccxt:binance:") for m in md.values()
    )
    assert md["a"]["pid"] != md["b"]["pid"] and os.getpid() not in (md["a"]["pid"], md["b"]["pid"])
    log = emulator_control.requests()
    times = sorted(r["time_ms"] / 1000.0 for r in log)
    klines = [r for r in log if r["path"] == KLINES]
    assert len(klines) == 12 and all(r["status"] == 200 for r in log)
    worst = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    assert worst <= 5 + 2, f"{worst} requests in one second; R + B = 7"
