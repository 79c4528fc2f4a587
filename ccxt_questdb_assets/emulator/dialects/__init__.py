"""The exchange dialects the emulator speaks, each in a module of its own.

A route's path may hold ``{name}`` segments (Coinbase puts the product id in the path): they match
one path segment and reach the handler as query parameters of that name.
"""

from __future__ import annotations

from ccxt_questdb_assets.emulator.dialects.base import Dialect, Route
from ccxt_questdb_assets.emulator.dialects.binance import BINANCE
from ccxt_questdb_assets.emulator.dialects.binancecoinm import BINANCECOINM
from ccxt_questdb_assets.emulator.dialects.binanceusdm import BINANCEUSDM
from ccxt_questdb_assets.emulator.dialects.bybit import BYBIT
from ccxt_questdb_assets.emulator.dialects.coinbase import COINBASE
from ccxt_questdb_assets.emulator.dialects.kraken import KRAKEN
from ccxt_questdb_assets.emulator.dialects.okx import OKX

__all__ = ["DIALECTS", "route_for"]

#: Every dialect served; the first answers faults on paths no dialect owns.
DIALECTS: tuple[Dialect, ...] = (BINANCE, BINANCEUSDM, BINANCECOINM, BYBIT, COINBASE, KRAKEN, OKX)

_EXACT: dict[str, tuple[Dialect, Route]] = {}
_TEMPLATES: list[tuple[list[str], Dialect, Route]] = []
for _dialect in DIALECTS:
    for _path, _route in _dialect.routes.items():
        if _path in _EXACT or any(t == _path.split("/") for t, _, _ in _TEMPLATES):
            raise RuntimeError(f"path {_path} is served by two dialects ({_dialect.name} is the second)")
        if "{" in _path:
            _TEMPLATES.append((_path.split("/"), _dialect, _route))
        else:
            _EXACT[_path] = (_dialect, _route)


def route_for(path: str) -> tuple[Dialect, Route, dict[str, str]] | None:
    """The dialect serving ``path``, its route and the values of the path's ``{name}`` segments; or None."""
    found = _EXACT.get(path)
    if found is not None:
        return found[0], found[1], {}
    parts = path.split("/")
    for template, dialect, route in _TEMPLATES:
        if len(template) != len(parts):
            continue
        values: dict[str, str] = {}
        for want, got in zip(template, parts, strict=True):
            if want.startswith("{") and want.endswith("}"):
                if not got:
                    break
                values[want[1:-1]] = got
            elif want != got:
                break
        else:
            return dialect, route, values
    return None
