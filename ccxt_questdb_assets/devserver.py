"""``ccxt-questdb dev``: the Dagster UI on the embedded default (or on a real project).

Runs the local stack (:mod:`ccxt_questdb_assets.dev_stack`: QuestDB unless already running, the
exchange emulator on a fixed port so the definitions match the demo's, ``dagster dev`` on
``./dagster_home``) until Ctrl-C or SIGTERM, then stops all it started, QuestDB included if it
started it, within 10 s.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("dev", help="open the Dagster UI (starts QuestDB and the emulator unless a project is set)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--emulator-port", type=int, default=None, help="default 8765, as the demo's")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ccxt_questdb_assets.dev_stack import dev_stack
    from ccxt_questdb_assets.instance_home import prepare_dagster_home
    from ccxt_questdb_assets.stop_signals import sigterm_as_interrupt

    with sigterm_as_interrupt():
        try:
            with dev_stack(prepare_dagster_home(), host=args.host, port=args.port,
                           emulator_port=args.emulator_port, stop_started_questdb=True) as stack:
                print(f"Dagster UI at http://{args.host}:{args.port} (Ctrl-C stops it and the services it started)",
                      flush=True)
                code = stack.dagster.proc.wait()
                print(f"dagster dev exited by itself with code {code}; see its log {stack.dagster.log_path}",
                      flush=True)
                return code or 1
        except KeyboardInterrupt:
            return 0
