"""Local and process scopes: bucket arithmetic, sharing by key, cooldowns, weights, threads and
asyncio together, and no permit leaks on cancellation or timeout."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time

import pytest

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.ratelimit import (
    Band,
    EndpointWeights,
    LimiterStats,
    RateLimiterConfig,
    RateLimitTimeout,
    get_rate_limiter,
    parse_retry_after,
    reset_registry,
    shared_keys,
)
from ccxt_questdb_assets.ratelimit.bucket import GO, WAIT, BucketState
from ccxt_questdb_assets.ratelimit.primitives import HybridSemaphore


@pytest.fixture(autouse=True)
def _fresh_registry():
    reset_registry()
    yield
    reset_registry()


def cfg(**options):
    return RateLimiterConfig.from_mapping(options, environ={})


def assert_idle(limiter):
    """Every slot is back and nobody is queued."""
    assert limiter.in_flight == 0
    assert limiter.waiting == 0


# ---------------------------------------------------------------------------- bucket arithmetic
def test_bucket_reservations_queue_exactly():
    b = BucketState((Band("tok", 10.0, 2.0, False),), now=0.0)
    waits = [b.reserve(1, 0.0)[0] for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3])


def test_bucket_weight_above_burst_goes_into_debt():
    b = BucketState((Band("tok", 10.0, 2.0, False),), now=0.0)
    assert b.reserve(5, 0.0)[0] == 0.0  # full bucket admits it...
    assert b.reserve(1, 0.0)[0] == pytest.approx(0.4)  # ...and the next one pays for the debt


def test_bucket_request_band_ignores_weight():
    b = BucketState((Band("req", 1.0, 1.0, True),), now=0.0)
    assert b.reserve(50, 0.0)[0] == 0.0
    assert b.reserve(50, 0.0)[0] == pytest.approx(1.0)


def test_bucket_refund_and_cap():
    b = BucketState((Band("tok", 1.0, 3.0, False),), now=0.0)
    _, r, admitted = b.reserve(1, 0.0)
    assert admitted
    b.refund(r)
    b.refund(r)  # a second refund cannot exceed the capacity
    assert b.tokens["tok"] == 3.0


def test_bucket_penalty_blocks_then_restarts_empty():
    b = BucketState((Band("tok", 10.0, 5.0, False),), now=0.0)
    assert b.penalize(2.0, 0.0) == 2.0
    wait, res, _ = b.reserve(1, 1.0)
    assert res is None and wait == pytest.approx(1.0)
    assert b.penalize(0.5, 1.0) == pytest.approx(1.0)  # a shorter penalty does not shorten it
    wait, res, admitted = b.reserve(1, 2.0)  # cooldown over: refill restarted at its end, no burst
    assert res is not None and not admitted and wait == pytest.approx(0.1)
    assert b.admit(res, 2.1)[:2] == (GO, 0.0)


def test_bucket_gate_spaces_admissions_of_late_wakers():
    """Turns at 0, 1, 2 (one a second, burst 1). The turn at 1 wakes late, at 1.5: the turn at 2
    must not go before 2.5, so no two requests are ever less than a second apart."""
    b = BucketState((Band("req", 1.0, 1.0, True),), now=0.0)
    w0, _, ok0 = b.reserve(1, 0.0)
    w1, r1, ok1 = b.reserve(1, 0.0)
    w2, r2, ok2 = b.reserve(1, 0.0)
    assert (w0, ok0, w1, ok1, w2, ok2) == (0.0, True, 1.0, False, 2.0, False)
    assert b.admit(r1, 1.5)[:2] == (GO, 0.0)  # late, still fine for itself
    kind, more, slot = b.admit(r2, 2.0)  # on time, but the late one took the gate's token at 1.5
    assert kind == WAIT and more == pytest.approx(0.5)  # the gate's next token is now held for it
    assert slot == pytest.approx(2.5)
    assert b.admit(r2, 2.5, held_at=slot)[:2] == (GO, 0.0)
    # a fourth turn, on time at 3.0: the gate's next token comes at 3.5 (after the one held at 2.5)
    w3, r3, _ = b.reserve(1, 2.9)
    assert w3 == pytest.approx(0.1)
    assert b.admit(r3, 3.0)[:2] == (WAIT, pytest.approx(0.5))


def test_bucket_gate_a_held_caller_that_comes_back_late_passes_the_gate_again():
    """A stall of the whole machine: callers held for slots 1, 2, 3 all come back at 10. They must
    not all go at once: the gate (full again, capacity 1) lets one through, the others queue."""
    b = BucketState((Band("req", 1.0, 1.0, True),), now=0.0)
    grants = [b.reserve(1, 0.0) for _ in range(4)]
    assert [g[2] for g in grants] == [True, False, False, False]  # the first went at once
    turns = [g[1] for g in grants]
    held = [b.admit(r, 0.0) for r in turns[1:]]  # (called early, to get gate slots held)
    assert [h[0] for h in held] == [WAIT] * 3 and [h[2] for h in held] == pytest.approx([1.0, 2.0, 3.0])
    back = [b.admit(r, 10.0, held_at=h[2])[0] for r, h in zip(turns[1:], held, strict=True)]
    assert back == [GO, WAIT, WAIT]
    assert b.admit(turns[1], 1.04, held_at=1.0)[0] == GO  # a little late (< HELD_LATE_S): its token


def test_bucket_gate_queues_several_late_callers_instead_of_racing():
    """Three callers find the gate empty at once: they get successive slots (1, 2, 3 s), not the
    same deficit each (which would make them race and ask again and again)."""
    b = BucketState((Band("req", 1.0, 1.0, True),), now=0.0)
    turns = [b.reserve(1, 0.0)[1] for _ in range(4)]
    assert b.admit(turns[3], 3.0)[:2] == (GO, 0.0)  # the last turn's caller comes first (others late)
    waits = [b.admit(r, 3.0)[:2] for r in turns[:3]]
    assert waits == [(WAIT, pytest.approx(1.0)), (WAIT, pytest.approx(2.0)), (WAIT, pytest.approx(3.0))]
    b.refund(turns[2], gate=True)  # a cancelled holder gives its gate slot back
    assert b.admit(turns[2], 3.0)[:2] == (WAIT, pytest.approx(3.0))


def test_bucket_gate_bounds_every_window_under_random_lateness():
    """Whatever the lateness of wake-ups, admissions obey the bucket: at most capacity + rate * T
    in any window of T seconds (checked on 1 s windows). Without the gate this schedule puts 15
    admissions into one second."""
    rng = random.Random(4)
    rate, cap = 10.0, 3.0
    b = BucketState((Band("req", rate, cap, True),), now=0.0)
    pending = []  # (time to act, reservation, held gate slot or None)
    admitted: list[float] = []
    now = 0.0
    for _ in range(400):
        now += rng.random() * 0.05
        wait, res, ok = b.reserve(1, now)
        if ok:
            admitted.append(now)
        else:
            pending.append((now + wait + rng.choice([0, 0, 0.2, 0.5]), res, None))
    while pending:
        pending.sort(key=lambda p: p[0])
        at, res, held_at = pending.pop(0)
        kind, more, slot = b.admit(res, at, held_at=held_at)
        if kind == GO:
            admitted.append(at)
        else:
            pending.append((at + more + rng.choice([0, 0.02, 0.4]), res, slot))
    admitted.sort()
    assert len(admitted) == 400
    j = 0
    worst = 0
    for i, t in enumerate(admitted):
        while admitted[j] <= t - 1.0:
            j += 1
        worst = max(worst, i - j + 1)
    assert worst <= rate + cap


# ---------------------------------------------------------------------------- sharing by key
def test_process_scope_shares_one_budget_per_key():
    a = get_rate_limiter(cfg(min_interval_s=0.5), "binance")
    b = get_rate_limiter(cfg(min_interval_s=0.5, redis_dsn="redis://unused:6379/0"), "Binance")
    assert a.key == b.key == "ccxt:binance"
    assert a is b  # the very same object, whatever else the fetcher's config says
    assert shared_keys() == ["ccxt:binance"]
    # local_semaphore is the process-local cap of the key (the spec), default max_concurrency
    c = get_rate_limiter(cfg(min_interval_s=0.5, max_concurrency=4, key_suffix="k"), "binance")
    assert c.concurrency == 4 and c is not a
    d = get_rate_limiter(cfg(min_interval_s=0.5, max_concurrency=8, local_semaphore=4, key_suffix="k"), "binance")
    assert d is c  # same effective budget
    other = get_rate_limiter(cfg(min_interval_s=0.5, key_suffix="acct2"), "binance")
    assert other is not a and other.key == "ccxt:binance:acct2"
    # a template can make several exchanges share one key (one IP budget); weights stay per exchange
    t = {"min_interval_s": 0.5, "key_template": "ip:{account?}", "key_suffix": "10.0.0.1"}
    bn, kr = get_rate_limiter(cfg(**t), "binance"), get_rate_limiter(cfg(**t), "kraken")
    assert bn is kr and bn.key == "ip:10.0.0.1"
    assert bn.weights_for("binance").for_call("fetch_ohlcv") == 2
    assert kr.weights_for("kraken").for_call("fetch_ohlcv") == 1.2  # ccxt's cost of kraken's OHLC


def test_process_scope_conflicting_budget_is_an_error():
    get_rate_limiter(cfg(min_interval_s=0.5), "binance")
    with pytest.raises(ConfigError, match="already used in this process") as info:
        get_rate_limiter(cfg(min_interval_s=0.1), "binance")
    assert "bands" in str(info.value) and "key_suffix" in str(info.value)
    with pytest.raises(ConfigError, match="concurrency"):
        get_rate_limiter(cfg(min_interval_s=0.5, max_concurrency=3), "binance")
    with pytest.raises(ConfigError, match="concurrency"):
        get_rate_limiter(cfg(min_interval_s=0.5, local_semaphore=2), "binance")
    with pytest.raises(ConfigError, match="penalty_backoff_ms"):
        get_rate_limiter(cfg(min_interval_s=0.5, penalty_backoff_ms=5), "binance")
    with pytest.raises(ConfigError, match="endpoint_weights"):
        get_rate_limiter(cfg(min_interval_s=0.5, endpoint_weights={"klines": 9}), "binance")
    with pytest.raises(ConfigError, match="scope"):
        get_rate_limiter(cfg(min_interval_s=0.5, scope="cluster", redis_dsn="redis://127.0.0.1:1/0"), "binance")


def test_local_scope_is_per_fetcher():
    a = get_rate_limiter(cfg(scope="local", min_interval_s=0.5), "binance")
    b = get_rate_limiter(cfg(scope="local", min_interval_s=0.5), "binance")
    assert a is not b
    assert shared_keys() == []


def test_shared_budget_across_handles():
    a = get_rate_limiter(cfg(min_interval_s=0.2), "binance")
    b = get_rate_limiter(cfg(min_interval_s=0.2), "binance")

    async def main():
        t0 = time.monotonic()
        stamps = []

        async def go(lim):
            async with lim.acquire():
                stamps.append(time.monotonic() - t0)

        await asyncio.gather(go(a), go(b), go(a), go(b))
        return sorted(stamps)

    stamps = asyncio.run(main())
    gaps = [y - x for x, y in itertools.pairwise(stamps)]
    assert min(gaps) >= 0.19
    assert a is b and a.stats.requests == 4


# ---------------------------------------------------------------------------- concurrency
def peak_in_flight(limiters) -> int:
    """Most permits held at once when one task per entry of ``limiters`` holds its permit 20 ms."""
    now = peak = 0

    async def go(lim):
        nonlocal now, peak
        async with lim.acquire():
            now += 1
            peak = max(peak, now)
            await asyncio.sleep(0.02)
            now -= 1

    async def main():
        await asyncio.gather(*(go(lim) for lim in limiters))

    asyncio.run(main())
    return peak


@pytest.mark.parametrize(
    "options, cap", [({"max_concurrency": 3}, 3), ({"max_concurrency": 5, "local_semaphore": 2}, 2)]
)
def test_in_flight_cap_of_the_key_in_the_process(options, cap):
    a = get_rate_limiter(cfg(**options), "binance")
    b = get_rate_limiter(cfg(**options), "binance")  # a second fetcher of the key: same cap
    assert peak_in_flight([a] * 6 + [b] * 6) == cap
    assert_idle(a)


def test_local_scope_caps_each_fetcher_alone():
    a = get_rate_limiter(cfg(scope="local", max_concurrency=2), "binance")
    b = get_rate_limiter(cfg(scope="local", max_concurrency=2), "binance")
    assert peak_in_flight([a] * 4 + [b] * 4) == 4  # two budgets of two


def test_threads_and_event_loops_share_one_limiter():
    lim = get_rate_limiter(cfg(max_concurrency=2, tokens_per_interval=50, burst_tokens=1), "binance")
    active = 0
    peak = 0
    lock = threading.Lock()
    stamps: list[float] = []
    errors: list[BaseException] = []

    def body():
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            stamps.append(time.monotonic())
        time.sleep(0.005)
        with lock:
            active -= 1

    def sync_worker():
        try:
            for _ in range(5):
                with lim.acquire_sync():
                    body()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def async_worker():
        async def main():
            async def one():
                async with lim.acquire():
                    body()
                    await asyncio.sleep(0.005)

            await asyncio.gather(*[one() for _ in range(5)])

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=sync_worker) for _ in range(2)] + [
        threading.Thread(target=async_worker) for _ in range(2)
    ]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(stamps) == 20 and peak <= 2
    assert time.monotonic() - t0 >= 19 / 50 - 0.02  # 50 tokens/s, burst 1
    assert_idle(lim)


def test_hybrid_semaphore_hands_off_fifo_across_loops():
    sem = HybridSemaphore(1)
    assert sem.acquire_sync(0)
    order = []

    def waiter(i):
        async def main():
            await sem.acquire()
            order.append(i)
            sem.release()

        asyncio.run(main())

    threads = []
    for i in range(3):
        t = threading.Thread(target=waiter, args=(i,))
        t.start()
        threads.append(t)
        while sem.waiting < i + 1:
            time.sleep(0.001)
    sem.release()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2]
    assert sem.available == 1


# ---------------------------------------------------------------------------- no leaks
def test_cancelling_100_waiting_tasks_leaves_every_permit():
    lim = get_rate_limiter(cfg(max_concurrency=3, tokens_per_interval=20, burst_tokens=2), "binance")

    async def main():
        done = 0

        async def one():
            nonlocal done
            async with lim.acquire():
                await asyncio.sleep(0.01)
                done += 1

        tasks = [asyncio.create_task(one()) for _ in range(100)]
        await asyncio.sleep(0.05)
        rng = random.Random(7)
        for t in rng.sample(tasks, 100):
            t.cancel()
            if rng.random() < 0.3:
                await asyncio.sleep(0)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return done, results

    done, _ = asyncio.run(main())
    assert_idle(lim)
    # every unused reservation came back: the bucket is full again after a short refill
    time.sleep(0.15)
    assert lim._backend.levels()["tok"] == pytest.approx(2.0)
    assert lim.stats.cancellations + lim.stats.requests == 100 and done <= lim.stats.requests

    async def after():  # and the limiter still works at full speed
        t0 = time.monotonic()
        async with lim.acquire():
            pass
        async with lim.acquire():
            pass
        return time.monotonic() - t0

    assert asyncio.run(after()) < 0.05


def test_timeout_releases_and_refunds():
    lim = get_rate_limiter(cfg(min_interval_s=1.0), "binance")

    async def main():
        async with lim.acquire():
            pass
        with pytest.raises(RateLimitTimeout):
            async with lim.acquire(timeout=0.1):
                pass

    asyncio.run(main())
    assert_idle(lim)
    assert lim.stats.timeouts == 1
    with lim.acquire_sync():  # slot is free, tokens were refunded: waits the rest of the 1 s only
        pass
    with pytest.raises(RateLimitTimeout), lim.acquire_sync(timeout=0.05):
        pass
    assert_idle(lim)


def test_timeout_waiting_for_a_slot():
    lim = get_rate_limiter(cfg(max_concurrency=1), "binance")

    async def main():
        async with lim.acquire():
            with pytest.raises(RateLimitTimeout):
                async with lim.acquire(timeout=0.05):
                    pass

    asyncio.run(main())
    assert_idle(lim)


def test_acquire_sync_refuses_to_block_an_event_loop():
    lim = get_rate_limiter(cfg(max_concurrency=1), "binance")

    async def main():
        async with lim.acquire():
            with pytest.raises(RuntimeError, match="inside a running event loop"):
                lim.acquire_sync()

    asyncio.run(main())
    assert_idle(lim)


def test_error_in_body_releases():
    lim = get_rate_limiter(cfg(max_concurrency=1), "binance")
    with pytest.raises(KeyError), lim.acquire_sync():
        raise KeyError("x")
    assert_idle(lim)


# ---------------------------------------------------------------------------- cooldowns
def test_penalty_is_shared_by_every_holder_and_honours_retry_after():
    a = get_rate_limiter(cfg(penalty_backoff_ms=100, max_concurrency=4), "binance")
    b = get_rate_limiter(cfg(penalty_backoff_ms=100, max_concurrency=4), "binance")
    events = []
    b.add_listener(events.append)

    async def main():
        applied = await a.penalize(retry_after_s="0.3", status=429)
        assert applied == pytest.approx(0.3, abs=0.01)
        t0 = time.monotonic()
        async with b.acquire():
            return time.monotonic() - t0

    waited = asyncio.run(main())
    assert waited >= 0.28
    assert a.stats.penalties == 1 and b.stats.cooldown_waits == 1
    assert {e.kind for e in events} >= {"cooldown_wait", "wait"}
    # penalty_backoff_ms is the floor when Retry-After is shorter or missing
    assert a.penalize_sync(0.01) == pytest.approx(0.1, abs=0.01)
    assert a.penalize_sync() == pytest.approx(0.1, abs=0.01)


def test_penalty_during_a_reservation_wait_is_honoured():
    lim = get_rate_limiter(cfg(min_interval_s=0.2, penalty_backoff_ms=500, max_concurrency=2), "binance")

    async def main():
        t0 = time.monotonic()
        stamps = []

        async def go():
            async with lim.acquire():
                stamps.append(time.monotonic() - t0)

        first = asyncio.create_task(go())
        second = asyncio.create_task(go())  # reserved for t=0.2
        await asyncio.sleep(0.05)
        await lim.penalize()  # cooldown until t=0.55
        await asyncio.gather(first, second)
        return stamps

    stamps = asyncio.run(main())
    assert stamps[0] < 0.05
    assert stamps[1] >= 0.54


def test_process_scope_418_pauses_every_session_of_the_key(emulator, emulator_control):
    """Two ExchangeSessions of one process (other symbols, other retry settings) share the key's
    budget; a 418 with Retry-After: 1 seen by one of them stops both for a second (the emulator's
    log is the referee)."""
    from ccxt_questdb_assets.exchange.client import clear_markets_cache
    from ccxt_questdb_assets.exchange.config import CcxtBackfillConfig
    from ccxt_questdb_assets.exchange.session import ExchangeSession

    clear_markets_cache()
    limiter_cfg = cfg(min_interval_s=0.1, max_concurrency=2, penalty_backoff_ms=50)
    a = ExchangeSession(
        CcxtBackfillConfig(
            exchange_id="binance", symbols=["BTC/USDT"], base_url=emulator.base_url, rate_limiter=limiter_cfg
        )
    )
    b = ExchangeSession(
        CcxtBackfillConfig(
            exchange_id="binance",
            symbols=["ETH/USDT"],
            base_url=emulator.base_url,
            rate_limiter=limiter_cfg,
            max_retries=5,
            retry_backoff_s=0.01,
        )
    )
    assert a.limiter is b.limiter
    since = 1_609_459_200_000
    admitted: list[float] = []

    async def main():
        try:
            for session, symbol in ((a, "BTC/USDT"), (b, "ETH/USDT")):  # markets, and a warm connection each
                await session.markets()
                await session.call("fetch_ohlcv", symbol, "1m", since=since, limit=5)
            emulator_control.inject("418", count=1, path="/api/v3/klines", retry_after=1)
            a.limiter.add_listener(lambda e: admitted.append(time.monotonic()) if e.kind == "admitted" else None)

            async def loop(session, symbol):
                for i in range(6):
                    await session.call("fetch_ohlcv", symbol, "1m", since=since + i * 300_000, limit=5)

            await asyncio.gather(loop(a, "BTC/USDT"), loop(b, "ETH/USDT"))
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())
    log = emulator_control.requests(path="/api/v3/klines")
    assert [r["status"] for r in log].count(418) == 1 and len(log) == 2 + 12 + 1
    t418 = next(r["time_ms"] for r in log if r["status"] == 418) / 1000.0
    after = [r["time_ms"] / 1000.0 - t418 for r in log if r["time_ms"] / 1000.0 > t418]
    # the other session's request already admitted may still arrive within a few ms; then a second of silence
    assert [round(t, 3) for t in after if 0.05 < t < 1.0] == []
    # one budget for both sessions, not two: the 12 requests after the cooldown take 11 spacings of
    # 0.1 s (two budgets would take about half), and no second holds more than R + B = 10 + 1
    resumed = sorted(r["time_ms"] / 1000.0 for r in log if r["time_ms"] / 1000.0 > t418 + 0.05)
    assert len(resumed) == 12 and resumed[-1] - resumed[0] >= 11 * 0.1 - 0.05
    assert max(sum(1 for u in resumed if t <= u < t + 1.0) for t in resumed) <= 11
    assert len(admitted) == 13  # the limiter's own count: the 12 and the 418'd one
    assert a.limiter.stats.penalties == 1


def test_parse_retry_after():
    assert parse_retry_after(None) is None
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(1.5) == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)


# ---------------------------------------------------------------------------- weights and stats
def test_weights_cost_tokens():
    lim = get_rate_limiter(cfg(tokens_per_interval=10, burst_tokens=4), "binance")

    async def main():
        t0 = time.monotonic()
        async with lim.acquire(weight=4):
            pass
        async with lim.acquire(weight=2):
            pass
        return time.monotonic() - t0

    assert asyncio.run(main()) >= 0.19
    assert lim.stats.tokens == 6 and lim.stats.requests == 2
    with pytest.raises(ValueError):
        lim.acquire(weight=0)


def test_endpoint_weights():
    w = EndpointWeights("binance", overrides={"aggTrades": 8, "fetch_time": 3})
    assert w.weight("klines") == 2
    assert w.weight("/api/v3/klines") == 2
    assert w.for_call("fetch_ohlcv", limit=1000) == 2
    assert w.for_call("fetch_trades") == 8  # override by endpoint
    assert w.for_call("fetch_time") == 3  # override by method name
    assert w.weight("depth", limit=100) == 5 and w.weight("depth", limit=1000) == 50
    assert w.weight("exchangeInfo") == 20
    assert w.weight("ticker/24hr") == 2  # from ccxt's metadata: cost 0.4 x 5
    assert w.weight("no/such/endpoint") == 1
    assert EndpointWeights("gate").for_call("fetch_ohlcv") == 1  # no method table for the exchange: 1
    # per-exchange method tables, weighed by ccxt's cost metadata
    assert EndpointWeights("kraken").for_call("fetch_ohlcv") == 1.2
    assert EndpointWeights("okx").for_call("fetch_ohlcv") == 1  # market/history-candles
    assert EndpointWeights("okx").for_call("fetch_trades") == 2  # market/history-trades
    assert EndpointWeights("bybit").for_call("fetch_ohlcv") == 5
    assert EndpointWeights("coinbase").for_call("fetch_ohlcv") == 3  # nested section v3 -> public
    assert EndpointWeights("binanceusdm").for_call("fetch_ohlcv", limit=1000) == 5  # fapiPublic, by limit


def test_stats_delta_and_metadata():
    a = LimiterStats(requests=5, tokens=10.0, waits=2, wait_s=1.5, max_wait_s=1.0)
    b = LimiterStats(requests=2, tokens=4.0, waits=1, wait_s=0.5, max_wait_s=0.5)
    d = a - b
    assert (d.requests, d.tokens, d.waits, d.wait_s) == (3, 6.0, 1, 1.0)
    md = d.to_metadata()
    assert md["rate_limiter/requests"] == 3 and "rate_limiter/penalties" in md


def test_library_layer_imports_no_dagster():
    import subprocess
    import sys

    code = (
        "import sys, ccxt_questdb_assets.ratelimit as r;"
        "bad=[m for m in sys.modules if m.split('.')[0]=='dagster' or m.startswith('ccxt_questdb_assets.storage')"
        " or m.startswith('ccxt_questdb_assets.testing')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
