"""Acceptance of the shared limiter with real OS processes, a real Redis, real ccxt through the
library's ExchangeSession / CcxtOHLCVFetcher, and the exchange emulator's request log as referee.

Four worker processes are started once for the module (importing ccxt and pandas costs several
seconds each on a small machine) and run one scenario per command: each builds its sessions or
fetchers from the scenario's limiter options, loads markets (warm-up, through the limiter), says
ready, waits for a common wall-clock start instant, runs its asyncio tasks until the end instant
and reports what its limiter did (every admission, penalty, fallback, resume, with wall-clock
times). Between scenarios a worker forgets its limiters (``reset_registry``).

The limiter bounds admissions; the emulator sees them after the client's own latency. On a small
machine shared with other CPU-heavy jobs a starved worker can sit on an admitted request for
hundreds of milliseconds, which no limiter can undo. So the processes of these tests (workers,
emulator, Redis, this one) run at a raised scheduling priority when the OS allows it (root):
the referee then measures the limiter, not the neighbours.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from ccxt_questdb_assets.ratelimit import reset_registry

KLINES = "/api/v3/klines"


def boost(pid: int | None) -> None:
    """Raise a test process's scheduling priority (see the module doc); a no-op without the right."""
    if pid is None:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, pid, -10)
    except (PermissionError, ProcessLookupError, OSError):
        pass


WORKER = r"""
import asyncio, json, os, random, sys, time, traceback

from ccxt_questdb_assets.exchange.client import load_markets_cached_async
from ccxt_questdb_assets.exchange.config import CcxtBackfillConfig
from ccxt_questdb_assets.exchange.fetchers import CcxtOHLCVFetcher
from ccxt_questdb_assets.exchange.session import ExchangeSession
from ccxt_questdb_assets.ratelimit import RateLimiterConfig, get_rate_limiter, reset_registry, track

SYMBOL, NODE = "BTC/USDT", "ohlcv:binance:BTC/USDT:1m"
BASE_S = 1_609_459_200  # 2021-01-01 00:00 UTC, epoch seconds: closed history the emulator always has
KINDS = ("admitted", "penalty", "fallback", "resumed", "cooldown_wait")


async def scenario(cmd):
    limiter_cfg = RateLimiterConfig.from_mapping(cmd["limiter"], environ={})
    cfg = CcxtBackfillConfig(exchange_id="binance", symbols=[SYMBOL], base_url=cmd["url"], rate_limiter=limiter_cfg,
                             max_retries=10, retry_backoff_s=0.05)
    limiter = get_rate_limiter(limiter_cfg, "binance")
    rng = random.Random(cmd["seed"])
    events = []

    def on_event(e):
        if e.kind in KINDS:
            task = asyncio.current_task() if e.kind == "admitted" else None
            events.append([e.kind, time.time(), e.seconds, e.info.get("source"), task.get_name() if task else None])
        elif e.kind == "redis_error":
            events.append([e.kind, time.time(), 0.0, e.info.get("error"), e.info.get("during")])

    fetchers = [CcxtOHLCVFetcher(cfg) for _ in range(cmd["tasks"])] if cmd["mode"] == "fetcher" else None
    sessions = [f.session for f in fetchers] if fetchers else [ExchangeSession(cfg) for _ in range(cmd["tasks"])]
    with track(on_event) as scope:
        # warm-up of markets, connections and ccxt's code paths, straight through ccxt (not the
        # limiter): the test clears the emulator's log before the start instant
        for s in sessions:
            await load_markets_cached_async(s.exchange)
            await s.exchange.fetch_ohlcv(SYMBOL, "1m", since=BASE_S * 1000, limit=5)
        emit({"ready": True})
        start_at = float(await asyncio.get_running_loop().run_in_executor(None, stdin.readline))
        await asyncio.sleep(max(0.0, start_at - time.time()))
        stop_at = start_at + cmd["duration"]

        calls = []

        async def task(i):
            asyncio.current_task().set_name(f"task{i}")
            n = 0
            while time.time() < stop_at:
                t = BASE_S + rng.randrange(0, 100_000) * 60
                calls.append([f"task{i}", t * 1000, time.time()])
                if fetchers:
                    await fetchers[i].fetch(t, t + 300, node_id=NODE)  # five closed 1m bars: one request
                elif cmd["methods"][n % len(cmd["methods"])] == "fetch_trades":
                    await sessions[i].call("fetch_trades", SYMBOL, t * 1000, 5)
                else:
                    await sessions[i].call("fetch_ohlcv", SYMBOL, "1m", since=t * 1000, limit=5)
                n += 1
            return n

        done = await asyncio.gather(*[task(i) for i in range(cmd["tasks"])], return_exceptions=True)
    for s in sessions:
        await s.close()
    return {
        "events": events,
        "errors": [repr(d) for d in done if isinstance(d, BaseException)],
        "calls": calls,
        "stats": scope.stats.as_dict(),
        "limiter_stats": limiter.stats.as_dict(),
        "session_stats": [{"requests": s.stats.requests, "rate_limited": s.stats.rate_limited} for s in sessions],
        "same_limiter": all(s.limiter is limiter for s in sessions),
        "mode": limiter.mode,
    }


def serve(fin, fout):
    global emit, stdin
    stdin = fin

    def emit(obj):
        fout.write(json.dumps(obj) + "\n")
        fout.flush()

    while True:
        line = fin.readline()
        if not line or line.strip() == "quit":
            break
        try:
            result = asyncio.run(scenario(json.loads(line)))
        except BaseException:
            result = {"error": traceback.format_exc()}
        finally:
            reset_registry()
        emit(result)


# The zygote: imports (and warms ccxt) once, then forks one worker process per request. Each worker
# is a separate OS process with its own registry, event loop and Redis connections.
import ccxt.async_support  # noqa: E402,F401
from ccxt_questdb_assets.exchange.client import build_exchange  # noqa: E402

import signal  # noqa: E402

from ccxt_questdb_assets.core.timeframes import Timeframe  # noqa: E402
from ccxt_questdb_assets.core.validation import candles_frame  # noqa: E402

build_exchange("binance", base_url="http://127.0.0.1:9", async_=True)
candles_frame([[BASE_S * 1000, 1.0, 2.0, 0.5, 1.5, 10.0]], Timeframe.parse("1m"))
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped as soon as they exit
print("hello", flush=True)
while True:
    line = sys.stdin.readline()
    if not line:
        break
    fifo_in, fifo_out = line.split()
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        with open(fifo_in) as fin, open(fifo_out, "w") as fout:
            serve(fin, fout)
        os._exit(0)
    print(pid, flush=True)
"""


