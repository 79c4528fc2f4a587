"""The soak command for two minutes against the session QuestDB and emulator, as CI's soak test.

``ccxt-questdb soak`` runs as a subprocess (its own RSS and descriptors are what it samples); the
test then judges it by the emulator's request log and by QuestDB itself, not only by its report.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MINUTES = 2


def test_two_minute_soak_is_exact_and_flat(questdb, emulator, emulator_control, questdb_conn, tmp_path):
    prefix = f"soak_ci_{int(time.time())}"
    report = tmp_path / "soak.json"
    conn = questdb.connection
    started_ms = emulator_control.now_ms()
    cmd = [
        sys.executable,
        "-m",
        "ccxt_questdb_assets.cli",
        "soak",
        "--minutes",
        str(MINUTES),
        "--seed",
        "3",
        "--emulator-url",
        emulator.base_url,
        "--questdb",
        conn.to_dsn(include_password=True),
        "--questdb-http",
        conn.http_addr,
        "--table-prefix",
        prefix,
        "--json",
        str(report),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=MINUTES * 60 + 120, cwd=ROOT)
    assert report.exists(), f"no report; exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    result = json.loads(report.read_text())
    verdict = done.stdout[done.stdout.rfind("soak ") :]
    assert done.returncode == 0 and result["ok"], verdict + "\n" + done.stderr[-3000:]

    # the schedule kept ticking: several ticks, a run per symbol each, all of them green
    assert result["ticks"] >= 3 and result["runs"] >= 2 * result["ticks"], verdict
    assert result["failed_runs"] == [] and result["failed_checks"] == []
    # faults were really served, as the emulator's own log says
    logged = emulator_control.requests()
    served = [r for r in logged if r.get("fault")]
    assert len(served) == result["fault_responses"] >= 3, (len(served), result["faults_armed"])
    assert {r["fault"] for r in served} <= {"429", "500", "502", "503", "504", "drop_connection", "truncated_json"}
    # memory and descriptors: flat by the report's own samples (after warm-up), sampled through the whole run
    flat = result["flatness"]
    assert flat["samples"] >= 30 and flat["rss_late_kb"] <= 1.2 * flat["rss_early_kb"]
    assert flat["fds_late"] <= flat["fds_early"] + 8
    # two minutes are short for a ratio: the growth itself stays under 32 MiB too
    assert flat["rss_late_kb"] - flat["rss_early_kb"] <= 32 * 1024, flat
    assert result["samples"][-1][0] >= MINUTES * 60 * 0.9
    # data: exact per symbol, and new closed candles kept arriving while it ran
    for series in result["series"]:
        assert series["problems"] == [] and series["candles_compared"] > 0 and series["trades_compared"] > 0
    for symbol in ("BTC/USDT", "ETH/USDT"):
        rows, distinct, last_open_us = questdb_conn.execute(
            f"SELECT count(), count_distinct(cast(ts AS long)), cast(max(ts) AS long) FROM {prefix}_ohlcv "
            "WHERE symbol = %s AND closed",
            (symbol,),
        ).fetchone()
        assert rows == distinct > 0
        # the bar open when the soak started closed during it, and is stored and covered as closed
        open_at_start = started_ms // 60_000 * 60_000
        assert last_open_us // 1000 >= open_at_start, f"{symbol}: no candle closed during the soak"
        covered_to_us = questdb_conn.execute(
            f"SELECT cast(max(end_ts) AS long) FROM {prefix}_ohlcv_coverage WHERE node_id = %s",
            (f"ohlcv:binance:{symbol}:1m",),
        ).fetchone()[0]
        assert covered_to_us // 1000 >= open_at_start + 60_000
