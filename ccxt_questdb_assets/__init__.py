"""Exchange market data as durable, auto-backfilled time series in QuestDB.

The spec's names and every error class are importable from here; the Dagster layer lives in
``ccxt_questdb_assets.defs`` and is imported only when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "CcxtBackfillConfig": "ccxt_questdb_assets.exchange.config",
    "CcxtTradesConfig": "ccxt_questdb_assets.exchange.config",
    "CcxtOHLCVFetcher": "ccxt_questdb_assets.exchange.fetchers",
    "CcxtTradesFetcher": "ccxt_questdb_assets.exchange.fetchers",
    "CcxtQuestDBProvider": "ccxt_questdb_assets.history.ccxt_provider",
    "AugmentedHistoryProvider": "ccxt_questdb_assets.history.provider",
    "FetcherBackfillStrategy": "ccxt_questdb_assets.history.backfill",
    "BackfillRequest": "ccxt_questdb_assets.history.backfill",
    "BackfillReport": "ccxt_questdb_assets.history.backfill",
    "QuestDBBackend": "ccxt_questdb_assets.history.backend",
    "ProviderConfig": "ccxt_questdb_assets.history.config",
    "QuestDBConnection": "ccxt_questdb_assets.storage.connection",
    "RateLimiterConfig": "ccxt_questdb_assets.ratelimit",
    "make_node_id": "ccxt_questdb_assets.core.node_ids",
    "NodeId": "ccxt_questdb_assets.core.node_ids",
    "Timeframe": "ccxt_questdb_assets.core.timeframes",
    "TimeWindow": "ccxt_questdb_assets.core.windows",
    "CcxtQuestDBError": "ccxt_questdb_assets.core.errors",
    "ConfigError": "ccxt_questdb_assets.core.errors",
    "ExchangeDataError": "ccxt_questdb_assets.core.errors",
    "ExchangeError": "ccxt_questdb_assets.core.errors",
    "InvalidFrameError": "ccxt_questdb_assets.core.errors",
    "PermanentExchangeError": "ccxt_questdb_assets.core.errors",
    "ServiceError": "ccxt_questdb_assets.core.errors",
    "StorageError": "ccxt_questdb_assets.core.errors",
    "TransientExchangeError": "ccxt_questdb_assets.core.errors",
    "UnprovenExchangeError": "ccxt_questdb_assets.core.errors",
    "UnsupportedHistoryError": "ccxt_questdb_assets.core.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import lazily: ``import ccxt_questdb_assets`` stays cheap (ccxt alone takes ~0.4 s)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ccxt_questdb_assets' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # pragma: no cover
    from ccxt_questdb_assets.core.errors import (  # noqa: F401
        CcxtQuestDBError,
        ConfigError,
        ExchangeDataError,
        ExchangeError,
        InvalidFrameError,
        PermanentExchangeError,
        ServiceError,
        StorageError,
        TransientExchangeError,
        UnprovenExchangeError,
        UnsupportedHistoryError,
    )
    from ccxt_questdb_assets.core.node_ids import NodeId, make_node_id  # noqa: F401
    from ccxt_questdb_assets.exchange.config import CcxtBackfillConfig, CcxtTradesConfig  # noqa: F401
    from ccxt_questdb_assets.exchange.fetchers import CcxtOHLCVFetcher, CcxtTradesFetcher  # noqa: F401
    from ccxt_questdb_assets.history.backend import QuestDBBackend  # noqa: F401
    from ccxt_questdb_assets.history.backfill import FetcherBackfillStrategy  # noqa: F401
    from ccxt_questdb_assets.history.ccxt_provider import CcxtQuestDBProvider  # noqa: F401
    from ccxt_questdb_assets.history.provider import AugmentedHistoryProvider  # noqa: F401