class WorkerPool:
    """Worker processes forked from one zygote that imported everything once; they run scenarios
    together from one start instant and talk to this process over named pipes."""

    def __init__(self, n: int, workdir: Path) -> None:
        self._reader = concurrent.futures.ThreadPoolExecutor(n + 1, thread_name_prefix="worker-reader")
        self.log = workdir / "workers.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log, "w") as err:
            self.zygote = subprocess.Popen(
                [sys.executable, "-c", WORKER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
            )
        self.pids: list[int] = []
        self.ins: list[Any] = []
        self.outs: list[Any] = []
        boost(self.zygote.pid)  # the workers forked from it inherit the priority
        self._await(self.zygote.stdout.readline, 180, "the worker zygote did not start")
        for i in range(n):
            fifo_in, fifo_out = workdir / f"in{i}", workdir / f"out{i}"
            os.mkfifo(fifo_in)
            os.mkfifo(fifo_out)
            self.zygote.stdin.write(f"{fifo_in} {fifo_out}\n")
            self.zygote.stdin.flush()
            self.pids.append(int(self._await(self.zygote.stdout.readline, 30, "fork failed")))
            self.ins.append(open(fifo_in, "w"))  # noqa: SIM115 - kept open for the module
            self.outs.append(open(fifo_out))  # noqa: SIM115

    def _await(self, fn: Callable[[], str], timeout: float, what: str) -> str:
        fut = self._reader.submit(fn)
        try:
            line = fut.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            tail = self.log.read_text()[-3000:]
            self.close()
            raise AssertionError(f"{what} within {timeout} s (deadlock?)\n{tail}") from None
        if not line:
            raise AssertionError(f"{what}: a worker died\n{self.log.read_text()[-3000:]}")
        return line

    def _read(self, i: int, timeout: float) -> dict:
        return json.loads(self._await(self.outs[i].readline, timeout, f"worker {i} did not answer"))

    def _send(self, i: int, text: str) -> None:
        self.ins[i].write(text + "\n")
        self.ins[i].flush()

    def run(
        self,
        commands: list[dict],
        control: Any,
        *,
        during: Callable[[float], None] | None = None,
        lead_s: float = 0.5,
        slack_s: float = 40.0,
    ) -> tuple[float, list[dict]]:
        """Run ``commands[i]`` on worker ``i``; ``during(start_at)`` runs meanwhile in this thread.

        The emulator's log is cleared once every worker is warm: it then holds the limited traffic only.
        """
        for i, cmd in enumerate(commands):
            self._send(i, json.dumps(cmd))
        for i in range(len(commands)):
            ready = self._read(i, 120)
            assert ready.get("ready"), ready.get("error", ready)
        control.clear_requests()
        start_at = time.time() + lead_s
        for i in range(len(commands)):
            self._send(i, repr(start_at))
        if during is not None:
            during(start_at)
        duration = max(c["duration"] for c in commands)
        results = [self._read(i, max(1.0, start_at + duration + slack_s - time.time())) for i in range(len(commands))]
        for i, r in enumerate(results):
            assert "error" not in r, f"worker {i}: {r['error']}"
            assert r["errors"] == [], f"worker {i}: {r['errors']}"
            assert r["same_limiter"], "sessions of one process did not share the limiter object"
        return start_at, results

    def close(self) -> None:
        for f in self.ins:  # EOF: each worker leaves its loop and exits
            try:
                f.close()
            except OSError:
                pass
        for pid in self.pids:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    if os.waitpid(pid, os.WNOHANG)[0]:
                        break
                except ChildProcessError:  # the zygote's child, reaped as soon as it exits
                    try:
                        os.kill(pid, 0)
                    except ProcessLookupError:
                        break
                time.sleep(0.05)
            else:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        for f in self.outs:
            f.close()
        if self.zygote.poll() is None:
            self.zygote.stdin.close()
            try:
                self.zygote.wait(5)
            except subprocess.TimeoutExpired:
                self.zygote.kill()
                self.zygote.wait()
        self._reader.shutdown(wait=False, cancel_futures=True)


@pytest.fixture(scope="module")
def pool(tmp_path_factory, emulator):
    boost(os.getpid())
    boost(getattr(getattr(emulator.server, "proc", None), "pid", None))
    workers = WorkerPool(4, tmp_path_factory.mktemp("ratelimit-workers"))
    yield workers
    workers.close()


@pytest.fixture(autouse=True)
def _fresh_registry(redis_server):
    boost(getattr(redis_server, "pid", None))
    reset_registry()
    yield
    reset_registry()


# ---------------------------------------------------------------------------- referee helpers
def arrivals(log: list[dict], since: float = float("-inf"), until: float = float("inf")) -> list[float]:
    return sorted(r["time_ms"] / 1000.0 for r in log if since <= r["time_ms"] / 1000.0 < until)


def max_in_window(times_s: list[float], window: float = 1.0, weights: list[float] | None = None) -> float:
    """The most events (or weight) any half-open window ``[t, t + window)`` holds."""
    pairs = sorted(zip(times_s, weights or [1.0] * len(times_s), strict=True))
    best, j, acc = 0.0, 0, 0.0
    for t, w in pairs:
        acc += w
        while t - pairs[j][0] >= window - 1e-9:
            acc -= pairs[j][1]
            j += 1
        best = max(best, acc)
    return best


def worst_window_start(times_s: list[float], window: float = 1.0) -> float:
    times_s = sorted(times_s)
    best, at, j = 0, times_s[0] if times_s else 0.0, 0
    for i, t in enumerate(times_s):
        while t - times_s[j] >= window - 1e-9:
            j += 1
        if i - j + 1 > best:
            best, at = i - j + 1, times_s[j]
    return at


def explain(log: list[dict], results: list[dict], start_at: float, around: float) -> str:
    """Arrivals and admissions (process, wait) near ``around``, relative to the start: for failures."""
    arr = [round(t - start_at, 3) for t in arrivals(log, around - 0.5, around + 1.5)]
    adm = sorted(
        (round(e[1] - start_at, 3), i, round(e[2], 3)) if e[0] == "admitted" else (round(e[1] - start_at, 3), i, e[3])
        for i, r in enumerate(results)
        for e in r["events"]
        if e[0] in ("admitted", "redis_error") and around - 1.0 <= e[1] < around + 1.5
    )
    stats = [
        {k: v for k, v in r["stats"].items() if k in ("redis_errors", "fallback_events", "timeouts")} for r in results
    ]
    return f"\narrivals (s after start) {arr}\nadmissions (s, process, waited) {adm}\nstats {stats}"


def admissions(results: list[dict], source: str | None = None) -> list[float]:
    return sorted(
        e[1] for r in results for e in r["events"] if e[0] == "admitted" and (source is None or e[3] == source)
    )


def command(url: str, limiter: dict, *, duration: float, mode: str = "fetcher", tasks: int = 2, **extra) -> dict:
    return {
        "url": url,
        "limiter": limiter,
        "duration": duration,
        "mode": mode,
        "tasks": tasks,
        "methods": extra.pop("methods", ["fetch_ohlcv"]),
        "seed": extra.pop("seed", 0),
        **extra,
    }


def cluster_options(redis_url: str, **extra) -> dict:
    opts = {
        "scope": "cluster",
        "redis_dsn": redis_url,
        "max_concurrency": 2,
        "key_suffix": "acc-" + uuid.uuid4().hex[:8],
    }
    opts.update(extra)
    return opts


# ---------------------------------------------------------------------------- acceptance
def test_four_processes_two_tasks_share_rate_and_burst(pool, emulator, emulator_control, redis_url):
    """4 processes x 2 async tasks, each task its own CcxtOHLCVFetcher, one cluster key at R
    requests a second with burst B: every sliding 1-second window of the emulator's log holds at
    most R + B requests, and the 20 s run gets at least 95 % of R."""
    rate, burst, duration = 10, 3, 20.0
    opts = cluster_options(redis_url, min_interval_s=1 / rate, burst=burst)
    cmds = [command(emulator.base_url, opts, duration=duration, seed=i) for i in range(4)]
    start_at, results = pool.run(cmds, emulator_control)
    log = emulator_control.requests()
    assert {r["path"] for r in log} == {KLINES}
    assert all(r["status"] == 200 for r in log)
    seen = arrivals(log)
    worst = max_in_window(seen)
    in_run = arrivals(log, start_at, start_at + duration)
    print(f"4x2: {len(in_run)} requests in {duration:.0f} s (R*T = {rate * duration:.0f}), worst 1 s window {worst:g}")
    assert worst <= rate + burst, f"the emulator saw {worst} requests in one second (R + B = {rate + burst})" + explain(
        log, results, start_at, worst_window_start(seen)
    )
    assert len(in_run) >= 0.95 * rate * duration
    # the limiters' side agrees: every admission went through Redis, within the same bound
    sent = admissions(results)
    assert max_in_window(sent) <= rate + burst
    assert all(e[3] == "redis" for r in results for e in r["events"] if e[0] == "admitted")
    assert sum(r["limiter_stats"]["requests"] for r in results) == len(seen)  # one admission per request
    per_process = [len([t for t in admissions([r]) if start_at <= t < start_at + duration]) for r in results]
    assert min(per_process) >= 0.5 * rate * duration / 4, f"a process starved: {per_process}"


def test_quick_start_as_written_one_request_per_1_2_s_across_processes(pool, emulator, emulator_control, redis_url):
    """The spec's quick start, as written (``burst`` and no ``tokens_per_interval``), in 4
    processes: the emulator sees one request per 1.2 s, whatever the number of callers."""
    r = redis.Redis.from_url(redis_url)
    r.delete("ccxt:binance")  # the quick start has no key_suffix: start from a fresh bucket
    r.close()
    quick_start = {
        "max_concurrency": 1,
        "min_interval_s": 1.2,
        "scope": "cluster",  # or "process"
        "redis_dsn": redis_url,
        "burst": 1,
    }
    duration = 6.0
    cmds = [command(emulator.base_url, quick_start, duration=duration, tasks=1, seed=i) for i in range(4)]
    start_at, results = pool.run(cmds, emulator_control)
    seen = arrivals(emulator_control.requests())
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(seen)]
    print(f"quick start: {len(seen)} requests, gaps {gaps}")
    # 1.2 s apart at Redis; 50 ms allowed for the way from the admission to the emulator's log
    at = seen[gaps.index(min(gaps))]
    assert min(gaps) >= 1.2 - 0.05, f"gaps {gaps}" + explain(emulator_control.requests(), results, start_at, at)
    assert max_in_window(seen) == 1
    in_run = arrivals(emulator_control.requests(), start_at, start_at + duration)
    assert len(in_run) >= int(duration / 1.2) - 1  # and it does not go much slower either


