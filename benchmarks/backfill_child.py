"""One library backfill in a fresh process, for target 6: prints its peak RSS as JSON.

    python -m benchmarks.backfill_child --days N --base-url URL --host H --port P --http-port HP --prefix T

Without ``--in-child`` it runs itself again one generation down and relays the exit code: Linux
keeps ``ru_maxrss`` across ``execve``, so a process started straight from a big parent would
report the parent's high-water mark. Only the standard library is imported before that.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime

from benchmarks.child_args import add_service_args, questdb_config

START = datetime(2022, 1, 1, tzinfo=UTC)
NODE = "ohlcv:binance:BTC/USDT:1m"


def backfill(args: argparse.Namespace) -> None:
    from ccxt_questdb_assets import CcxtQuestDBProvider

    provider = CcxtQuestDBProvider.from_config(
        {
            "exchange": "binance",
            "symbols": ["BTC/USDT"],
            "timeframe": "1m",
            "questdb": questdb_config(args),
            "base_url": args.base_url,
            # A fast limiter rate keeps ccxt's own throttle off; the emulator is not the bottleneck.
            "rate_limiter": {"scope": "local", "max_concurrency": 1, "min_interval_s": 0.001},
        }
    )
    start = START.timestamp()
    t0 = time.perf_counter()
    report = provider.ensure_range_sync(start, start + args.days * 86_400, node_id=NODE)
    took = time.perf_counter() - t0
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with open("/proc/self/status") as status:
        hwm_kib = next((int(line.split()[1]) for line in status if line.startswith("VmHWM")), 0)
    print(
        json.dumps(
            {
                "days": args.days,
                "max_rss_mib": rss_kib / 1024,
                "vm_hwm_mib": hwm_kib / 1024,
                "rows": report.rows_written,
                "pages": report.pages,
                "seconds": took,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.backfill_child",
        description="one backfill in this process; prints its peak RSS as JSON",
    )
    parser.add_argument("--days", type=int, required=True)
    add_service_args(parser)
    parser.add_argument("--in-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_child:
        backfill(args)
        return
    # Run the backfill one generation down, from this small interpreter (see the module doc).
    done = subprocess.run([sys.executable, "-m", "benchmarks.backfill_child", *sys.argv[1:], "--in-child"], check=False)
    raise SystemExit(done.returncode)


if __name__ == "__main__":
    main()
