"""pytest plugin: session-scoped real services (QuestDB, Redis, the exchange emulator).

Enable with ``pytest_plugins = ["ccxt_questdb_assets.testing.pytest_plugin"]``.
A service that cannot start fails the test that needs it with a clear message; nothing is skipped.
"""

from ccxt_questdb_assets.testing.fixtures_emulator import *  # noqa: F401,F403
from ccxt_questdb_assets.testing.fixtures_services import *  # noqa: F401,F403
