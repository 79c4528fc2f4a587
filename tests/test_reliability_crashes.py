"""Reliability of the Dagster ingest asset under crashes, restarts, outages and concurrency.

Every run is a real Dagster run (``materialize`` on a ``DagsterInstance`` in a temp
``DAGSTER_HOME``) of the candle asset built from a ``ProjectConfig``, against real QuestDB,
real ccxt and the exchange emulator. Runs go in children forked from a fork server that has
Dagster and ccxt imported (``ccxt_questdb_assets.testing.dagster_runs``), so that they can be
SIGKILLed at any point and a trial costs no 8 s import. Ground truth is the emulator's market.

After every disturbance the same invariants are checked: every bar coverage claims is stored
and equals the exchange's, no row is stored twice, and a rerun makes the days exact and
fully covered.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import re
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from dagster import DagsterInstance, DagsterRunStatus

from ccxt_questdb_assets.core.clock import wall_clock_ms
from ccxt_questdb_assets.core.windows import TimeWindow
from ccxt_questdb_assets.defs.partitions import day_window, symbols_partitions
from ccxt_questdb_assets.defs.project_config import ProjectConfig
from ccxt_questdb_assets.services.questdb_server import QuestDBServer
from ccxt_questdb_assets.services.redis_server import RedisServer
from ccxt_questdb_assets.storage.client import QuestDBClient
from ccxt_questdb_assets.storage.coverage_store import CoverageStore
from ccxt_questdb_assets.testing.candles import assert_candles_exact, stored_candles, truth_candles
from ccxt_questdb_assets.testing.dagster_runs import (
    TRIP_PHASES,
    RunProcess,
    RunSpec,
    Trip,
    make_event,
    run_materialization,
    run_statuses,
    shut_down,
    start_run,
    warm_up,
)
from ccxt_questdb_assets.testing.fixtures_services import _service_env, _start_questdb

SYMBOL = "BTC/USDT"
NODE = f"ohlcv:binance:{SYMBOL}:1m"
KLINES = "/api/v3/klines"
MIN = 60_000
PAGE = 1000


# ------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def fork_server() -> Iterator[None]:
    """The fork server of this module's runs, started early so that its imports overlap the setup."""
    warm_up()
    yield
    shut_down()


def reliability_project(
    questdb, emulator, prefix: str, *, rate_limiter: dict | None = None, window_size: int = PAGE
) -> dict:
    """One exchange, one symbol, 1m candles, on a fresh table prefix."""
    conn = questdb.connection
    return {
        "start_date": "2024-01-01",
        "questdb": {"host": conn.host, "port": conn.port, "http_port": conn.http_port, "table_prefix": prefix},
        "rate_limiter": rate_limiter or {"scope": "local", "max_concurrency": 2},
        "exchanges": {
            "binance": {
                "base_url": emulator.base_url,
                "symbols": [SYMBOL],
                "timeframes": ["1m"],
                "retry_backoff_s": 0.01,
                "window_size": window_size,
            }
        },
    }


