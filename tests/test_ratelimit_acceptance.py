"""Acceptance of the cluster limiter with real OS processes, a real Redis and the exchange
emulator's request log as the referee.

Each worker is a separate Python process (``python -c WORKER``) running ``tasks`` asyncio tasks
that GET ``/api/v3/time`` through one cluster-scope limiter, penalizing on 429/418 the way the
library's session does. Workers start together at a wall-clock instant and print what they did.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

from ccxt_questdb_assets.ratelimit import reset_registry

PATH = "/api/v3/time"

WORKER = r"""
import asyncio, json, sys, time
import aiohttp
from ccxt_questdb_assets.ratelimit import RateLimiterConfig, get_rate_limiter

args = json.loads(sys.argv[1])
limiter = get_rate_limiter(RateLimiterConfig.from_mapping(args["limiter"], environ={}), "binance")
admitted, penalties, events = [], [], []
limiter.set_listener(
    lambda e: events.append([e.kind, time.time(), e.seconds]) if e.kind in ("fallback", "resumed", "penalty") else None
)


async def task(session, stop_at):
    while time.time() < stop_at:
        status = None
        async with limiter.acquire() as permit:
            if time.time() >= stop_at:
                break
            sent = time.time()
            async with session.get(args["url"]) as resp:
                status, retry_after = resp.status, resp.headers.get("Retry-After")
                await resp.read()
            admitted.append([sent, permit.source, status])
        if status in (429, 418):
            await limiter.penalize(retry_after_s=retry_after, status=status)
            penalties.append([sent, time.time(), retry_after])


async def main():
    async with aiohttp.ClientSession() as session:
        print("READY", flush=True)  # imports done: wait for the common start instant
        start_at = float(await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline))
        await asyncio.sleep(max(0.0, start_at - time.time()))
        await asyncio.gather(*[task(session, start_at + args["duration"]) for _ in range(args["tasks"])])


