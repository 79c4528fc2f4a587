"""``ccxt-questdb questdb fetch|start|stop|status``: a local QuestDB managed by the project.

Options override the ``CCXT_QUESTDB_*`` environment, which overrides the defaults (see
``docs/services.md``). ``status`` exits 0 when running, 3 when not.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from ccxt_questdb_assets.services.questdb_release import fetch_release, resolve_release

__all__ = ["register", "main"]

EXIT_NOT_RUNNING = 3

#: The options of ``start``, each named (``dest``) as the ``ServerSettings.from_env`` argument it sets.
_START_SETTINGS = ("data_dir", "http_port", "pg_port", "ilp_port", "min_port", "host", "heap", "start_timeout")


def _common(p: argparse.ArgumentParser, *, ports: bool = True) -> None:
    p.add_argument("--data-dir", help="QuestDB root dir (env CCXT_QUESTDB_DATA_DIR; default <state dir>/questdb/data)")
    if ports:
        p.add_argument(
            "--http-port", type=int, help="HTTP: REST, ILP over HTTP, console (env CCXT_QUESTDB_HTTP_PORT; 9000)"
        )
        p.add_argument("--pg-port", type=int, help="PG wire (env CCXT_QUESTDB_PG_PORT; 8812)")
        p.add_argument("--ilp-port", type=int, help="ILP over TCP (env CCXT_QUESTDB_ILP_PORT; 9009)")
        p.add_argument("--min-port", type=int, help="health/min HTTP (env CCXT_QUESTDB_MIN_HTTP_PORT; 9003)")
    p.add_argument(
        "--version",
        dest="qdb_version",
        metavar="VERSION",
        help="QuestDB release (env CCXT_QUESTDB_QUESTDB_VERSION; default the pinned default)",
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def register(subparsers: Any) -> None:
    """Add the ``questdb`` command to the top-level ``ccxt-questdb`` parser."""
    q = subparsers.add_parser("questdb", help="fetch, start, stop or inspect a local QuestDB server")
    qs = q.add_subparsers(dest="questdb_command", required=True, metavar="ACTION")

    p = qs.add_parser("fetch", help="fetch the pinned QuestDB jar through mvn and verify its SHA-256")
    p.add_argument("--version", dest="qdb_version", metavar="VERSION", help="QuestDB release")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=_cmd_fetch)

    p = qs.add_parser("start", help="start a background QuestDB (no-op if already running there)")
    _common(p)
    p.add_argument(
        "--bind-host",
        dest="host",
        metavar="BIND_HOST",
        help="interface to bind (env CCXT_QUESTDB_BIND_HOST; 127.0.0.1)",
    )
    p.add_argument("--heap", help="JVM max heap, e.g. 2g (env CCXT_QUESTDB_HEAP; 2g)")
    p.add_argument(
        "--timeout",
        dest="start_timeout",
        metavar="TIMEOUT",
        type=float,
        help="seconds to wait for readiness (env CCXT_QUESTDB_START_TIMEOUT; 90)",
    )
    p.set_defaults(func=_cmd_start)

    p = qs.add_parser("stop", help="stop the background QuestDB of a data dir (SIGTERM, then SIGKILL)")
    _common(p, ports=False)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds between SIGTERM and SIGKILL (30)")
    p.set_defaults(func=_cmd_stop)

    p = qs.add_parser("status", help="is the background QuestDB of a data dir running? (exit 0 yes, 3 no)")
    _common(p, ports=False)
    p.set_defaults(func=_cmd_status)


def _emit(args: argparse.Namespace, text: str, data: dict[str, Any]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)


def _cmd_fetch(args: argparse.Namespace) -> int:
    release = resolve_release(args.qdb_version)
    jar = fetch_release(release)
    _emit(
        args,
        f"QuestDB {release.version}: {jar} (sha256 {release.sha256} verified; needs Java {release.min_java}+)",
        {"version": release.version, "jar": str(jar), "sha256": release.sha256, "min_java": release.min_java},
    )
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    from ccxt_questdb_assets.services.questdb_daemon import start_detached
    from ccxt_questdb_assets.services.questdb_settings import ServerSettings

    settings = ServerSettings.from_env(**{name: getattr(args, name) for name in _START_SETTINGS})
    status = start_detached(settings, release=resolve_release(args.qdb_version))
    _emit(args, status.describe(), status.to_dict())
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    from ccxt_questdb_assets.services.questdb_daemon import stop_detached

    status = stop_detached(args.data_dir, timeout=args.timeout)
    text = (
        f"QuestDB (pid {status.pid}, data dir {status.data_dir}) stopped"
        if status.running
        else f"QuestDB: not running (data dir {status.data_dir}); nothing to stop"
    )
    _emit(args, text, {"stopped": status.running, "pid": status.pid, "data_dir": str(status.data_dir)})
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from ccxt_questdb_assets.services.questdb_daemon import server_status

    status = server_status(args.data_dir)
    _emit(args, status.describe(), status.to_dict())
    return 0 if status.running else EXIT_NOT_RUNNING


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (``python -m ccxt_questdb_assets.services.cli questdb status``)."""
    from ccxt_questdb_assets.command_runner import dispatch

    parser = argparse.ArgumentParser(prog="ccxt-questdb")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return dispatch(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