def dagster_home(path: Path) -> str:
    """A Dagster instance directory (SQLite storage) with the symbol partition added."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with DagsterInstance.from_config(str(path)) as inst:
        inst.add_dynamic_partitions(symbols_partitions("binance").name, [SYMBOL])
    return str(path)


def days_window(first_day: str, last_day: str) -> TimeWindow:
    return TimeWindow(day_window(first_day).start_ms, day_window(last_day).end_ms)


@dataclass
class Snapshot:
    """What QuestDB holds for the series over a window: rows, claims, and their agreement."""

    rows: int  # rows of the series in the window
    table_rows: int  # rows of the whole data table (one series per table prefix)
    covered: list[TimeWindow]  # coverage claims clipped to the window
    covered_bars: int


def snapshot(server, project: dict, emulator, window: TimeWindow) -> Snapshot:
    """Read the series and its coverage, and assert the crash invariants: every stored row equals
    the exchange's bar (nothing half-written or foreign), no timestamp is stored twice, and every
    bar coverage claims is stored as a closed row."""
    tables = ProjectConfig.from_mapping(project).exchanges[0].ohlcv.tables
    client = QuestDBClient(server.connection)
    try:
        client.wait_visible(tables.data)
        client.wait_visible(tables.coverage)
        coverage = CoverageStore(client, tables.coverage).load(NODE)
        ((count, distinct),) = client.query(f"SELECT count(), count_distinct(ts) FROM {tables.data}")
        open_rows = client.query(f"SELECT count() FROM {tables.data} WHERE NOT closed")[0][0]
    finally:
        client.close()
    assert count == distinct, f"{count - distinct} duplicate rows in {tables.data}"
    assert open_rows == 0, f"{open_rows} bars of a past day stored as open"
    got = stored_candles(server, tables.data, SYMBOL, window.start_ms, window.end_ms)
    truth = truth_candles(emulator, SYMBOL, window.start_ms, window.end_ms)
    ts = got["ts"].dt.as_unit("ms").astype("int64").to_numpy()
    index = np.searchsorted(truth[:, 0], ts)
    assert np.all(index < len(truth)) and np.array_equal(truth[np.minimum(index, len(truth) - 1), 0], ts), (
        "a stored timestamp is not a bar of the exchange"
    )
    np.testing.assert_array_equal(
        got[["open", "high", "low", "close", "volume"]].to_numpy(),
        truth[index, 1:6],
        err_msg="a stored bar differs from the exchange's",
    )
    now = wall_clock_ms()
    covered = [w for c in coverage.covered(now) if (w := c.clip(window)).duration_ms > 0]
    for w in covered:
        want = truth[(truth[:, 0] >= w.start_ms) & (truth[:, 0] < w.end_ms), 0]
        have = ts[(ts >= w.start_ms) & (ts < w.end_ms)]
        missing = np.setdiff1d(want, have)
        assert missing.size == 0, (
            f"coverage claims {w} but {missing.size} of its bars are not stored (first {int(missing[0])})"
        )
    return Snapshot(len(got), int(count), covered, sum(w.duration_ms for w in covered) // MIN)


def assert_exact_and_covered(server, project: dict, emulator, window: TimeWindow) -> Snapshot:
    snap = snapshot(server, project, emulator, window)
    table = ProjectConfig.from_mapping(project).exchanges[0].ohlcv.tables.data
    assert_candles_exact(
        stored_candles(server, table, SYMBOL, window.start_ms, window.end_ms),
        truth_candles(emulator, SYMBOL, window.start_ms, window.end_ms),
        what=table,
    )
    assert snap.covered == [window], f"coverage after the rerun: {[str(w) for w in snap.covered]}"
    assert snap.table_rows == snap.rows == window.duration_ms // MIN
    return snap


def wait_for_requests(control, n: int, run: RunProcess, timeout: float = 60.0) -> int:
    """Block until the emulator has seen ``n`` kline requests; the run must still be going."""
    deadline = time.monotonic() + timeout
    while (seen := control.count(KLINES)) < n:
        if not run.alive():
            raise AssertionError(
                f"run {run.spec.tag} ended ({run.exitcode()}) after {seen} kline requests, "
                f"before {n}. Log:\n{run.log_tail()}"
            )
        assert time.monotonic() < deadline, f"run {run.spec.tag}: {seen} kline requests in {timeout:.0f} s, not {n}"
        time.sleep(0.01)
    return seen


def rerun(spec: RunSpec, control) -> tuple[dict, list[dict]]:
    """The same partitions again, in this process; returns its summary and its kline requests."""
    control.clear_requests()
    out = run_materialization(replace(spec, trip=None, tag=spec.tag + "-rerun"))
    assert out["success"], f"rerun of {spec.tag} failed: {out['errors']}"
    return out, control.requests(KLINES)


# ------------------------------------------------------------------------- 1. SIGKILLed runs
TRIALS = 10
TRIAL_DAYS = 3
PAGES = math.ceil(TRIAL_DAYS * 1440 / PAGE)  # one data write and one coverage record per page


@dataclass(frozen=True)
class KillPlan:
    """Where trial ``seed`` SIGKILLs its run: after ``after_requests`` kline requests plus
    ``extra_s`` (from outside), or, from inside, at the write of the candles or of the coverage
    that reaches ``page`` (``phase``: before, during or after that write)."""

    seed: int
    days: tuple[str, str]
    after_requests: int = 0
    extra_s: float = 0.0
    target: str | None = None
    page: int = 0
    phase: str = ""
    delay_s: float = 0.0

    def trip(self) -> Trip | None:
        if self.target is None:
            return None
        start = days_window(*self.days).start_ms
        bars = min(self.page * PAGE, TRIAL_DAYS * 1440)
        # The page's last candle; a claim that ends past it.
        at = start + (bars - 1) * MIN if self.target == "data" else start + bars * MIN
        return Trip(self.target, at, self.phase, self.delay_s)

    def __str__(self) -> str:
        if self.target is None:
            return f"after {self.after_requests} requests +{self.extra_s * 1000:.0f} ms"
        timer = f" +{self.delay_s * 1000:.0f} ms" if self.phase == "during" else ""
        return f"{self.target} write of page {self.page}/{PAGES} {self.phase}{timer}"


def kill_plan(seed: int) -> KillPlan:
    """Seeded: the kind cycles (requests, candle write, coverage write), the phase of a write
    cycles (before, during, after), the request count, page and delays are drawn (a coverage
    write killed after its commit is the last one: the edge of a finished run)."""
    rnd = random.Random(seed)
    first = date(2024, 1, 1) + timedelta(days=rnd.randrange(0, 150))
    days = (str(first), str(first + timedelta(days=TRIAL_DAYS - 1)))
    kind = ("requests", "data", "coverage")[seed % 3]
    if kind == "requests":
        return KillPlan(seed, days, after_requests=rnd.randint(1, PAGES - 1), extra_s=round(rnd.uniform(0, 0.25), 3))
    phase = TRIP_PHASES[(seed // 3) % 3]
    page = rnd.randint(1, PAGES)
    if kind == "coverage" and phase == "after":
        page = PAGES  # the last claim committed: all stored and covered, but Dagster never hears of it
    return KillPlan(seed, days, target=kind, page=page, phase=phase, delay_s=round(rnd.uniform(0, 0.03), 4))


@dataclass(frozen=True)
class TrialOutcome:
    plan: KillPlan
    seconds_to_kill: float
    requests_before_kill: int
    rows_at_kill: int
    covered_bars_at_kill: int
    rerun_requests: int

    def row(self) -> str:
        return (
            f"{self.plan.seed} | {self.plan} | {self.seconds_to_kill:.1f} | {self.requests_before_kill} | "
            f"{self.rows_at_kill} | {self.covered_bars_at_kill} | {self.rerun_requests} | exact"
        )


def kill_run(plan: KillPlan, spec: RunSpec, control) -> RunProcess:
    """Start the run and have it SIGKILLed as planned; returns the dead run."""
    if plan.target is None:
        # Slow every kline answer so that the kill lands while pages are in flight or being stored.
        control.inject("delay", count=PAGES, path=KLINES, delay_s=0.2)
    with start_run(spec) as run:
        if plan.target is None:
            wait_for_requests(control, plan.after_requests, run)
            time.sleep(plan.extra_s)
            run.kill()
        else:
            run.process.join(90)
            assert not run.alive(), f"trial {plan.seed}: the trip ({plan}) did not fire within 90 s"
    assert run.exitcode() == -9, f"trial {plan.seed} ({plan}): exit {run.exitcode()}, not SIGKILL:\n{run.log_tail()}"
    assert not spec.result_path.exists(), f"trial {plan.seed}: the run finished before the kill ({plan})"
    return run


@pytest.mark.slow
def test_sigkilled_runs_rerun_exact_with_coverage_only_over_stored_rows(
    fork_server, questdb, emulator, emulator_control, tmp_path
):
    home = dagster_home(tmp_path / "home")  # one instance for all trials, as a deployment has
    outcomes: list[TrialOutcome] = []
    t_all = time.monotonic()
    for seed in range(TRIALS):
        plan = kill_plan(seed)
        project = reliability_project(questdb, emulator, f"rk{seed}_" + uuid.uuid4().hex[:8])
        spec = RunSpec(
            project, home, SYMBOL, *plan.days, trip=plan.trip(), out_dir=str(tmp_path / "runs"), tag=f"trial{seed}"
        )
        window = days_window(*plan.days)
        emulator_control.clear_requests()
        t0 = time.monotonic()
        kill_run(plan, spec, emulator_control)
        killed_s = time.monotonic() - t0
        requests_before = emulator_control.count(KLINES)
        emulator_control.clear_faults()

        at_kill = snapshot(questdb, project, emulator, window)
        out, again = rerun(spec, emulator_control)
        starts = [int(r["params"]["startTime"]) for r in again]
        assert [s for s in starts if any(w.start_ms <= s < w.end_ms for w in at_kill.covered)] == [], (
            f"trial {seed} ({plan}): the rerun asked again for time coverage held"
        )
        md = out["metadata"]
        assert out["partitions"] == TRIAL_DAYS and md["coverage_after"] == 1.0
        assert md["exchange_requests"] == len(again)
        assert md["rows_already_present"] == at_kill.rows
        assert_exact_and_covered(questdb, project, emulator, window)
        # The killed run stays as it was left (no success recorded); the rerun succeeded.
        assert run_statuses(home, spec.tag) == [DagsterRunStatus.STARTED.value]
        assert run_statuses(home, out["tag"]) == [DagsterRunStatus.SUCCESS.value]
        outcomes.append(TrialOutcome(plan, killed_s, requests_before, at_kill.rows, at_kill.covered_bars, len(again)))

    print(
        f"\n{TRIALS} SIGKILL trials of {TRIAL_DAYS} days ({PAGES} pages) in {time.monotonic() - t_all:.1f} s\n"
        "seed | kill point | s to kill | kline requests before | rows at kill | covered bars at kill | "
        "rerun requests | after rerun"
    )
    print("\n".join(o.row() for o in outcomes))
    # The kill points were spread: nothing covered yet, part covered, and reruns that refetched.
    assert any(o.covered_bars_at_kill == 0 for o in outcomes)
    assert any(0 < o.covered_bars_at_kill < TRIAL_DAYS * 1440 for o in outcomes)
    assert sum(o.rerun_requests > 0 for o in outcomes) >= TRIALS // 2


# ---------------------------------------------------------- 2. QuestDB restarted mid-run
@pytest.fixture(scope="module")
def private_questdb(request, tmp_path_factory) -> Iterator[QuestDBServer]:
    """A QuestDB of this module alone: the session one stays up for the other tests."""
    server = _start_questdb(tmp_path_factory.mktemp("questdb_private"), _service_env(request.config))
    try:
        yield server
    finally:
        server.stop()


def stop_questdb(server: QuestDBServer, how: str) -> None:
    """``sigterm``: a clean shutdown; ``sigkill``: a crash (the JVM gets no chance to flush or close)."""
    if how == "sigkill":
        os.kill(server.pid, signal.SIGKILL)
        server.process.wait(30)
    server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_questdb_restarted_mid_run_fails_typed_or_retries_and_rerun_is_exact(
    fork_server, private_questdb, emulator, emulator_control, tmp_path, how
):
    private_questdb.start()  # no-op unless an earlier case left it down
    days = ("2024-02-05", "2024-02-08") if how == "sigterm" else ("2024-02-12", "2024-02-15")
    window = days_window(*days)
    pages = math.ceil(window.duration_ms // MIN / PAGE)
    project = reliability_project(private_questdb, emulator, "rq_" + uuid.uuid4().hex[:8])
    spec = RunSpec(
        project, dagster_home(tmp_path / "home"), SYMBOL, *days, out_dir=str(tmp_path / "runs"), tag=f"questdb-{how}"
    )
    emulator_control.inject("delay", count=pages, path=KLINES, delay_s=0.3)
    with start_run(spec) as run:
        wait_for_requests(emulator_control, 3, run)  # two pages stored or being stored, more to come
        t_down = time.monotonic()
        stop_questdb(private_questdb, how)
        down_s = time.monotonic() - t_down
        private_questdb.start()  # same data dir, same ports
        up_s = time.monotonic() - t_down
        out = run.result(timeout=120)  # bounded: a hang fails here
        run_s = time.monotonic() - run.started
    emulator_control.clear_faults()
    if not out["success"]:
        # A clear typed error naming QuestDB, not a hang or a raw socket error; no password in it.
        assert any(e.startswith("StorageError: ") and "QuestDB" in e for e in out["errors"]), out
        password = re.compile(rf"\b{re.escape(private_questdb.connection.password)}\b")
        assert not any(password.search(e) for e in out["errors"]), "the QuestDB password is in the run's error"
    at_end = snapshot(private_questdb, project, emulator, window)
    again, requests = rerun(spec, emulator_control)
    assert again["metadata"]["rows_already_present"] == at_end.rows
    assert_exact_and_covered(private_questdb, project, emulator, window)
    print(
        f"\nQuestDB {how} after 3 of {pages} requests ({down_s:.1f} s to stop, up again after {up_s:.1f} s); "
        f"run {'succeeded' if out['success'] else 'failed: ' + out['errors'][0][:160]} after {run_s:.1f} s; "
        f"{at_end.rows} rows stored, {at_end.covered_bars} bars covered; rerun {len(requests)} requests"
    )


# ------------------------------------------------------------ 3. Redis stopped mid-run
def test_redis_stopped_mid_run_with_cluster_limiter_loses_no_permit_and_run_is_exact(
    fork_server, questdb, emulator, emulator_control, tmp_path
):
    days = ("2024-03-11", "2024-03-15")
    window = days_window(*days)
    page = 500
    pages = math.ceil(window.duration_ms // MIN / page)
    redis = RedisServer(workdir=tmp_path / "redis").start()  # this test's own: stopping it harms no other
    try:
        limiter = {
            "scope": "cluster",
            "redis_dsn": redis.url,
            "key_suffix": uuid.uuid4().hex[:8],
            "max_concurrency": 2,
            "min_interval_s": 0.02,
            "burst": 2,
            "redis_retry_s": 0.2,
            "redis_timeout_s": 0.5,
        }
        project = reliability_project(
            questdb, emulator, "rr_" + uuid.uuid4().hex[:8], rate_limiter=limiter, window_size=page
        )
        spec = RunSpec(
            project,
            dagster_home(tmp_path / "home"),
            SYMBOL,
            *days,
            probe_limiter=True,
            out_dir=str(tmp_path / "runs"),
            tag="redis-outage",
        )
        emulator_control.inject("delay", count=pages, path=KLINES, delay_s=0.15)
        with start_run(spec) as run:
            wait_for_requests(emulator_control, 3, run)
            redis.stop()
            stopped_at = emulator_control.count(KLINES)
            # The run goes on without Redis (in-process fallback bucket): no deadlock.
            during = wait_for_requests(emulator_control, stopped_at + 4, run) - stopped_at
            redis.start()  # at least 7 pages to go: the run shares through Redis again before it ends
            out = run.result(timeout=60)
            run_s = time.monotonic() - run.started
        emulator_control.clear_faults()
    finally:
        redis.stop()
    assert out["success"], out
    lim = out["limiter"]
    # No lost permit: nothing in flight or queued after the run, and every slot can be taken at once.
    assert (lim["in_flight"], lim["waiting"]) == (0, 0), lim
    assert lim["held_all"] == lim["concurrency"] == 2 and lim["in_flight_after_hold"] == 0, lim
    # It fell back once and shared through Redis again before the run ended.
    assert lim["fallback_events"] == 1 and lim["resumed_events"] >= 1 and lim["mode"] == "cluster", lim["events"]
    assert lim["admitted_by_source"].get("fallback", 0) >= 1 and lim["admitted_by_source"].get("redis", 0) >= 3, lim
    assert out["metadata"]["exchange_requests"] == pages
    assert_exact_and_covered(questdb, project, emulator, window)
    print(
        f"\nRedis down after 3 of {pages} requests, {during} requests during the outage; run {run_s:.1f} s; "
        f"admitted {lim['admitted_by_source']}; events {[e[0] for e in lim['events']]}"
    )


# ------------------------------------------------ 4. concurrent runs, same and overlapping days
def test_concurrent_runs_of_same_and_overlapping_days_store_each_bar_once(
    fork_server, questdb, emulator, emulator_control, tmp_path
):
    project = reliability_project(questdb, emulator, "rc_" + uuid.uuid4().hex[:8])
    home = dagster_home(tmp_path / "home")
    ranges = {"a": ("2024-04-01", "2024-04-04"), "b": ("2024-04-03", "2024-04-06"), "c": ("2024-04-01", "2024-04-04")}
    specs = [
        RunSpec(project, home, SYMBOL, *days, checks=True, out_dir=str(tmp_path / "runs"), tag=tag)
        for tag, days in ranges.items()
    ]
    window = days_window("2024-04-01", "2024-04-06")
    emulator_control.inject("delay", count=40, path=KLINES, delay_s=0.1)
    go = make_event()
    emulator_control.clear_requests()
    with contextlib.ExitStack() as stack:
        runs = [stack.enter_context(start_run(s, go)) for s in specs]
        go.set()  # all three start together
        results = [r.result(timeout=120) for r in runs]
    emulator_control.clear_faults()
    requests = emulator_control.requests(KLINES)
    for out in results:
        assert out["success"], out
        assert out["partitions"] == 4 and out["metadata"]["coverage_after"] == 1.0
        # The run's own checks saw coherent data, whatever the others were writing meanwhile.
        assert out["checks"] == {"no_gaps": True, "unique_increasing_timestamps": True, "ohlc_sanity": True}, out
    with DagsterInstance.from_config(home) as inst:
        records = inst.get_run_records()
    assert len(records) == 3 and all(r.dagster_run.status == DagsterRunStatus.SUCCESS for r in records)
    starts, ends = [r.start_time for r in records], [r.end_time for r in records]
    assert max(starts) < min(ends), "the three runs did not overlap in time"
    snap = assert_exact_and_covered(questdb, project, emulator, window)
    assert sum(out["metadata"]["exchange_requests"] for out in results) == len(requests)

    # Coverage is coherent: the six days again cost no request.
    emulator_control.clear_requests()
    whole = run_materialization(RunSpec(project, home, SYMBOL, "2024-04-01", "2024-04-06", tag="whole"))
    assert whole["success"] and whole["metadata"]["exchange_requests"] == 0
    assert whole["metadata"]["rows_already_present"] == snap.rows == 6 * 1440
    assert emulator_control.requests(KLINES) == []
    print(
        f"\nthree runs at once: {len(requests)} kline requests for {math.ceil(6 * 1440 / PAGE)} pages of the "
        f"union; run seconds {[o['seconds'] for o in results]}"
    )
