from collections.abc import Iterator

import pytest

from ccxt_questdb_assets.ratelimit import reset_registry

pytest_plugins = ["ccxt_questdb_assets.testing.pytest_plugin"]


@pytest.fixture(autouse=True)
def _forget_shared_rate_limiters() -> Iterator[None]:
    """Each test starts with no process-wide budget left by another (their settings may differ)."""
    yield
    reset_registry()