asyncio.run(main())
print(json.dumps({"admitted": admitted, "penalties": penalties, "events": events, "stats": limiter.stats.as_dict()}))
"""


@pytest.fixture(autouse=True)
def _fresh_registry():
    reset_registry()
    yield
    reset_registry()


def run_workers(
    n: int, *, base_url: str, limiter: dict, duration: float, tasks: int = 2, lead_s: float = 0.5
) -> tuple[float, list[subprocess.Popen]]:
    """Start ``n`` workers, wait until each has imported everything, then start them together."""
    args = {"url": base_url + PATH, "limiter": limiter, "duration": duration, "tasks": tasks}
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, json.dumps(args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(n)
    ]
    for p in procs:
        line = p.stdout.readline()
        if line.strip() != "READY":
            for q in procs:
                q.kill()
            raise AssertionError(f"worker did not start: {line!r} {p.stderr.read()[-3000:]}")
    start_at = time.time() + lead_s
    for p in procs:
        p.stdin.write(f"{start_at!r}\n")
        p.stdin.close()
        p.stdin = None
    return start_at, procs


def collect(procs: list[subprocess.Popen], timeout: float) -> list[dict]:
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError("a worker did not finish in time (deadlock?)") from None
        assert p.returncode == 0, f"worker failed ({p.returncode}):\n{err[-3000:]}"
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def max_in_window(times_s: list[float], window: float = 1.0) -> int:
    times_s = sorted(times_s)
    best, j = 0, 0
    for i in range(len(times_s)):
        while times_s[i] - times_s[j] >= window:
            j += 1
        best = max(best, i - j + 1)
    return best


def arrivals(control, since: float = 0.0, until: float = float("inf")) -> list[float]:
    return [r["time_ms"] / 1000.0 for r in control.requests(path=PATH) if since <= r["time_ms"] / 1000.0 < until]


def limiter_options(redis_url: str, rate: int, burst: int, **extra) -> dict:
    opts = {
        "scope": "cluster",
        "redis_dsn": redis_url,
        "tokens_per_interval": rate,
        "interval_ms": 1000,
        "burst_tokens": burst,
        "max_concurrency": 2,
        "key_suffix": "acc-" + uuid.uuid4().hex[:8],
    }
    opts.update(extra)
    return opts


@pytest.mark.slow
def test_four_processes_share_rate_and_burst(emulator, emulator_control, redis_url):
    rate, burst, duration = 10, 3, 20.0
    start_at, procs = run_workers(
        4, base_url=emulator.base_url, limiter=limiter_options(redis_url, rate, burst), duration=duration
    )
    results = collect(procs, timeout=duration + 40)
    seen = arrivals(emulator_control)
    assert max_in_window(seen) <= rate + burst, "the emulator saw more than R + B requests in a 1-second window"
    assert len(arrivals(emulator_control, start_at, start_at + duration)) >= 0.95 * rate * duration
    sent = [a[0] for r in results for a in r["admitted"]]
    assert len(sent) == len(seen)
    assert max_in_window(sent) <= rate + burst
    assert all(a[2] == 200 for r in results for a in r["admitted"])
    assert all(a[1] == "redis" for r in results for a in r["admitted"])
    assert all(r["stats"]["requests"] > 0.5 * rate * duration / 4 for r in results), "a process starved"


@pytest.mark.slow
def test_retry_after_429_pauses_every_process(emulator, emulator_control, redis_url):
    rate, burst, duration = 10, 2, 6.0
    opts = limiter_options(redis_url, rate, burst, penalty_backoff_ms=100)
    start_at, procs = run_workers(3, base_url=emulator.base_url, limiter=opts, duration=duration)

    def arm():
        time.sleep(max(0.0, start_at + 1.5 - time.time()))
        emulator_control.inject("429", count=1, path=PATH, retry_after=2)

    armer = threading.Thread(target=arm)
    armer.start()
    results = collect(procs, timeout=duration + 40)
    armer.join()
    log = emulator_control.requests(path=PATH)
    hits = [r for r in log if r["status"] == 429]
    assert len(hits) == 1
    t429 = hits[0]["time_ms"] / 1000.0
    penalties = [p for r in results for p in r["penalties"]]
    assert len(penalties) == 1
    ((_, penalty_landed, retry_after),) = penalties
    assert retry_after == "2"
    after = sorted(r["time_ms"] / 1000.0 for r in log if r["time_ms"] / 1000.0 > t429)
    sends = [a[0] for r in results for a in r["admitted"]]
    # the limiter admitted nothing from the moment the penalty was in Redis until Retry-After ran out
    assert [s for s in sends if penalty_landed <= s < t429 + 2.0] == []
    # the emulator saw at most the requests already on their way (admitted between the 429 and the
    # penalty reaching Redis: a few ms), and nothing once those had time to arrive
    quiet = [round(t - t429, 3) for t in after if t < t429 + 2.0]
    assert len(quiet) <= 2, f"requests {quiet} s after a 429 with Retry-After: 2"
    assert [t for t in quiet if t429 + t >= penalty_landed + 0.5] == []
    assert any(t429 + 2.0 <= t < t429 + 3.0 for t in after), "traffic did not resume after the cooldown"
    assert all(r["stats"]["cooldown_waits"] >= 1 for r in results)  # every process waited it out


@pytest.mark.slow
def test_redis_outage_falls_back_then_shares_again(emulator, emulator_control, redis_server, redis_url):
    rate, burst, duration = 10, 2, 9.0
    opts = limiter_options(redis_url, rate, burst, redis_retry_s=0.3, redis_timeout_s=0.5)
    start_at, procs = run_workers(2, base_url=emulator.base_url, limiter=opts, duration=duration)
    down_at, up_at = start_at + 3.0, start_at + 6.0
    try:
        time.sleep(max(0.0, down_at - time.time()))
        redis_server.stop()
        time.sleep(max(0.0, up_at - time.time()))
    finally:
        redis_server.start()
    results = collect(procs, timeout=duration + 40)
    # no deadlock, and the run went on during the outage at the fallback limit (R per process)
    outage = arrivals(emulator_control, down_at + 0.5, up_at)
    assert len(outage) >= 0.8 * rate * (up_at - down_at - 0.5)
    assert max_in_window(outage) <= 2 * (rate + burst)
    for r in results:
        kinds = [e[0] for e in r["events"]]
        assert "fallback" in kinds and "resumed" in kinds, kinds
        assert any(a[1] == "fallback" for a in r["admitted"])
        resumed_at = max(e[1] for e in r["events"] if e[0] == "resumed")
        assert resumed_at < up_at + 1.5
        assert all(a[1] == "redis" for a in r["admitted"] if a[0] > resumed_at + 0.1)
    # and shares one budget again once Redis is back
    shared_again = arrivals(emulator_control, up_at + 1.5, start_at + duration)
    assert len(shared_again) > 0
    assert max_in_window(shared_again) <= rate + burst
