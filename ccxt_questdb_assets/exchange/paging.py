"""What a paging of a dialect (``candle_pages``, ``trade_pages``) asks of the fetcher running it:
its config, its clock, calls through the session, and the empty-answer check."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ccxt_questdb_assets.core.node_ids import NodeId
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.core.windows import TimeWindow
from ccxt_questdb_assets.exchange.config import CcxtBackfillConfig

__all__ = ["Ask", "PagingFetcher"]

#: One request of a page, asked again as it is (a repeat to confirm an empty answer).
Ask = Callable[[], Awaitable[list[Any]]]


class PagingFetcher(Protocol):
    config: CcxtBackfillConfig
    clock: Callable[[], int]

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """The ccxt method through the session (limiter, retries); junk rows -> ExchangeDataError."""
        ...

    async def confirmed(
        self,
        node: NodeId,
        window: TimeWindow,
        ask: Ask,
        probe: Ask,
        inside: Callable[[list[Any]], int | None],
        *,
        held_before: bool,
    ) -> tuple[list[Any], int]:
        """``ask()``'s rows, or ``[]`` once a repeat and a probe agree the window is empty; and requests."""
        ...

    def final_until(self) -> int:
        """Rows before this millisecond are final now."""
        ...

    def closed_until(self, tf: Timeframe) -> int:
        """Bars opening before ``closed_until - tf`` are closed and final now."""
        ...

    def first_bar_in(self, start: int, end: int) -> Callable[[list[Any]], int | None]:
        """The first open time in ``[start, end)`` among probe rows."""
        ...
