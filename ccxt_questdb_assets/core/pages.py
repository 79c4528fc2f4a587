"""A page: one answer of the exchange, the rows it holds and the window it proves (what a fetcher
yields and the history engine writes, then claims)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ccxt_questdb_assets.core.windows import TimeWindow

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


def split_page(page: Page, span_ms: int) -> list[Page]:
    """``page`` cut at every multiple of ``span_ms`` (UTC days, for example): the parts, in order,
    each with its rows, its part of the claim and of the empty windows. The first part keeps the
    page's ``requests``; a page inside one span is returned as it is."""
    ts = page.rows["ts"].to_numpy() if len(page.rows) else np.zeros(0, dtype=np.int64)
    end = max(int(ts[-1]) + 1 if ts.size else page.start_ms, page.claim.end_ms if page.claim else page.start_ms)
    cuts = list(range((page.start_ms // span_ms + 1) * span_ms, end, span_ms))
    if not cuts:
        return [page]
    lows, highs = [page.start_ms, *cuts], [*cuts, end]
    firsts = [0, *np.searchsorted(ts, cuts).tolist()]
    lasts = [*firsts[1:], len(ts)]
    parts = []
    for i, bucket in enumerate(TimeWindow(lo, hi) for lo, hi in zip(lows, highs, strict=True)):
        parts.append(
            Page(
                rows=page.rows.iloc[firsts[i] : lasts[i]].reset_index(drop=True),
                start_ms=bucket.start_ms,
                claim=_clip(page.claim, bucket) if page.claim else None,
                empty=[w for w in (_clip(e, bucket) for e in page.empty) if w is not None],
                requests=page.requests if i == 0 else 0,
            )
        )
    return parts


def _clip(window: TimeWindow, bucket: TimeWindow) -> TimeWindow | None:
    start, end = max(window.start_ms, bucket.start_ms), min(window.end_ms, bucket.end_ms)
    return TimeWindow(start, end) if end > start else None
