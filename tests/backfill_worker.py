"""A backfill in its own process, for the crash and concurrency tests (``tests/test_history_crash.py``).

Run as ``python tests/backfill_worker.py '<json>'`` with keys ``config`` (the ``from_config``
mapping), ``node_id``, ``start_s``, ``end_s`` and optionally ``wait_go``. It builds the
provider (ccxt is imported and the markets loaded here), prints ``ready``, with ``wait_go``
waits for a line on stdin (so that several workers start paging at the same moment), runs
``ensure_range_sync`` and prints the report as one JSON line.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    args = json.loads(argv[1])
    from ccxt_questdb_assets import CcxtQuestDBProvider

    provider = CcxtQuestDBProvider.from_config(args["config"])
    print("ready", flush=True)
    if args.get("wait_go"):
        sys.stdin.readline()
    report = provider.ensure_range_sync(args["start_s"], args["end_s"], node_id=args["node_id"])
    print(
        json.dumps(
            {
                "pages": report.pages,
                "requests": report.requests,
                "rows_written": report.rows_written,
                "gaps": len(report.gaps),
                "seconds": report.seconds,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
