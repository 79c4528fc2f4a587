"""The synthetic market's invariants (pure Python, no server): the ground truth other tests rely on."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import numpy as np
import pytest

from ccxt_questdb_assets.emulator.market import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    TIMEFRAMES,
    SyntheticMarket,
    bar_open,
    format_decimal,
)

MARKET = SyntheticMarket()


def utc_ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def aggregate_trades(tr, key_fn):
    """Reference aggregation in plain Python: {bar open: (o, h, l, c, v, n)} in integer units."""
    out = {}
    keys = [key_fn(int(t)) for t in tr.ts]
    for k, grp in itertools.groupby(range(len(tr)), key=lambda i: keys[i]):
        idx = list(grp)
        p = [int(tr.price[i]) for i in idx]
        out[k] = (p[0], max(p), min(p), p[-1], sum(int(tr.qty[i]) for i in idx), len(idx))
    return out


def bars_dict(b):
    return {int(t): tuple(int(x) for x in row) for t, *row in zip(b.t, b.o, b.h, b.l, b.c, b.v, b.n, strict=True)}


@pytest.mark.parametrize("symbol", MARKET.symbols)
def test_listing_and_outage_windows_hold_no_data(symbol):
    listing = MARKET.listing_ms(symbol)
    tr = MARKET.trades_array(symbol, listing - 2 * HOUR_MS, listing + HOUR_MS)
    assert len(tr) and tr.ts.min() >= listing
    assert MARKET.bars(symbol, "1m", listing - DAY_MS, listing).t.size == 0
    assert MARKET.bars(symbol, "1d", listing - 5 * DAY_MS, listing + DAY_MS).t[0] == listing - listing % DAY_MS
    ((start, end),) = MARKET.outages(symbol)
    tr = MARKET.trades_array(symbol, start - HOUR_MS, end + HOUR_MS)
    assert not np.any((tr.ts >= start) & (tr.ts < end))
    for tf in ("1m", "5m", "1h"):
        b = MARKET.bars(symbol, tf, start - 2 * HOUR_MS, end + 2 * HOUR_MS)
        assert not np.any((b.t >= start) & (b.t + TIMEFRAMES[tf] <= end)), tf  # bars fully inside: none
    # every valid minute has at least one trade
    b = MARKET.bars(symbol, "1m", start - HOUR_MS, end + HOUR_MS)
    expected = [t for t in range(start - HOUR_MS, end + HOUR_MS, MINUTE_MS) if not start <= t < end]
    assert b.t.tolist() == expected


@pytest.mark.parametrize("symbol", MARKET.symbols)
def test_trade_ids_increase_and_are_contiguous_except_across_outages(symbol):
    spec = MARKET.spec(symbol)
    listing = MARKET.listing_ms(symbol)
    tr = MARKET.trades_array(symbol, listing, listing + 3 * HOUR_MS)
    assert tr.id[0] == 0
    assert np.all(np.diff(tr.id) == 1)
    assert np.all(np.diff(tr.ts) >= 0)
    assert len(tr) == 3 * spec.trades_per_hour  # fixed per-hour total
    ((start, end),) = MARKET.outages(symbol)
    tr = MARKET.trades_array(symbol, start - HOUR_MS, end + HOUR_MS)
    gaps = np.flatnonzero(np.diff(tr.id) != 1)
    assert len(gaps) == 1 and tr.ts[gaps[0]] < start <= end <= tr.ts[gaps[0] + 1]


def test_some_minutes_have_same_millisecond_bursts():
    start = utc_ms(2024, 3, 1)
    tr = MARKET.trades_array("BTCUSDT", start, start + HOUR_MS)
    ts = tr.ts.tolist()
    runs = [len(list(g)) for _, g in itertools.groupby(ts)]
    assert max(runs) >= 3
    assert sum(r > 1 for r in runs) >= 10


@pytest.mark.parametrize("symbol", MARKET.symbols)
def test_one_minute_candles_are_exactly_the_trades_aggregated(symbol):
    ((start, end),) = MARKET.outages(symbol)
    lo, hi = start - 3 * HOUR_MS, end + 3 * HOUR_MS
    tr = MARKET.trades_array(symbol, lo, hi)
    assert bars_dict(MARKET.bars(symbol, "1m", lo, hi)) == aggregate_trades(tr, lambda t: t - t % MINUTE_MS)


@pytest.mark.parametrize("tf", ["1s", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d"])
def test_every_timeframe_aggregates_the_same_trades(tf):
    symbol = "ETHUSDT"
    ((start, end),) = MARKET.outages(symbol)
    lo = start - start % DAY_MS - DAY_MS
    hi = lo + (3 * DAY_MS if tf != "1s" else HOUR_MS)
    tr = MARKET.trades_array(symbol, lo, hi)
    want = aggregate_trades(tr, lambda t: int(bar_open(t, tf)))
    assert bars_dict(MARKET.bars(symbol, tf, lo, hi)) == want


@pytest.mark.parametrize("tf", ["3d", "1w", "1M"])
def test_long_timeframes_aggregate_daily_bars(tf):
    symbol = "SOLUSDT"
    lo, hi = utc_ms(2023, 1, 1), utc_ms(2023, 7, 1)
    days = MARKET.bars(symbol, "1d", lo - 40 * DAY_MS, hi + 40 * DAY_MS)
    want: dict[int, tuple] = {}
    for t, o, h, lo_, c, v, n in zip(
        *(a.tolist() for a in (days.t, days.o, days.h, days.l, days.c, days.v, days.n)), strict=True
    ):
        k = int(bar_open(t, tf))
        if k in want:
            o0, h0, l0, _, v0, n0 = want[k]
            want[k] = (o0, max(h0, h), min(l0, lo_), c, v0 + v, n0 + n)
        else:
            want[k] = (o, h, lo_, c, v, n)
    got = bars_dict(MARKET.bars(symbol, tf, lo, hi))
    assert got and got == {k: v for k, v in want.items() if lo <= k < hi}
    if tf == "1w":
        assert all(datetime.fromtimestamp(k / 1000, UTC).weekday() == 0 for k in got)
    if tf == "1M":
        assert all(datetime.fromtimestamp(k / 1000, UTC).day == 1 for k in got)


def test_nothing_exists_after_now_and_the_open_bar_grows():
    now = utc_ms(2024, 5, 5, 10, 30) + 17_345
    tr = MARKET.trades_array("BTCUSDT", now - HOUR_MS, now + HOUR_MS, now_ms=now)
    assert tr.ts.max() <= now
    first = MARKET.bars("BTCUSDT", "1h", now - 5 * HOUR_MS, now + 5 * HOUR_MS, now_ms=now)
    assert first.t[-1] == utc_ms(2024, 5, 5, 10)
    later = MARKET.bars("BTCUSDT", "1h", now - 5 * HOUR_MS, now + 5 * HOUR_MS, now_ms=now + 20 * MINUTE_MS)
    assert later.t[-1] == first.t[-1] and later.v[-1] > first.v[-1] and later.n[-1] > first.n[-1]
    full = MARKET.bars("BTCUSDT", "1h", now - 5 * HOUR_MS, now + 5 * HOUR_MS)
    assert np.array_equal(first.t[:-1], full.t[: len(first) - 1])
    # the partial bar is the aggregation of the trades up to now
    want = aggregate_trades(tr, lambda t: t - t % HOUR_MS)
    assert bars_dict(first.take(slice(-1, None))) == {int(first.t[-1]): want[int(first.t[-1])]}


def test_data_is_deterministic_across_instances_and_cache_states():
    a, b = SyntheticMarket(), SyntheticMarket()
    lo, hi = utc_ms(2022, 1, 1), utc_ms(2022, 2, 1)
    a.bars("BTCUSDT", "1d", lo - 10 * DAY_MS, hi)  # warm a's cache with a different range
    assert bars_dict(a.bars("BTCUSDT", "4h", lo, hi)) == bars_dict(b.bars("BTCUSDT", "4h", lo, hi))
    assert a.trades("BTCUSDT", lo, lo + 10 * MINUTE_MS) == b.trades("BTCUSDT", lo, lo + 10 * MINUTE_MS)


def test_floats_equal_the_parsed_decimal_strings():
    tr = MARKET.trades_array("BTCUSDT", utc_ms(2024, 1, 1), utc_ms(2024, 1, 1, 1))
    trades = MARKET.to_trades("BTCUSDT", tr)
    for t, p, q in zip(trades, tr.price.tolist(), tr.qty.tolist(), strict=True):
        assert t.price == float(MARKET.price_str("BTCUSDT", p))
        assert t.amount == float(MARKET.qty_str("BTCUSDT", q))
    assert format_decimal(123456, 2) == "1234.56000000"
    assert format_decimal(5, 5) == "0.00005000"


def test_select_bars_follows_binance_semantics():
    now = utc_ms(2024, 6, 1, 12, 0) + 30_000
    sel = MARKET.select_bars("BTCUSDT", "1m", start_ms=None, end_ms=None, limit=500, now_ms=now)
    assert len(sel) == 500 and sel.t[-1] == utc_ms(2024, 6, 1, 12, 0)  # most recent, incl. the open bar
    start = utc_ms(2024, 6, 1) + 1  # mid-bar start: first bar opens at or after it
    sel = MARKET.select_bars("BTCUSDT", "1m", start_ms=start, end_ms=start + 9 * MINUTE_MS - 1, limit=1000, now_ms=now)
    assert sel.t[0] == utc_ms(2024, 6, 1, 0, 1) and sel.t[-1] == utc_ms(2024, 6, 1, 0, 9)  # endTime inclusive
    ((o_start, o_end),) = MARKET.outages("BTCUSDT")
    sel = MARKET.select_bars("BTCUSDT", "1m", start_ms=o_start - 10 * MINUTE_MS, end_ms=None, limit=20, now_ms=now)
    assert len(sel) == 20 and sel.t[10] == o_end
    sel = MARKET.select_bars("BTCUSDT", "1h", start_ms=None, end_ms=o_end + HOUR_MS, limit=10, now_ms=now)
    assert len(sel) == 10 and sel.t[-1] == o_end + HOUR_MS - (o_end + HOUR_MS) % HOUR_MS
    listing = MARKET.listing_ms("BTCUSDT")
    sel = MARKET.select_bars("BTCUSDT", "1d", start_ms=0, end_ms=None, limit=3, now_ms=now)
    assert sel.t[0] == listing - listing % DAY_MS


def test_select_agg_trades_follows_binance_semantics():
    now = utc_ms(2024, 6, 1, 12, 0) + 30_000
    recent = MARKET.select_agg_trades("BTCUSDT", from_id=None, start_ms=None, end_ms=None, limit=1000, now_ms=now)
    assert len(recent) == 1000 and recent.ts[-1] <= now
    after = MARKET.trades_array("BTCUSDT", int(recent.ts[-1]) + 1, now + HOUR_MS, now_ms=now)
    assert len(after) == 0
    page = MARKET.select_agg_trades(
        "BTCUSDT", from_id=int(recent.id[10]), start_ms=None, end_ms=None, limit=50, now_ms=now
    )
    assert page.id.tolist() == recent.id[10:60].tolist()
    t0 = int(recent.ts[100])
    window = MARKET.select_agg_trades("BTCUSDT", from_id=None, start_ms=t0, end_ms=t0 + 5000, limit=1000, now_ms=now)
    want = recent.take((recent.ts >= t0) & (recent.ts <= t0 + 5000))
    assert window.id.tolist() == want.id.tolist()  # both bounds inclusive
    before_listing = MARKET.select_agg_trades("BTCUSDT", from_id=0, start_ms=None, end_ms=None, limit=3, now_ms=now)
    assert before_listing.ts[0] >= MARKET.listing_ms("BTCUSDT") and before_listing.id.tolist() == [0, 1, 2]
