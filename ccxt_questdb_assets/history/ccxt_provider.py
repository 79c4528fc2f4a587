"""``CcxtQuestDBProvider``: the spec's one-call setup of fetcher, backfill strategy and backend."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from ccxt_questdb_assets.core.clock import Clock, wall_clock_ms
from ccxt_questdb_assets.core.node_ids import TRADES, make_node_id
from ccxt_questdb_assets.exchange.fetchers import CcxtOHLCVFetcher, CcxtTradesFetcher
from ccxt_questdb_assets.exchange.session import check_instruments_blocking
from ccxt_questdb_assets.history.backend import QuestDBBackend
from ccxt_questdb_assets.history.backfill import FetcherBackfillStrategy
from ccxt_questdb_assets.history.config import ProviderConfig
from ccxt_questdb_assets.history.provider import AugmentedHistoryProvider
from ccxt_questdb_assets.storage.client import QuestDBClient


class CcxtQuestDBProvider(AugmentedHistoryProvider):
    """A QuestDB-backed history provider that backfills from one ccxt exchange."""

    def __init__(
        self,
        config: ProviderConfig,
        *,
        exchange: Any | None = None,
        client: QuestDBClient | None = None,
        clock: Clock = wall_clock_ms,
    ) -> None:
        self.config = config
        fetcher_cls = CcxtTradesFetcher if config.mode == TRADES else CcxtOHLCVFetcher
        fetcher = fetcher_cls(config.backfill, exchange=exchange, clock=clock)
        self._owns_client = client is None
        backend = QuestDBBackend(client or QuestDBClient(config.connection), config.tables, mode=config.mode)
        super().__init__(
            backend, fetcher=fetcher, auto_backfill=FetcherBackfillStrategy(fetcher, recheck=config.recheck)
        )

    async def close(self) -> None:
        """Release the exchange and, unless ``client`` was passed in, the QuestDB connections.
        Idempotent; the provider stays usable (the next call connects again)."""
        try:
            await super().close()
        finally:
            if self._owns_client:
                await asyncio.to_thread(self.backend.client.close)

    @classmethod
    def from_config(
        cls,
        cfg: Mapping[str, Any] | ProviderConfig,
        *,
        exchange: Any | None = None,
        validate_markets: bool = True,
        **kwargs: Any,
    ) -> CcxtQuestDBProvider:
        """Build from the spec's mapping. Symbols and timeframe are checked against the exchange's
        markets, loaded once per process (one request on Binance spot) and cached."""
        config = cfg if isinstance(cfg, ProviderConfig) else ProviderConfig.from_mapping(cfg)
        for symbol in config.backfill.symbols or []:  # node ids must be formable for every symbol
            cls.make_node_id(
                exchange_id=config.backfill.exchange_id,
                symbol=symbol,
                timeframe=config.timeframes[0] if config.timeframes else None,
                mode=config.mode,
            )
        if validate_markets:
            check_markets(config)
        return cls(config, exchange=exchange, **kwargs)

    @staticmethod
    def make_node_id(*, exchange_id: str, symbol: str, timeframe: str | None = None, mode: str = "ohlcv") -> str:
        return make_node_id(exchange_id=exchange_id, symbol=symbol, timeframe=timeframe, mode=mode)


def check_markets(config: ProviderConfig) -> None:
    """Check symbols and timeframes against the exchange, through the shared limiter (markets
    are loaded once per process and cached)."""
    check_instruments_blocking(config.backfill, list(config.backfill.symbols or []), config.timeframes)
