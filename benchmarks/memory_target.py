"""Target 6: peak RSS of a library backfill does not grow with the length of the backfill.

Each backfill runs in a fresh interpreter (``python -m benchmarks.backfill_child --days N ...``),
which reports its ``ru_maxrss`` once ``CcxtQuestDBProvider.ensure_range`` has stored N days of
1m candles from the emulator. 365 days (526 pages) must peak at most 1.2x 30 days (44 pages).

Linux keeps ``ru_maxrss`` across ``execve``, and a child forked (or vforked) from the benchmark
process, which holds a million-row frame or two by then, starts with that process's high-water
mark. So the backfill runs in a grandchild (``benchmarks.backfill_child``), whose parent is a
small interpreter that imports nothing else. The child also reports ``VmHWM`` (the high-water
mark of its own address space only) as a cross-check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from benchmarks.child_args import service_args
from benchmarks.harness import REPO_ROOT, Bench, log, median, target


def _spawn(bench: Bench, days: int) -> dict:
    conn = bench.connection
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.backfill_child",
        "--days",
        str(days),
        *service_args(bench.emulator.base_url, conn, bench.table_prefix(f"mem{days}")),
    ]
    env = dict(os.environ)
    if conn.password:
        env["CCXT_QUESTDB_PASSWORD"] = conn.password
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {days}-day backfill failed (exit {done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    log(
        f"memory: {days} days: {result['rows']:,} rows, {result['pages']} pages in {result['seconds']:.1f} s, "
        f"ru_maxrss {result['max_rss_mib']:.0f} MiB (VmHWM {result['vm_hwm_mib']:.0f} MiB)"
    )
    return result


@target(
    "memory",
    number=6,
    title="peak RSS of a 365-day vs a 30-day backfill (fresh processes)",
    needs=("questdb", "emulator"),
)
def memory_target(bench: Bench) -> None:
    runs = bench.runs(1, 3)  # peak RSS barely varies between runs (< 1 %); the quick pass does one
    short, long = [], []
    for i in range(runs):
        for days in (30, 365) if i % 2 == 0 else (365, 30):
            (short if days == 30 else long).append(_spawn(bench, days))
    assert all(r["rows"] == 30 * 1440 for r in short) and all(r["rows"] == 365 * 1440 for r in long)
    a, b = [r["max_rss_mib"] for r in short], [r["max_rss_mib"] for r in long]
    hwm = [r["vm_hwm_mib"] for r in long], [r["vm_hwm_mib"] for r in short]
    bench.record(
        "6 memory",
        "peak RSS (ru_maxrss), backfill of 365 vs 30 days of 1m candles",
        value=median(b),
        baseline=median(a),
        unit="MiB",
        op="<=",
        limit=1.2,
        runs=runs,
        samples={"365d": b, "30d": a, "365d_vm_hwm": hwm[0], "30d_vm_hwm": hwm[1]},
        note=f"ensure_range in a fresh process each; VmHWM {median(hwm[0]):.0f} vs {median(hwm[1]):.0f} MiB; "
        f"365 days took {median([r['seconds'] for r in long]):.0f} s",
    )
