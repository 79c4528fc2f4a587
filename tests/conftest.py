pytest_plugins = ["ccxt_questdb_assets.testing.pytest_plugin"]
