"""Run one command as a whole process; print its wall time, exit code and peak RSS as JSON.

    python -m benchmarks.peak_rss --log FILE -- COMMAND [ARG ...]

The command's stdout and stderr go to FILE; the last stdout line of this launcher is
``{"seconds": ..., "rc": ..., "max_rss_mib": ..., "started_at": <epoch seconds of the fork>}``.
Only the standard library is imported: Linux keeps ``ru_maxrss`` across ``execve`` and a forked
child starts from its parent's high-water mark (docs/benchmarks.md), so the command is started
from this small interpreter, never straight from a benchmark process that holds large frames. The
peak is the command's own (``wait4``), over it and every descendant it waited for; the time runs
from the fork to the command's exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    log = None
    if argv[:1] == ["--log"]:
        log, argv = argv[1], argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m benchmarks.peak_rss [--log FILE] -- COMMAND [ARG ...]", file=sys.stderr)
        return 2
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        started_at = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        took = time.perf_counter() - t0
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    proc.returncode = os.waitstatus_to_exitcode(status)
    result = {"seconds": took, "rc": proc.returncode, "max_rss_mib": usage.ru_maxrss / 1024, "started_at": started_at}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
