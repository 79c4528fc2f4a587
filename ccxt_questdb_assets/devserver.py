"""``ccxt-questdb dev``: the Dagster UI on the embedded default (or on a real project).

Starts the local QuestDB and the exchange emulator on a fixed port (so runs launched from the UI
reach it), then runs ``dagster dev`` on this project's definitions with ``./dagster_home`` as the
instance, until interrupted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("dev", help="open the Dagster UI (starts QuestDB and the emulator unless a project is set)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--emulator-port", type=int, default=None, help="default 8765")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ccxt_questdb_assets.local_stack import DEFAULT_EMULATOR_PORT, dagster_home, local_stack

    dagster_home()
    with local_stack(emulator_port=args.emulator_port or DEFAULT_EMULATOR_PORT):
        cmd = [sys.executable, "-m", "dagster", "dev", "-m", "ccxt_questdb_assets.defs.definitions",
               "-h", args.host, "-p", str(args.port)]
        print(f"Dagster UI at http://{args.host}:{args.port} (Ctrl-C stops it)")
        proc = subprocess.Popen(cmd, env=os.environ.copy())
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            return proc.wait()
