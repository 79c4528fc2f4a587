"""The Dagster resource: typed fields, EnvVar DSN, the same limiter as the library layer, waits and
429s in the run log and the materialization metadata."""

import asyncio
import threading

import pytest
from dagster import AssetExecutionContext, EnvVar, asset, materialize

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.defs.rate_limiter_resource import RateLimiterResource
from ccxt_questdb_assets.ratelimit import get_rate_limiter, reset_registry, track


@pytest.fixture(autouse=True)
def _fresh_registry():
    reset_registry()
    yield
    reset_registry()


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
    with pytest.raises(ConfigError, match="scope"):
        RateLimiterResource(scope="clustr").to_config()


def test_redis_dsn_from_envvar_and_env_fallback(monkeypatch):
    monkeypatch.setenv("MY_REDIS", "redis://:pw@127.0.0.1:6390/0")

    @asset
    def probe(rate_limiter: RateLimiterResource):
        cfg = rate_limiter.to_config()
        assert cfg.redis_dsn == "redis://:pw@127.0.0.1:6390/0"
        assert "pw" not in repr(cfg)
        return 1

    res = RateLimiterResource(scope="cluster", redis_dsn=EnvVar("MY_REDIS"))
    assert materialize([probe], resources={"rate_limiter": res}).success

    monkeypatch.setenv("CCXT_QUESTDB_RATE_LIMITER_REDIS", "redis://127.0.0.1:6391/0")
    cfg = RateLimiterResource(scope="cluster").to_config()
    assert cfg.redis_dsn == "redis://127.0.0.1:6391/0"


def test_resource_and_library_share_one_budget():
    res = RateLimiterResource(min_interval_s=0.5)
    from_resource = res.get_limiter("binance")
    from_library = get_rate_limiter(res.to_config(), exchange_id="binance")
    assert from_resource._core is from_library._core


def test_waits_and_429s_reach_run_log_and_metadata():
    @asset
    def candles(context: AssetExecutionContext, rate_limiter: RateLimiterResource):
        with rate_limiter.track(context):
            # library code gets its limiter on its own; the tracking still sees it
            lim = get_rate_limiter(rate_limiter.to_config(), exchange_id="binance")

            async def fetch():
                for _ in range(4):
                    async with lim.acquire(weight=2):
                        pass
                await lim.penalize(retry_after_s="0.05", status=429)

            asyncio.run(fetch())
        return 1

    res = RateLimiterResource(tokens_per_interval=40, burst_tokens=2, penalty_backoff_ms=10, log_waits_over_s=0)
    result = materialize([candles], resources={"rate_limiter": res})
    assert result.success
    (mat,) = result.asset_materializations_for_node("candles")
    md = {k: getattr(v, "value", getattr(v, "text", v)) for k, v in mat.metadata.items()}
    assert md["rate_limiter/requests"] == 4
    assert md["rate_limiter/tokens"] == 8.0
    assert md["rate_limiter/waits"] == 3
    assert md["rate_limiter/penalties"] == 1
    assert md["rate_limiter/keys"] == "ccxt:binance"


def test_run_log_records(tmp_path):
    from dagster import DagsterInstance

    @asset
    def paced(context: AssetExecutionContext, rate_limiter: RateLimiterResource):
        with rate_limiter.track(context):
            lim = rate_limiter.get_limiter("binance", context)
            with lim.acquire_sync():
                pass
            with lim.acquire_sync():
                pass
            lim.penalize_sync(retry_after_s=0.01, status=418)
        return 1

    with DagsterInstance.ephemeral() as instance:
        res = RateLimiterResource(min_interval_s=0.05, penalty_backoff_ms=10, log_waits_over_s=0)
        result = materialize([paced], resources={"rate_limiter": res}, instance=instance)
        assert result.success
        records = instance.all_logs(result.run_id)
        text = "\n".join(r.user_message for r in records)
    assert "exchange answered 418" in text
    assert "rate limiter ccxt:binance: wait" in text
    assert "rate limiter: 2 requests" in text


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
