"""A page: one answer of the exchange, the rows it holds and the window it proves (what a fetcher
yields and the history engine writes, then claims)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ccxt_questdb_assets.core.windows import TimeWindow

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Page"]


@dataclass
class Page:
    """One answer of the exchange (``requests`` asked it): rows from ``start_ms`` on, and what they prove.

    ``claim`` is the window for which the page holds every row the exchange has (closed bars or
    final trade milliseconds only); ``empty`` the parts of the claim without rows. Pages of a
    newest-first dialect come newest first: each claim ends where the previous one started.
    """

    rows: pd.DataFrame
    start_ms: int
    claim: TimeWindow | None = None
    empty: list[TimeWindow] = field(default_factory=list)
    requests: int = 1
