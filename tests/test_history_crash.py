"""Crash safety and concurrent fills of the history engine, with real processes.

A backfill runs in a child process (``tests/backfill_worker.py``) against the real QuestDB and
the exchange emulator through real ccxt. One child is SIGKILLed mid-run and the work resumed
from coverage; two children fill the same range at once. Ground truth is the emulator's market.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
from test_history_backfill import KLINES, MIN, klines_requests, utc_ms

from ccxt_questdb_assets import CcxtQuestDBProvider
from ccxt_questdb_assets.core.windows import TimeWindow
from ccxt_questdb_assets.history.backfill import MAX_PAGES_IN_FLIGHT
from ccxt_questdb_assets.testing.fixtures_services import wait_for_wal

WORKER = str(Path(__file__).with_name("backfill_worker.py"))
SYMBOL = "BTC/USDT"
NODE = f"ohlcv:binance:{SYMBOL}:1m"
PAGE = 1000


def provider_config(questdb, emulator, prefix: str) -> dict:
    conn = questdb.connection
    return {
        "exchange": "binance",
        "symbols": [SYMBOL],
        "timeframe": "1m",
        "questdb": {"host": conn.host, "port": conn.port, "http_port": conn.http_port, "table_prefix": prefix},
        "base_url": emulator.base_url,
        "rate_limiter": {"scope": "local", "max_concurrency": 4},
        "retry_backoff_s": 0.01,
        "window_size": PAGE,
    }


def spawn(cfg: dict, start_ms: int, end_ms: int, *, wait_go: bool = False) -> subprocess.Popen:
    args = {"config": cfg, "node_id": NODE, "start_s": start_ms // 1000, "end_s": end_ms // 1000, "wait_go": wait_go}
    return subprocess.Popen(
        [sys.executable, WORKER, json.dumps(args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_ready(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline()  # the worker prints "ready" once ccxt and the markets are loaded
    if line.strip() != "ready":
        proc.kill()
        raise AssertionError(f"worker did not start: {line!r}\n{proc.stderr.read()[-3000:]}")


def finish(proc: subprocess.Popen, timeout: float = 60.0) -> dict:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("a backfill worker did not finish in time") from None
    assert proc.returncode == 0, f"worker failed ({proc.returncode}):\n{err[-3000:]}"
    return json.loads(out.strip().splitlines()[-1])


def stored(conn, table: str) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Every row of ``table``: ts (ms), OHLCV matrix, row count and distinct-ts count."""
    wait_for_wal(conn, table)
    rows = conn.execute(
        f"SELECT cast(ts AS long), open, high, low, close, volume, closed FROM {table} ORDER BY ts"
    ).fetchall()
    count, distinct = conn.execute(f"SELECT count(), count_distinct(cast(ts AS long)) FROM {table}").fetchone()
    ts = np.array([r[0] // 1000 for r in rows], dtype=np.int64)
    values = np.array([r[1:6] for r in rows], dtype=float).reshape(-1, 5)
    assert all(r[6] for r in rows), "a bar of a past month is stored as not closed"
    return ts, values, int(count), int(distinct)


def assert_exact(emulator, conn, table: str, start_ms: int, end_ms: int) -> int:
    truth = emulator.market.candles(SYMBOL.replace("/", ""), "1m", start_ms, end_ms)
    want_ts = np.array([r[0] for r in truth], dtype=np.int64)
    want = np.array([r[1:6] for r in truth], dtype=float)
    ts, values, count, distinct = stored(conn, table)
    assert count == distinct, f"{count - distinct} duplicate rows in {table}"
    assert count == len(truth) == (end_ms - start_ms) // MIN
    np.testing.assert_array_equal(ts, want_ts)
    np.testing.assert_array_equal(values, want)
    return count


def coverage_of(provider: CcxtQuestDBProvider):
    return asyncio.run(provider.backend.load_coverage(provider.fetcher.node(NODE)))


def in_any(ms: int, windows: list[TimeWindow]) -> bool:
    return any(w.start_ms <= ms < w.end_ms for w in windows)


def test_killed_backfill_resumes_from_coverage_and_refetches_only_the_rest(
    questdb, questdb_conn, emulator, emulator_control
):
    start, end = utc_ms(2024, 1, 1), utc_ms(2024, 1, 31)
    bars = (end - start) // MIN
    assert bars == 43_200
    pages = math.ceil(bars / PAGE)
    prefix = "crash_" + uuid.uuid4().hex[:10]
    cfg = provider_config(questdb, emulator, prefix)
    table = f"{prefix}_ohlcv"

    # Slow every kline answer a little, so that the kill lands while the child is paging.
    emulator_control.inject("delay", count=10 * pages, path=KLINES, delay_s=0.15)
    proc = spawn(cfg, start, end)
    wait_ready(proc)
    kill_at = pages // 3
    deadline = time.monotonic() + 60
    t0 = time.monotonic()
    while emulator_control.count(KLINES) < kill_at:
        if proc.poll() is not None:
            raise AssertionError(f"the worker ended before the kill ({proc.returncode}):\n{proc.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, "the worker did not page in time"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    run_s = time.monotonic() - t0
    assert proc.returncode == -signal.SIGKILL
    before_kill = klines_requests(emulator_control)
    emulator_control.clear_faults()

    provider = CcxtQuestDBProvider.from_config(cfg)
    now = provider.fetcher.clock()
    window = TimeWindow(start, end)
    coverage = coverage_of(provider)
    covered = coverage.covered(now)
    covered_bars = coverage.covered_ms(window, now) // MIN
    wait_for_wal(questdb_conn, table)
    rows_at_kill = questdb_conn.execute(f"SELECT count() FROM {table}").fetchone()[0]
    # The kill landed mid-run: some pages are stored and covered, most are not.
    assert 0 < covered_bars < bars, (covered_bars, len(before_kill))
    assert rows_at_kill >= covered_bars
    gaps = coverage.gaps(window, now)
    expected = sum(math.ceil(g.duration_ms // MIN / PAGE) for g in gaps)

    emulator_control.clear_requests()
    t1 = time.monotonic()
    report = provider.ensure_range_sync(start // 1000, end // 1000, node_id=NODE)
    rerun_s = time.monotonic() - t1
    rerun = klines_requests(emulator_control)
    starts = sorted(int(r["params"]["startTime"]) for r in rerun)

    # Only what coverage did not hold was asked again, page by page from each gap's start.
    assert [s for s in starts if in_any(s, covered)] == []
    assert all(in_any(s, gaps) for s in starts)
    assert expected <= len(rerun) <= expected + 1, (len(rerun), expected, [str(g) for g in gaps])
    assert starts[0] == gaps[0].start_ms
    assert report.requests == len(rerun)
    # Compared with what the child had asked, only pages in flight at the kill are asked again: the
    # batch being stored, those queued behind it and the one being fetched.
    assert len(before_kill) + len(rerun) <= pages + MAX_PAGES_IN_FLIGHT

    assert_exact(emulator, questdb_conn, table, start, end)
    assert coverage_of(provider).gaps(window, provider.fetcher.clock()) == []
    print(
        f"\nkill after {len(before_kill)}/{pages} kline requests ({run_s:.1f} s); covered {covered_bars} bars, "
        f"{rows_at_kill} rows stored; rerun {len(rerun)} requests (expected {expected}) in {rerun_s:.1f} s"
    )


def test_two_processes_filling_the_same_range_store_each_row_once(questdb, questdb_conn, emulator, emulator_control):
    start, end = utc_ms(2024, 2, 1), utc_ms(2024, 2, 11)
    bars = (end - start) // MIN
    pages = math.ceil(bars / PAGE)
    prefix = "twin_" + uuid.uuid4().hex[:10]
    cfg = provider_config(questdb, emulator, prefix)
    table = f"{prefix}_ohlcv"

    procs = [spawn(cfg, start, end, wait_go=True) for _ in range(2)]
    for p in procs:
        wait_ready(p)
    emulator_control.clear_requests()
    # Both wait with ccxt and the markets loaded: release them together.
    t0 = time.monotonic()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    reports = [finish(p) for p in procs]
    both_s = time.monotonic() - t0
    requests = klines_requests(emulator_control)
    assert all(r["status"] == 200 for r in requests)
    # Both paged the whole range (each found it uncovered), at the same time.
    by_start = Counter(int(r["params"]["startTime"]) for r in requests)
    assert len(by_start) == pages and set(by_start.values()) == {2}, by_start
    first = sorted(r["seq"] for r in requests if int(r["params"]["startTime"]) == start)
    last = sorted(r["seq"] for r in requests if int(r["params"]["startTime"]) == max(by_start))
    assert first[1] < last[0], "the two workers did not overlap"
    assert sum(r["rows_written"] for r in reports) >= bars

    count = assert_exact(emulator, questdb_conn, table, start, end)
    provider = CcxtQuestDBProvider.from_config(cfg)
    window = TimeWindow(start, end)
    assert coverage_of(provider).gaps(window, provider.fetcher.clock()) == []
    cov_table = provider.backend.tables.coverage
    wait_for_wal(questdb_conn, cov_table)
    live = questdb_conn.execute(
        f"SELECT cast(ts AS long), cast(end_ts AS long), empty FROM {cov_table} WHERE end_ts > ts"
    ).fetchall()
    assert live == [(start * 1000, end * 1000, False)]  # both extended the same row in place

    emulator_control.clear_requests()
    frame = provider.fetch_sync(start // 1000, end // 1000, node_id=NODE)
    assert emulator_control.requests() == []
    assert len(frame) == count
    print(f"\ntwo workers: {len(requests)} kline requests for {pages} pages, {count} rows, {both_s:.1f} s")
