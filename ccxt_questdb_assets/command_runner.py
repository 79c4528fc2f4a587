"""Running a parsed command line: the one place where our own errors become a one-line message.

The top-level ``ccxt-questdb`` command (:mod:`.cli`) and the stand-alone entries of its
sub-commands (``python -m ccxt_questdb_assets.services.cli``, ``python -m
ccxt_questdb_assets.emulator``) all run through :func:`dispatch`; it imports none of them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ccxt_questdb_assets.core.errors import CcxtQuestDBError

__all__ = ["dispatch"]


def dispatch(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command: our own errors exit 2 with one line, not a trace."""
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CcxtQuestDBError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
