"""How a benchmark child process is told where the services are: the same five options on every
child (``--base-url``, ``--host``, ``--port``, ``--http-port``, ``--prefix``), read back into the
library's ``questdb`` config. Only the standard library: a child imports this before anything
whose memory it measures."""

from __future__ import annotations

import argparse
from typing import Any


def service_args(base_url: str, connection: Any, prefix: str) -> list[str]:
    """The options naming the emulator at ``base_url``, the QuestDB of ``connection`` and a table prefix."""
    return [
        "--base-url", base_url,
        "--host", connection.host,
        "--port", str(connection.port),
        "--http-port", str(connection.http_port),
        "--prefix", prefix,
    ]  # fmt: skip


def add_service_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--prefix", required=True)


def questdb_config(args: argparse.Namespace) -> dict[str, Any]:
    """The ``questdb`` section of a library config for the parsed options."""
    return {"host": args.host, "port": args.port, "http_port": args.http_port, "table_prefix": args.prefix}
