"""The exchange dialects the emulator speaks, each in a module of its own."""

from __future__ import annotations

from ccxt_questdb_assets.testing.emulator.dialects.base import Dialect, Route
from ccxt_questdb_assets.testing.emulator.dialects.binance import BINANCE

__all__ = ["DIALECTS", "route_for"]

#: Every dialect served; the first answers faults on paths no dialect owns.
DIALECTS: tuple[Dialect, ...] = (BINANCE,)

_BY_PATH: dict[str, tuple[Dialect, Route]] = {}
for _dialect in DIALECTS:
    for _path, _route in _dialect.routes.items():
        if _path in _BY_PATH:
            raise RuntimeError(f"path {_path} is served by both {_BY_PATH[_path][0].name} and {_dialect.name}")
        _BY_PATH[_path] = (_dialect, _route)


def route_for(path: str) -> tuple[Dialect, Route] | None:
    """The dialect serving ``path`` and its route, or None."""
    return _BY_PATH.get(path)
