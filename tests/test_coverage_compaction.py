"""Coverage compaction: many span rows of a node become one row per contiguous run.

The merge is pure logic (``core.coverage.merge``); the rewrite and tombstones are checked on the
real QuestDB through ``CoverageStore``; the engine's use of both through real ccxt and the
exchange emulator.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st
from test_history_backfill import DAY, MIN, assert_candles_equal, klines_requests, make_provider, truth_candles, utc_ms

from ccxt_questdb_assets.core.coverage import CoverageSpan, merge
from ccxt_questdb_assets.core.windows import TimeWindow
from ccxt_questdb_assets.storage.client import QuestDBClient
from ccxt_questdb_assets.storage.coverage_store import COMPACT_AFTER_ROWS, CoverageStore
from ccxt_questdb_assets.testing.fixtures_services import wait_for_wal

W = TimeWindow
NODE = "ohlcv:binance:BTC/USDT:1m"
OTHER = "ohlcv:binance:ETH/USDT:1m"


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 40)), max_size=40))
def test_merge_keeps_the_union_and_leaves_disjoint_sorted_runs(raw):
    windows = [W(a, a + n) for a, n in raw]
    merged = merge(windows)
    points = {p for w in windows for p in range(w.start_ms, w.end_ms)}
    assert {p for w in merged for p in range(w.start_ms, w.end_ms)} == points
    assert all(not w.empty for w in merged)
    # Sorted, and neither overlapping nor touching: one window per contiguous run.
    assert all(a.end_ms < b.start_ms for a, b in pairwise(merged))
    assert merge(merged) == merged


def live_rows(conn, table: str, node: str) -> list[tuple[int, int, bool]]:
    """The rows a lookup reads (tombstones have ``end_ts = ts``): (start ms, end ms, empty)."""
    wait_for_wal(conn, table)
    rows = conn.execute(
        f"SELECT cast(ts AS long), cast(end_ts AS long), empty FROM {table} "
        "WHERE node_id = %s AND end_ts > ts ORDER BY ts, empty",
        (node,),
    ).fetchall()
    return [(s // 1000, e // 1000, bool(empty)) for s, e, empty in rows]


def test_compact_merges_each_run_into_one_row_and_keeps_empty_spans(questdb, questdb_conn):
    client = QuestDBClient(questdb.connection)
    table = f"cmp_{uuid.uuid4().hex[:10]}_coverage"
    store = CoverageStore(client, table)
    t0 = utc_ms(2024, 1, 1)
    checked = utc_ms(2024, 6, 1)  # long after the spans: empty spans are final
    hour = 60 * MIN

    spans: list[CoverageSpan] = []
    # Run A: 30 adjacent hours, and 10 spans overlapping their seams.
    spans += [CoverageSpan(t0 + i * hour, t0 + (i + 1) * hour, False, checked) for i in range(30)]
    spans += [CoverageSpan(t0 + i * hour + 30 * MIN, t0 + (i + 2) * hour, False, checked) for i in range(10)]
    a_end = t0 + 30 * hour
    # A known-empty hour right after run A (an outage), then run B touching it: the covered set
    # joins them, but the data rows stay two runs.
    outage = CoverageSpan(a_end, a_end + hour, True, checked)
    b0 = a_end + hour
    spans += [CoverageSpan(b0 + i * 10 * MIN, b0 + (i + 2) * 10 * MIN, False, checked) for i in range(12)]
    b_end = b0 + 13 * 10 * MIN
    # Run C after a real gap, with a span inside another, and a known-empty window that starts
    # exactly where an absorbed data span starts (its own row, same start, other key).
    c0 = b_end + 5 * hour
    spans += [
        CoverageSpan(c0, c0 + 3 * hour, False, checked),
        CoverageSpan(c0 + hour, c0 + 2 * hour, False, checked),
        CoverageSpan(c0 + 2 * hour, c0 + 4 * hour, False, checked),
    ]
    c_end = c0 + 4 * hour
    pre_listing = CoverageSpan(c0 + hour, c0 + hour + 10 * MIN, True, checked)
    spans += [outage, pre_listing]
    for chunk in (spans[:20], spans[20:45], spans[45:]):  # several writes, as fills would do
        store.record(NODE, chunk)
    store.record(OTHER, [CoverageSpan(t0 + i * hour, t0 + (i + 1) * hour, False, checked) for i in range(40)])

    data_rows = sum(not s.empty for s in spans)
    assert data_rows > COMPACT_AFTER_ROWS
    before = live_rows(questdb_conn, table, NODE)
    assert len(before) == len(spans)
    cov_before = store.load(NODE)
    other_before = live_rows(questdb_conn, table, OTHER)

    runs = [W(t0, a_end), W(b0, b_end), W(c0, c_end)]
    tombstoned = store.compact(NODE, checked + DAY)
    assert tombstoned == data_rows - len(runs)

    after = live_rows(questdb_conn, table, NODE)
    assert [(s, e) for s, e, empty in after if not empty] == [(w.start_ms, w.end_ms) for w in runs]
    assert sorted((s, e) for s, e, empty in after if empty) == sorted(
        (s.start_ms, s.end_ms) for s in (outage, pre_listing)
    )
    cov_after = store.load(NODE)
    now = checked + DAY
    assert cov_after.covered(now) == cov_before.covered(now) == [W(t0, b_end), W(c0, c_end)]
    assert cov_after.empty_windows() == cov_before.empty_windows() == [outage.window, pre_listing.window]
    assert live_rows(questdb_conn, table, OTHER) == other_before  # another node's rows are untouched

    # Compacted coverage stays compact, and a fill can extend a merged row in place again.
    assert store.compact(NODE, now) == 0
    store.record(NODE, [CoverageSpan(c0, c_end + hour, False, now)])
    assert store.load(NODE).covered(now)[-1] == W(c0, c_end + hour)
    assert len(live_rows(questdb_conn, table, NODE)) == len(after)
    client.close()


def coverage_table_rows(conn, provider, node: str) -> tuple[list[tuple[int, int, bool]], int]:
    table = provider.backend.tables.coverage
    wait_for_wal(conn, table)
    total = conn.execute(f"SELECT count() FROM {table} WHERE node_id = %s", (node,)).fetchone()[0]
    return live_rows(conn, table, node), total


def test_many_pages_leave_one_coverage_row(questdb, questdb_conn, emulator, emulator_control):
    provider = make_provider(questdb, emulator, window_size=250)
    start = utc_ms(2024, 3, 10)
    end = start + 3 * DAY
    report = provider.ensure_range_sync(start // 1000, end // 1000, node_id=NODE)
    assert report.pages == len(klines_requests(emulator_control)) == math.ceil((end - start) // MIN / 250) == 18
    live, total = coverage_table_rows(questdb_conn, provider, NODE)
    assert live == [(start, end, False)]  # one row extended in place, not one per page
    assert total == 1


def test_backfill_compacts_fragmented_coverage(questdb, questdb_conn, emulator, emulator_control):
    provider = make_provider(questdb, emulator)
    day = utc_ms(2024, 4, 2)
    pieces = [W(day + i * 40 * MIN, day + i * 40 * MIN + 10 * MIN) for i in range(36)]

    async def fragments() -> None:
        try:
            for w in pieces:
                await provider.ensure_range(w.start_ms // 1000, w.end_ms // 1000, node_id=NODE)
        finally:
            await provider.close()

    asyncio.run(fragments())
    live, _ = coverage_table_rows(questdb_conn, provider, NODE)
    assert live == [(w.start_ms, w.end_ms, False) for w in pieces]  # disjoint: nothing to merge yet

    emulator_control.clear_requests()
    frame = provider.fetch_sync(day // 1000, (day + DAY) // 1000, node_id=NODE)
    starts = [int(r["params"]["startTime"]) for r in klines_requests(emulator_control)]
    assert starts == [w.end_ms for w in pieces]  # only the 36 holes were fetched, one page each
    assert_candles_equal(frame, truth_candles(emulator, "BTC/USDT", day, day + DAY))

    live, total = coverage_table_rows(questdb_conn, provider, NODE)
    assert live == [(day, day + DAY, False)]  # 72 fill rows compacted into one
    assert total == 2 * len(pieces)  # the absorbed rows remain as tombstones, which lookups skip
    emulator_control.clear_requests()
    provider.fetch_sync(day // 1000, (day + DAY) // 1000, node_id=NODE)
    assert emulator_control.requests() == []
