"""``ccxt-questdb emulator serve``: run the exchange emulator (every dialect) until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ccxt_questdb_assets.emulator.weights import DEFAULT_WEIGHT_LIMIT

__all__ = ["main", "register"]


def _serve(args: argparse.Namespace) -> int:
    from ccxt_questdb_assets.core.errors import ServiceError
    from ccxt_questdb_assets.emulator.server import serve_forever

    try:
        asyncio.run(serve_forever(args.host, args.port, weight_limit=args.weight_limit, ready_file=args.ready_file))
    except OSError as exc:
        raise ServiceError(f"exchange emulator cannot listen on {args.host}:{args.port}: {exc}") from exc
    return 0


def _add_commands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="emulator_command", required=True, metavar="ACTION")
    serve = sub.add_parser("serve", help="serve Binance spot public REST on HOST:PORT; prints the base URL")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0 (default) picks a free port")
    serve.add_argument(
        "--weight-limit",
        type=int,
        default=DEFAULT_WEIGHT_LIMIT,
        help=f"request weight allowed per minute (default {DEFAULT_WEIGHT_LIMIT})",
    )
    serve.add_argument("--ready-file", default=None, help="write the base URL to this file once listening")
    serve.set_defaults(func=_serve)


def register(subparsers: Any) -> None:
    """Add the ``emulator`` command to the ``ccxt-questdb`` CLI."""
    parser = subparsers.add_parser("emulator", help="exchange emulator of every dialect (tests, benchmarks, demo)")
    _add_commands(parser)


def main(argv: list[str] | None = None) -> int:
    from ccxt_questdb_assets.command_runner import dispatch

    parser = argparse.ArgumentParser(prog="python -m ccxt_questdb_assets.emulator")
    _add_commands(parser)
    return dispatch(parser, argv)
