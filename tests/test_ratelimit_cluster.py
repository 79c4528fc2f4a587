"""Cluster scope against a real Redis: atomic admission, Redis time, shared cooldown, refunds on
cancellation, Redis outage (fallback, resume, raise). Several "processes" are simulated here by
independent limiter cores on one Redis key; tests/test_ratelimit_acceptance.py uses real processes."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid

import pytest
import redis

from ccxt_questdb_assets.core.errors import ServiceError
from ccxt_questdb_assets.ratelimit import (
    RateLimiter,
    RateLimiterConfig,
    RateLimitTimeout,
    build_limiter,
    get_rate_limiter,
    reset_registry,
)


@pytest.fixture(autouse=True)
def _fresh_registry():
    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def cores():
    made: list[RateLimiter] = []

    def make(options: dict, exchange: str = "binance") -> RateLimiter:
        """A limiter with its own in-process state, as another process would have."""
        cfg = RateLimiterConfig.from_mapping(options, environ={})
        lim = build_limiter(cfg, exchange)
        made.append(lim)
        return lim

    yield make
    for lim in made:
        lim.close()


def opts(redis_url: str, **extra) -> dict:
    base = {"scope": "cluster", "redis_dsn": redis_url, "key_suffix": uuid.uuid4().hex[:8], "max_concurrency": 8}
    base.update(extra)
    return base


def assert_idle(limiter):
    assert limiter.in_flight == 0 and limiter.waiting == 0


def redis_level(url: str, key: str, band: str) -> float:
    r = redis.Redis.from_url(url, decode_responses=True)
    try:
        sec, usec = r.time()
        now = sec * 1000 + usec / 1000
        tokens, ts = r.hmget(key, f"{band}:tokens", f"{band}:ts")
        return float(tokens), float(ts), now, r.pttl(key)
    finally:
        r.close()


def script_calls(url: str) -> int:
    """Lua script executions Redis has served (EVAL + EVALSHA), from INFO commandstats."""
    r = redis.Redis.from_url(url)
    try:
        stats = r.info("commandstats")
    finally:
        r.close()
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))


def test_waiters_sleep_the_deficit_instead_of_polling(redis_url, cores):
    """3 "processes" x 10 tasks queue for 30 admissions at 20 a second: Redis serves at most three
    script calls per admission (reserve; admit after the computed sleep; when a late caller took
    the gate's token, one more after sleeping for the next token, which admit held for it). A
    polling limiter asks again and again while it waits."""
    o = opts(redis_url, tokens_per_interval=20, burst_tokens=1)
    limiters = [cores(o) for _ in range(3)]
    for lim in limiters:  # load the scripts and open the connections first
        with lim.acquire_sync():
            pass
    before = script_calls(redis_url)

    async def main():
        async def one(lim):
            async with lim.acquire():
                pass

        await asyncio.gather(*[one(limiters[i % 3]) for i in range(30)])

    t0 = time.monotonic()
    asyncio.run(main())
    elapsed = time.monotonic() - t0
    calls = script_calls(redis_url) - before
    print(f"30 admissions in {elapsed:.2f} s: {calls} script calls")
    assert elapsed >= 29 / 20 - 0.05  # they did wait their turn...
    assert calls <= 3 * 30  # ...without asking Redis again and again


def test_admission_is_atomic_across_cores_and_threads(redis_url, cores):
    rate, burst = 40, 4
    o = opts(redis_url, tokens_per_interval=rate, burst_tokens=burst)
    limiters = [cores(o) for _ in range(3)]
    stamps: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + 1.5

    def worker(lim):
        while time.monotonic() < stop:
            with lim.acquire_sync(), lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker, args=(lim,)) for lim in limiters for _ in range(2)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    stamps.sort()
    # every 1-second window sees at most rate + burst admissions
    for i, s in enumerate(stamps):
        j = i
        while j < len(stamps) and stamps[j] < s + 1.0:
            j += 1
        assert j - i <= rate + burst
    elapsed = stamps[-1] - t0
    assert len(stamps) >= 0.9 * rate * elapsed
    for lim in limiters:
        assert_idle(lim)


def test_state_lives_in_redis_with_redis_time_and_expires(redis_url, cores, monkeypatch):
    o = opts(redis_url, tokens_per_interval=10, burst_tokens=5)
    lim = cores(o)
    # hosts' wall clocks do not matter: skew this one by an hour
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)
    for _ in range(5):
        with lim.acquire_sync():
            pass
    tokens, ts, now, pttl = redis_level(redis_url, lim.key, "tok")
    assert tokens == pytest.approx(0.0, abs=0.2)
    assert abs(ts - now) < 1000  # Redis's own clock
    assert 0 < pttl <= 0.5 * 1000 + 1000 + 50  # gone once the bucket would be full again
    t0 = time.monotonic()
    with lim.acquire_sync():
        pass
    assert time.monotonic() - t0 >= 0.08


def test_shared_cooldown_blocks_other_processes_and_honours_retry_after(redis_url, cores):
    o = opts(redis_url, min_interval_s=0.1, penalty_backoff_ms=200)
    a, b = cores(o), cores(o)

    async def main():
        async with b.acquire():
            pass
        applied = await a.penalize(retry_after_s=0.6, status=429)
        assert applied == pytest.approx(0.6, abs=0.05)
        t0 = time.monotonic()
        async with b.acquire():
            waited = time.monotonic() - t0
        return waited

    waited = asyncio.run(main())
    assert waited >= 0.55
    assert b.stats.cooldown_waits == 1 and a.stats.penalties == 1
    assert a.mode == b.mode == "cluster" and a.stats.redis_errors == 0 and b.stats.redis_errors == 0


def test_cooldown_started_while_a_reservation_sleeps(redis_url, cores):
    o = opts(redis_url, min_interval_s=0.3, penalty_backoff_ms=700)
    a, b = cores(o), cores(o)

    async def main():
        t0 = time.monotonic()
        async with b.acquire():
            pass
        task = asyncio.create_task(b.acquire().__aenter__())  # reserved for t=0.3
        await asyncio.sleep(0.1)
        await a.penalize()  # cooldown until t~0.8
        permit = await task
        waited = time.monotonic() - t0
        permit.release()
        return waited

    assert asyncio.run(main()) >= 0.75
    assert a.mode == b.mode == "cluster" and a.stats.redis_errors == 0 and b.stats.redis_errors == 0


def wait_for_full_bucket(url: str, key: str, band: str, rate_per_s: float, cap: float, timeout: float = 5.0) -> float:
    """The bucket's level once it is full again (refunds run on the limiter's threads)."""
    deadline = time.monotonic() + timeout
    while True:
        tokens, ts, now, _ = redis_level(url, key, band)
        level = min(cap, tokens + max(0.0, now - ts) * rate_per_s / 1000)
        if level >= cap - 0.01 or time.monotonic() > deadline:
            return level
        time.sleep(0.05)


def test_cancelling_100_waiting_tasks_leaves_every_permit(redis_url, cores):
    """100 tasks, each holding a slot and a reservation in Redis (the queue runs 5 s deep), are
    cancelled at random moments, some while their Redis call is in flight: every slot comes back,
    every reservation is refunded (the queue is full again at once, not after 5 s of refill)."""
    rate = 20
    o = opts(redis_url, max_concurrency=100, tokens_per_interval=rate, burst_tokens=3)
    lim = cores(o)

    async def main():
        async def one():
            async with lim.acquire():
                await asyncio.sleep(0.01)

        tasks = [asyncio.create_task(one()) for _ in range(100)]
        rng = random.Random(11)
        await asyncio.sleep(rng.random() * 0.01)  # some still in their Redis call
        for t in rng.sample(tasks, len(tasks)):
            t.cancel()
            if rng.random() < 0.3:
                await asyncio.sleep(rng.random() * 0.01)
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    assert_idle(lim)
    assert lim.stats.requests + lim.stats.cancellations == 100
    assert lim.stats.cancellations >= 90
    assert wait_for_full_bucket(redis_url, lim.key, "tok", rate, 3.0, timeout=1.0) == pytest.approx(3.0, abs=0.01)
    t0 = time.monotonic()
    for _ in range(3):  # and the burst is there for the next callers
        with lim.acquire_sync(timeout=1):
            pass
    assert time.monotonic() - t0 < 0.1


def test_timeouts_release_and_refund(redis_url, cores):
    o = opts(redis_url, max_concurrency=8, min_interval_s=0.5)
    lim = cores(o)

    async def main():
        async with lim.acquire():
            pass
        results = await asyncio.gather(
            *[lim.acquire(timeout=0.2).__aenter__() for _ in range(5)], return_exceptions=True
        )
        assert all(isinstance(r, RateLimitTimeout) for r in results)

    asyncio.run(main())
    assert_idle(lim)
    assert lim.stats.timeouts == 5
    time.sleep(0.3)  # refunds run on the limiter's threads
    t0 = time.monotonic()
    with lim.acquire_sync(timeout=2):  # only the first request's 0.5 s, not 5 more turns
        pass
    assert time.monotonic() - t0 < 0.45


def test_cluster_scope_shares_in_process_state_by_key(redis_url):
    o = opts(redis_url, min_interval_s=0.5)
    a = get_rate_limiter(o, "binance")
    b = get_rate_limiter(o, "binance")
    assert a is b and a.mode == "cluster"


def test_redis_outage_falls_back_and_resumes(redis_server, redis_url, cores, caplog):
    o = opts(redis_url, tokens_per_interval=20, burst_tokens=2, redis_retry_s=0.2, redis_timeout_s=0.5)
    lim = cores(o)
    events = []
    lim.add_listener(events.append)

    def burst(n):
        t0 = time.monotonic()
        for _ in range(n):
            with lim.acquire_sync(timeout=5):
                pass
        return time.monotonic() - t0

    burst(3)
    assert lim.mode == "cluster"
    redis_server.stop()
    try:
        elapsed = burst(10)  # no deadlock, goes on at the fallback rate
        assert lim.mode == "fallback"
        assert elapsed < 2.0
        assert lim.stats.fallback_requests >= 9
        assert lim.stats.fallback_events == 1  # one warning per outage, not per request
        assert "falling back" in caplog.text
    finally:
        redis_server.start()
    time.sleep(0.25)
    burst(3)
    assert lim.mode == "cluster"
    kinds = [e.kind for e in events]
    assert "fallback" in kinds and "resumed" in kinds
    assert_idle(lim)


def test_redis_outage_with_raise_policy(redis_server, redis_url, cores):
    o = opts(redis_url, min_interval_s=0.05, on_redis_error="raise", redis_timeout_s=0.5)
    lim = cores(o)
    with lim.acquire_sync():
        pass
    redis_server.stop()
    try:
        with pytest.raises(ServiceError, match="on_redis_error=raise"), lim.acquire_sync():
            pass

        async def main():
            with pytest.raises(ServiceError):
                async with lim.acquire():
                    pass

        asyncio.run(main())
        assert_idle(lim)
    finally:
        redis_server.start()
    with lim.acquire_sync(timeout=5):
        pass


def test_penalty_during_outage_still_applies_locally(redis_server, redis_url, cores):
    o = opts(redis_url, penalty_backoff_ms=300, redis_retry_s=5, redis_timeout_s=0.5)
    lim = cores(o)
    redis_server.stop()
    try:
        lim.penalize_sync()
        t0 = time.monotonic()
        with lim.acquire_sync():
            pass
        assert time.monotonic() - t0 >= 0.25
    finally:
        redis_server.start()


def test_unreachable_redis_from_the_start_falls_back(cores):
    lim = cores(
        {"scope": "cluster", "redis_dsn": "redis://127.0.0.1:1/0", "min_interval_s": 0.01, "redis_timeout_s": 0.2}
    )
    with lim.acquire_sync(timeout=5):
        pass
    assert lim.mode == "fallback" and lim.stats.fallback_requests == 1


def test_dsn_from_connectors_and_from_the_environment_reaches_redis(redis_url):
    """The DSN fallback chain ends at a real Redis: connectors.ccxt_rate_limiter_redis, then the
    project's variable, then the spec's QMTL_CCXT_RATE_LIMITER_REDIS."""
    sources = [
        ({"connectors": {"ccxt_rate_limiter_redis": redis_url}}, "connectors.ccxt_rate_limiter_redis"),
        ({"environ": {"CCXT_QUESTDB_RATE_LIMITER_REDIS": redis_url}}, "$CCXT_QUESTDB_RATE_LIMITER_REDIS"),
        ({"environ": {"QMTL_CCXT_RATE_LIMITER_REDIS": redis_url}}, "$QMTL_CCXT_RATE_LIMITER_REDIS"),
    ]
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        for kw, source in sources:
            kw.setdefault("environ", {})
            suffix = uuid.uuid4().hex[:8]
            cfg = RateLimiterConfig.from_mapping(
                {"scope": "cluster", "min_interval_s": 0.5, "key_suffix": suffix}, **kw
            )
            assert cfg.redis_dsn_source == source
            lim = build_limiter(cfg, "binance")
            try:
                with lim.acquire_sync(timeout=5):
                    pass
                assert lim.mode == "cluster"
                assert r.exists(f"ccxt:binance:{suffix}")
            finally:
                lim.close()
    finally:
        r.close()


@pytest.mark.parametrize(
    "template, exchange, suffix, expected",
    [
        (None, "Binance", None, "ccxt:binance"),
        (None, "binance", "acct42", "ccxt:binance:acct42"),
        ("rl:{exchange_id}:{account?}", "BinanceUS", None, "rl:BinanceUS"),
        ("rl:{exchange}:{account?}", "BinanceUS", "a1", "rl:binanceus:a1"),
    ],
)
def test_key_template_names_the_redis_key(redis_url, cores, template, exchange, suffix, expected):
    tag = uuid.uuid4().hex[:6]
    o = {"scope": "cluster", "redis_dsn": redis_url, "min_interval_s": 0.5}
    if template:
        o["key_template"] = template.replace("rl:", f"rl{tag}:")
        expected = expected.replace("rl:", f"rl{tag}:")
    if suffix:
        o["key_suffix"] = suffix
    r = redis.Redis.from_url(redis_url)
    try:
        r.delete(expected)
        lim = cores(o, exchange)
        assert lim.key == expected
        with lim.acquire_sync(timeout=5):
            pass
        assert r.exists(expected)  # the bucket lives under exactly that name
    finally:
        r.close()
