"""The ``ccxt-questdb`` command: manage local services and run the demo.

Each subsystem registers its own sub-commands, so this module stays a thin dispatcher.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ccxt_questdb_assets.command_runner import dispatch


def build_parser() -> argparse.ArgumentParser:
    from ccxt_questdb_assets.demo import register as register_demo
    from ccxt_questdb_assets.devserver import register as register_dev
    from ccxt_questdb_assets.emulator.cli import register as register_emulator
    from ccxt_questdb_assets.services.cli import register as register_services
    from ccxt_questdb_assets.soak import register as register_soak

    parser = argparse.ArgumentParser(
        prog="ccxt-questdb",
        description="Exchange market data as auto-backfilled time series in QuestDB.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_services(sub)
    register_emulator(sub)
    register_demo(sub)
    register_dev(sub)
    register_soak(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
