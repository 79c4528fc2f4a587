"""The exchange ids ccxt knows, without importing ccxt.

``import ccxt`` loads every exchange module (seconds of CPU); validating a config, or loading the
Dagster definitions in each code-server and run process, needs only the list of ids. It is read
from the literal ``exchanges = [...]`` in ccxt's ``__init__.py``; if that ever changes shape,
ccxt is imported after all.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def ccxt_exchange_ids() -> tuple[str, ...]:
    if "ccxt" not in sys.modules:
        ids = _read_ids_literal()
        if ids:
            return ids
    import ccxt

    return tuple(ccxt.exchanges)


def _read_ids_literal() -> tuple[str, ...] | None:
    spec = importlib.util.find_spec("ccxt")
    if spec is None or not spec.origin:
        return None
    try:
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "exchanges" for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return None
            if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                return tuple(value)
    return None
