"""Automation in a real ``dagster dev`` (daemon, code server, webserver), real QuestDB, real ccxt and
the exchange emulator, with no run launched by the test:

* the refresh schedule (here every minute, running from the start as the project file says) keeps
  today's closed 1m bars and the 1h bars computed from them in their tables: every bar closed
  when the test starts is stored, exact, within ``BOUND_S`` (one cron interval, the scheduler's
  tick and a run: the bound docs/dagster.md states for the default five-minute cron is the same
  with five minutes in place of one);
* a computed asset follows its upstream: a day of 1m candles materialized by hand (a backfill
  launched through GraphQL, as the UI's Materialize does) gets its 1h bars computed by the
  ``follow_upstream`` automation sensor, with no launch for them.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest
import yaml

from ccxt_questdb_assets.dagster_graphql import LAUNCH_BACKFILL
from ccxt_questdb_assets.defs.project_config import ProjectConfig
from ccxt_questdb_assets.testing.candles import (
    assert_bars_equal,
    assert_candles_exact,
    stored_candles,
    truth_candles,
)
from ccxt_questdb_assets.testing.dagster_dev import DagsterDevError, dagster_dev

pytestmark = pytest.mark.timeout(900)

SYMBOL = "BTC/USDT"
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
#: A bar closed when the test starts is in both tables this long after it (cron every minute).
BOUND_S = 180
FOLLOW_BOUND_S = 240
HAND_DAY = "2024-05-07"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture(scope="module")
def live(questdb, emulator, tmp_path_factory):
    work = tmp_path_factory.mktemp("live_automation")
    conn = questdb.connection
    path = work / "project.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "start_date": "2024-01-01",
                "questdb": {
                    "host": conn.host,
                    "port": conn.port,
                    "http_port": conn.http_port,
                    "table_prefix": "live_" + uuid.uuid4().hex[:10],
                },
                "rate_limiter": {"scope": "process", "max_concurrency": 2},
                "refresh": {"cron": "* * * * *", "running": True},
                "exchanges": {
                    "binance": {
                        "base_url": emulator.base_url,
                        "symbols": [SYMBOL],
                        "timeframes": ["1m"],
                        "resample_to": ["1h"],
                        "retry_backoff_s": 0.01,
                    }
                },
            }
        )
    )
    project = ProjectConfig.load(path)
    started_ms = now_ms()
    try:
        with dagster_dev(work, env={"CCXT_QUESTDB_PROJECT": str(path)}, startup_timeout_s=600) as server:
            yield server, project, started_ms
    except DagsterDevError as exc:
        pytest.fail(f"dagster dev: {exc}", pytrace=False)


def tables(project: ProjectConfig) -> tuple[str, str]:
    from ccxt_questdb_assets.defs.derived_assets import resampled_table

    ex = project.exchanges[0]
    return ex.ohlcv.tables.data, resampled_table(ex, "1h").table


def count(questdb, table: str, timeframe: str, start_ms: int, end_ms: int) -> int:
    try:
        return len(stored_candles(questdb, table, SYMBOL, start_ms, end_ms, timeframe=timeframe))
    except Exception:  # noqa: BLE001 - the table does not exist before the first run
        return 0


def wait_for(what: str, done, bound_s: float, server) -> float:
    t0 = time.monotonic()
    while not done():
        if time.monotonic() - t0 > bound_s:
            runs = "; ".join(
                f"{r['runId'][:8]} {r['status']} {dict((t['key'], t['value']) for t in r['tags'])}"
                for r in server.runs()[:6]
            )
            raise AssertionError(f"{what} not within {bound_s} s; runs: {runs}\nlog tail:\n{server.log_tail(3000)}")
        time.sleep(3)
    return time.monotonic() - t0


def test_refresh_stores_todays_closed_bars_and_their_1h_bars_without_a_launch(live, questdb, emulator):
    server, project, started_ms = live
    one_m, one_h = tables(project)
    day = started_ms - started_ms % DAY
    closed_m = started_ms - started_ms % MINUTE  # bars opening before this had closed at the start
    closed_h = started_ms - started_ms % HOUR
    took = wait_for(
        "today's closed 1m and 1h bars",
        lambda: (
            count(questdb, one_m, "1m", day, closed_m) == (closed_m - day) // MINUTE
            and count(questdb, one_h, "1h", day, closed_h) == (closed_h - day) // HOUR
        ),
        BOUND_S,
        server,
    )
    assert_candles_exact(
        stored_candles(questdb, one_m, SYMBOL, day, closed_m),
        truth_candles(emulator, SYMBOL, day, closed_m),
        "today's 1m",
    )
    if closed_h > day:  # in the first hour of a UTC day no 1h bar of today has closed yet
        assert_bars_equal(
            stored_candles(questdb, one_h, SYMBOL, day, closed_h, timeframe="1h"),
            truth_candles(emulator, SYMBOL, day, closed_h, "1h"),
            "today's 1h",
        )
    runs = server.runs()
    assert runs and all(
        any(t["key"] == "dagster/schedule_name" and t["value"] == "binance_refresh" for t in r["tags"]) for r in runs
    ), "every run came from the refresh schedule"
    print(f"today's closed bars stored {took:.0f} s after the test started; {len(runs)} refresh run(s)")


def test_computed_assets_follow_a_materialization_launched_by_hand(live, questdb, emulator):
    server, project, _ = live
    one_m, one_h = tables(project)
    start = int(datetime.fromisoformat(HAND_DAY).replace(tzinfo=UTC).timestamp() * 1000)
    out = server.graphql(
        LAUNCH_BACKFILL,
        {
            "params": {
                "partitionNames": [f"{HAND_DAY}|{SYMBOL}"],
                "assetSelection": [{"path": ["binance", "ohlcv", "ohlcv_1m"]}],
                "title": "one day of 1m candles by hand",
            }
        },
    )["launchPartitionBackfill"]
    assert out["__typename"] == "LaunchBackfillSuccess", out
    took = wait_for(
        f"{HAND_DAY}'s 24 1h bars",
        lambda: count(questdb, one_h, "1h", start, start + DAY) == 24,
        FOLLOW_BOUND_S,
        server,
    )
    assert_candles_exact(
        stored_candles(questdb, one_m, SYMBOL, start, start + DAY),
        truth_candles(emulator, SYMBOL, start, start + DAY),
        f"{HAND_DAY} 1m",
    )
    assert_bars_equal(
        stored_candles(questdb, one_h, SYMBOL, start, start + DAY, timeframe="1h"),
        truth_candles(emulator, SYMBOL, start, start + DAY, "1h"),
        f"{HAND_DAY} 1h",
    )
    followers = [r for r in server.runs() if {"key": "dagster/sensor_name", "value": "follow_upstream"} in r["tags"]]
    assert followers, "the 1h bars were computed by a run the follow_upstream sensor requested"
    print(f"{HAND_DAY}'s 1h bars computed {took:.0f} s after the hand launch by {len(followers)} automation run(s)")
