import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ccxt_questdb_assets.core.coverage import (
    Coverage,
    CoverageSpan,
    EmptyRecheckPolicy,
    gaps,
    holes,
    merge,
    to_inclusive_bars,
)
from ccxt_questdb_assets.core.windows import TimeWindow

W = TimeWindow


def test_merge_joins_touching_and_overlapping():
    assert merge([W(10, 20), W(0, 10), W(15, 30), W(40, 50), W(60, 60)]) == [W(0, 30), W(40, 50)]


def test_gaps_of_request():
    covered = [W(0, 10), W(20, 30)]
    assert gaps(W(5, 35), covered) == [W(10, 20), W(30, 35)]
    assert gaps(W(0, 10), covered) == []
    assert gaps(W(-5, 0), covered) == [W(-5, 0)]


def test_recent_empty_span_is_rechecked_after_delay():
    policy = EmptyRecheckPolicy(recent_ms=1000, recheck_after_ms=500)
    recent = CoverageSpan(0, 10_000, empty=True, checked_at_ms=10_200)
    old = CoverageSpan(0, 10_000, empty=True, checked_at_ms=20_000)
    assert policy.trusted(recent, now_ms=10_600)
    assert not policy.trusted(recent, now_ms=10_700)
    assert policy.trusted(old, now_ms=10**12)
    cov = Coverage((recent,))
    assert cov.gaps(W(0, 10_000), now_ms=10_800, policy=policy) == [W(0, 10_000)]
    assert cov.empty_windows() == [W(0, 10_000)]


def test_inclusive_bar_form_of_the_spec():
    assert to_inclusive_bars([W(60_000, 240_000)], 60_000) == [(60, 180)]


intervals = st.lists(st.tuples(st.integers(0, 200), st.integers(0, 50)), max_size=12)


@given(intervals, st.integers(0, 200), st.integers(0, 100))
def test_gaps_and_coverage_partition_the_request(raw, start, length):
    covered = merge(W(a, a + n) for a, n in raw)
    request = W(start, start + length)
    holes = gaps(request, covered)
    points_covered = {p for w in covered for p in range(w.start_ms, w.end_ms)}
    points_holes = {p for w in holes for p in range(w.start_ms, w.end_ms)}
    request_points = set(range(request.start_ms, request.end_ms))
    assert points_holes == request_points - points_covered
    assert all(not h.empty for h in holes)
    assert holes == merge(holes)


def _holes_one_bar_at_a_time(opens: list[int], window: TimeWindow, step: int) -> list[TimeWindow]:
    """The definition ``holes`` computes in bulk: walk the bars, a hole wherever one starts past
    the reach of those before it."""
    out, cursor = [], window.start_ms
    for ts in opens:
        if ts > cursor:
            out.append(W(cursor, ts))
        cursor = max(cursor, ts + step)
    if cursor < window.end_ms:
        out.append(W(cursor, window.end_ms))
    return out


@given(st.lists(st.integers(-5, 60), max_size=30), st.integers(-10, 40), st.integers(0, 80), st.integers(1, 7))
def test_holes_in_bulk_are_the_bar_by_bar_holes(raw, start, length, step):
    opens = sorted(raw)
    window = W(start, start + length)
    expected = _holes_one_bar_at_a_time(opens, window, step)
    assert holes(opens, window, step) == expected
    assert holes(np.array(opens, dtype=np.int64), window, step) == expected


def test_holes_of_a_page_with_a_missing_hour():
    opens = [m * 60_000 for m in range(120) if not 30 <= m < 90]
    assert holes(opens, W(0, 180 * 60_000), 60_000) == [W(30 * 60_000, 90 * 60_000), W(120 * 60_000, 180 * 60_000)]
    assert holes([], W(5, 9), 1) == [W(5, 9)]
    assert holes([], W(5, 5), 1) == []