def test_429_with_retry_after_pauses_every_process(pool, emulator, emulator_control, redis_url):
    """One 429 with ``Retry-After: 2`` answered to one process: no process sends the key anything
    for 2 s (penalty_backoff_ms is only 100 ms, so the Retry-After is what counts)."""
    rate, burst, duration = 10, 2, 6.0
    opts = cluster_options(redis_url, min_interval_s=1 / rate, burst=burst, penalty_backoff_ms=100)
    cmds = [command(emulator.base_url, opts, duration=duration, mode="session", seed=i) for i in range(4)]

    def arm(start_at: float) -> None:
        time.sleep(max(0.0, start_at + 1.5 - time.time()))
        emulator_control.inject("429", count=1, path=KLINES, retry_after=2)

    _, results = pool.run(cmds, emulator_control, during=arm)
    log = emulator_control.requests()
    hits = [r for r in log if r["status"] == 429]
    assert len(hits) == 1
    t429 = hits[0]["time_ms"] / 1000.0
    penalties = [e for r in results for e in r["events"] if e[0] == "penalty"]
    assert len(penalties) == 1, penalties  # only the process that got the 429 penalized
    penalty_landed = penalties[0][1]
    assert penalties[0][2] == pytest.approx(2.0, abs=0.05)  # Retry-After, not penalty_backoff_ms
    assert penalty_landed - t429 < 0.5
    # limiter side: nothing admitted in any process from the penalty until Retry-After ran out
    sent = admissions(results)
    assert [round(s - t429, 3) for s in sent if penalty_landed <= s < t429 + 2.0] == []
    # emulator side: only what was already on its way when the 429 was answered (admitted before
    # the penalty reached Redis) arrived after it; nothing at all later in the 2 s
    quiet = arrivals(log, t429 + 0.001, t429 + 2.0)
    in_flight = [s for s in sent if t429 - 0.5 <= s < penalty_landed]
    print(
        f"429: penalty in Redis {1000 * (penalty_landed - t429):.0f} ms after the 429; "
        f"arrivals in the next 2 s: {[round(t - t429, 3) for t in quiet]}"
    )
    assert len(quiet) <= len(in_flight)
    assert [t for t in quiet if t >= penalty_landed + 0.25] == []
    after = arrivals(log, t429 + 2.0, t429 + 3.5)
    assert after, "traffic did not resume after the cooldown"
    assert all(r["stats"]["cooldown_waits"] >= 1 for r in results)  # every process waited it out
    assert sum(s["rate_limited"] for r in results for s in r["session_stats"]) == 1


