"""Freed large blocks go back to the operating system (archive.heap): what keeps an archive
backfill's memory flat with its span. Each case in a fresh interpreter (the setting is the
process's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mmap threshold is Linux's")

# A block of 8 MiB freed (glibc then serves smaller ones from its heap), 64 blocks of 1 MiB
# touched, every other one freed: how much of the process is still resident.
_PROBE = """
import json, sys
from ccxt_questdb_assets.archive.heap import return_large_blocks
def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS"))
fixed = return_large_blocks() if sys.argv[1] == "fix" else None
again = return_large_blocks() if sys.argv[1] == "fix" else None
big = bytearray(8 << 20)
del big
blocks = [bytearray(1 << 20) for _ in range(64)]
held = rss()
del blocks[::2]
print(json.dumps({"fixed": fixed, "again": again, "freed_mib": held - rss()}))
"""


def _probe(mode: str, **env: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**{k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}, **env},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_freed_blocks_leave_the_process_once_the_threshold_is_fixed():
    fixed = _probe("fix")
    assert fixed["fixed"] is True and fixed["again"] is True
    assert fixed["freed_mib"] >= 28  # the 32 MiB freed went back
    assert _probe("leave")["freed_mib"] <= 4  # glibc's own rule kept them in its heap


def test_a_process_that_chose_its_threshold_keeps_it():
    chosen = _probe("fix", MALLOC_MMAP_THRESHOLD_="33554432")
    assert chosen["fixed"] is False and chosen["freed_mib"] <= 4
