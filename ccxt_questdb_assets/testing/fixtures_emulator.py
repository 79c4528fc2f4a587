"""pytest fixtures for the exchange emulator (star-imported by ``testing.pytest_plugin``).

* ``emulator`` (session): a subprocess emulator; ``.base_url``, ``.control``, ``.market``.
* ``emulator_control`` (function): the control client, reset before the test (log, faults,
  clock, weight limit and used weight).

A server that cannot start fails the test with the reason; it is never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ccxt_questdb_assets.core.errors import ServiceError
from ccxt_questdb_assets.emulator.control import EmulatorControl
from ccxt_questdb_assets.emulator.market import SyntheticMarket

__all__ = ["EmulatorHandle", "emulator", "emulator_control"]


@dataclass(frozen=True)
class EmulatorHandle:
    """A running emulator: where it is, how to steer it, and its ground truth."""

    base_url: str
    control: EmulatorControl
    market: SyntheticMarket
    server: Any


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorHandle]:
    from ccxt_questdb_assets.emulator.server import EmulatorServer

    server = EmulatorServer()
    try:
        server.start()
    except ServiceError as exc:
        pytest.fail(f"exchange emulator could not start: {exc}", pytrace=False)
    try:
        yield EmulatorHandle(server.base_url, server.control, SyntheticMarket(), server)
    finally:
        server.stop()


@pytest.fixture
def emulator_control(emulator: EmulatorHandle) -> EmulatorControl:
    emulator.control.reset()
    return emulator.control