def test_redis_outage_mid_run_falls_back_then_shares_again(pool, emulator, emulator_control, redis_server, redis_url):
    """Redis stopped in the middle of a run: no deadlock, each of the 2 processes goes on at the
    fallback limit (fallback_fraction 0.5: half the rate each, the total stays at R), and they
    share one budget again once Redis is back."""
    rate, burst, duration = 10, 2, 10.0
    opts = cluster_options(
        redis_url,
        min_interval_s=1 / rate,
        burst=burst,
        redis_retry_s=0.3,
        redis_timeout_s=0.5,
        fallback_fraction=0.5,
    )
    cmds = [command(emulator.base_url, opts, duration=duration, seed=i) for i in range(2)]
    times: dict[str, float] = {}

    def outage(start_at: float) -> None:
        time.sleep(max(0.0, start_at + 3.0 - time.time()))
        try:
            times["down"] = time.time()
            redis_server.stop()
            times["stopped"] = time.time()
            time.sleep(max(0.0, start_at + 6.5 - time.time()))
        finally:
            redis_server.start()
            times["up"] = time.time()
            boost(getattr(redis_server, "pid", None))

    start_at, results = pool.run(cmds, emulator_control, during=outage)  # no deadlock: every worker finished on time
    log = emulator_control.requests()
    assert all(r["status"] == 200 for r in log)
    for r in results:
        kinds = [e[0] for e in r["events"]]
        assert kinds.count("fallback") == 1 and "resumed" in kinds, kinds  # one warning per outage
        assert r["stats"]["fallback_requests"] > 0
        fell = min(e[1] for e in r["events"] if e[0] == "fallback")
        resumed = max(e[1] for e in r["events"] if e[0] == "resumed")
        assert fell < times["stopped"] + 1.0
        assert resumed < times["up"] + 1.5
        # after the resume every new turn comes from Redis again (turns taken from the fallback
        # bucket before it, at most 2 tasks x 1/(R/2) ahead, may still be used)
        late = [
            round(e[1] - resumed, 3) for e in r["events"] if e[0] == "admitted" and e[1] > resumed and e[3] != "redis"
        ]
        assert [t for t in late if t > 2 / (rate * 0.5) + 0.2] == [], late
    # during the outage: the run goes on at the fallback limit (R/2 + B each, R + 2B together)
    outage_log = arrivals(log, times["stopped"] + 0.6, times["up"])
    span = times["up"] - times["stopped"] - 0.6
    print(f"outage: {len(outage_log)} requests in {span:.1f} s, worst window {max_in_window(outage_log):g}")
    assert len(outage_log) >= 0.8 * rate * span
    assert max_in_window(outage_log) <= rate + 2 * burst
    for r in results:
        fb = admissions([r], "fallback")
        assert max_in_window(fb) <= rate * 0.5 + burst
    # back to one shared budget
    resumed_all = max(e[1] for r in results for e in r["events"] if e[0] == "resumed")
    shared = arrivals(log, resumed_all + 0.5, start_at + duration)
    assert len(shared) >= 0.8 * rate * (start_at + duration - resumed_all - 0.5)
    assert max_in_window(shared) <= rate + burst


