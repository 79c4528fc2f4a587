"""A page cut into spans (core.pages.split_page): an archive's month file written and claimed a
day at a time."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ccxt_questdb_assets.core.pages import Page, split_page
from ccxt_questdb_assets.core.windows import TimeWindow

MIN, DAY = 60_000, 86_400_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00Z


def rows(ts: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"ts": ts, "close": np.arange(ts.size, dtype=np.float64)})


def test_a_page_over_days_is_cut_at_each_midnight_rows_claims_and_empties_with_it():
    ts = np.arange(T0 + 12 * 60 * MIN, T0 + 3 * DAY, MIN, dtype=np.int64)  # from noon of day 1
    ts = ts[(ts < T0 + DAY + 60 * MIN) | (ts >= T0 + DAY + 120 * MIN)]  # an hour without rows
    page = Page(
        rows=rows(ts),
        start_ms=T0 + 12 * 60 * MIN,
        claim=TimeWindow(T0 + 12 * 60 * MIN, T0 + 3 * DAY - 10 * MIN),  # the last 10 bars still open
        empty=[TimeWindow(T0 + DAY + 60 * MIN, T0 + DAY + 120 * MIN)],
        requests=0,
    )
    parts = split_page(page, DAY)
    assert [p.start_ms for p in parts] == [T0 + 12 * 60 * MIN, T0 + DAY, T0 + 2 * DAY]
    assert [p.claim for p in parts] == [
        TimeWindow(T0 + 12 * 60 * MIN, T0 + DAY),
        TimeWindow(T0 + DAY, T0 + 2 * DAY),
        TimeWindow(T0 + 2 * DAY, T0 + 3 * DAY - 10 * MIN),
    ]
    assert [p.empty for p in parts] == [[], [TimeWindow(T0 + DAY + 60 * MIN, T0 + DAY + 120 * MIN)], []]
    # every row once, in order, each in its day; the open bars ride with the last part, unclaimed
    pd.testing.assert_frame_equal(pd.concat([p.rows for p in parts], ignore_index=True), page.rows)
    for p in parts:
        assert p.rows["ts"].between(p.start_ms, p.start_ms + DAY - 1).all() and p.rows.index[0] == 0
    assert len(parts[2].rows) == 1440 and parts[2].rows["ts"].iloc[-1] >= parts[2].claim.end_ms


def test_an_empty_span_straddling_midnight_is_cut_and_a_page_inside_one_day_is_kept_whole():
    empty = TimeWindow(T0 + DAY - 30 * MIN, T0 + DAY + 30 * MIN)
    page = Page(rows=rows(np.zeros(0, dtype=np.int64)), start_ms=T0 + DAY - 30 * MIN, claim=empty, empty=[empty])
    first, second = split_page(page, DAY)
    assert first.empty == [TimeWindow(T0 + DAY - 30 * MIN, T0 + DAY)] and first.requests == 1
    assert second.empty == [TimeWindow(T0 + DAY, T0 + DAY + 30 * MIN)] and second.requests == 0
    inside = Page(rows=rows(np.arange(T0, T0 + 60 * MIN, MIN)), start_ms=T0, claim=TimeWindow(T0, T0 + 60 * MIN))
    assert split_page(inside, DAY) == [inside]
