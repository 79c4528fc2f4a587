"""Binance-spot-dialect exchange emulator with deterministic synthetic data (tests, benchmarks, demo).

Heavy pieces (aiohttp) are imported lazily: ``from ccxt_questdb_assets.emulator import
SyntheticMarket`` costs numpy only.
"""

from __future__ import annotations

from typing import Any

from ccxt_questdb_assets.emulator.control import EmulatorControl
from ccxt_questdb_assets.emulator.market import SyntheticMarket, Trade

__all__ = ["EmulatorControl", "EmulatorServer", "SyntheticMarket", "ThreadedEmulator", "Trade"]


def __getattr__(name: str) -> Any:
    if name in ("EmulatorServer", "ThreadedEmulator"):
        from ccxt_questdb_assets.emulator import server

        return getattr(server, name)
    raise AttributeError(name)
