"""The engine's seam to an exchange: what ``FetcherBackfillStrategy`` and the provider need of a
fetcher (``exchange/fetchers.py`` has the ccxt ones)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol

from ccxt_questdb_assets.core.node_ids import NodeId
from ccxt_questdb_assets.core.pages import Page
from ccxt_questdb_assets.core.timeframes import Interval
from ccxt_questdb_assets.core.windows import TimeWindow

__all__ = ["PageSource"]


class PageSource(Protocol):
    """Pages of one exchange: each page's rows and the window it proves (see ``exchange/page.py``)."""

    clock: Callable[[], int]
    """The source's "now" in epoch ms: what is final and what is still open is judged by it."""

    def node(self, node_id: str | NodeId) -> NodeId:
        """``node_id`` parsed and checked against what the source serves (ConfigError otherwise)."""
        ...

    def check_interval(self, node: NodeId, interval: Interval) -> None:
        """ConfigError when ``interval`` disagrees with the series' timeframe."""
        ...

    def align(self, node: NodeId, window: TimeWindow) -> TimeWindow:
        """The window the source pages for ``window`` (candles: widened to the bar grid)."""
        ...

    def pages(self, node: NodeId, window: TimeWindow) -> AsyncIterator[Page]:
        """The pages covering ``window``, each written and then claimed by the engine."""
        ...

    async def close(self) -> None:
        """Release the source's connections (idempotent)."""
        ...