def test_request_weights_per_endpoint_against_the_emulators_accounting(pool, emulator, emulator_control, redis_url):
    """Weights declared per endpoint (Binance: klines 2, aggTrades 4, exchangeInfo 20): 2 processes
    mixing fetch_ohlcv and fetch_trades on a 40-weight-a-second budget. The emulator charges its
    own Binance weights: its log must show the weight budget held, not the request count."""
    rate, burst, duration = 40, 40, 5.0
    opts = cluster_options(redis_url, tokens_per_interval=rate, interval_ms=1000, burst_tokens=burst)
    cmds = [
        command(
            emulator.base_url, opts, duration=duration, mode="session", methods=["fetch_ohlcv", "fetch_trades"], seed=i
        )
        for i in range(2)
    ]
    start_at, results = pool.run(cmds, emulator_control)
    log = emulator_control.requests()
    assert {r["path"] for r in log} >= {KLINES, "/api/v3/aggTrades"}
    assert all(r["status"] == 200 for r in log)
    times = [r["time_ms"] / 1000.0 for r in log]
    weights = [float(r["weight"]) for r in log]
    worst = max_in_window(times, weights=weights)
    in_run = sum(w for t, w in zip(times, weights, strict=True) if start_at <= t < start_at + duration)
    print(f"weights: {in_run:g} weight in {duration:g} s, worst window {worst:g}, requests {len(log)}")
    assert worst <= rate + burst
    assert in_run >= 0.9 * rate * duration
    # the limiter charged exactly what the exchange charged
    charged = sum(r["limiter_stats"]["tokens"] for r in results)
    assert charged == pytest.approx(sum(weights))
    # and the request count alone would have been far beyond a 40-requests-a-second reading
    assert len(log) < 0.6 * (rate + burst) * (duration + 1)
