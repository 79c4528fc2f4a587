"""The checks' timestamp and OHLC reports, read by period for a whole span in one query each,
against a real QuestDB: every day's (or month's) report is that period's own, its examples taken
from that period only, and a period without rows has no report."""

import uuid
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from ccxt_questdb_assets.core.node_ids import NodeId
from ccxt_questdb_assets.core.windows import TimeWindow
from ccxt_questdb_assets.storage.client import QuestDBClient
from ccxt_questdb_assets.storage.quality import ohlc_reports, timestamp_reports
from ccxt_questdb_assets.storage.series import SeriesStore
from ccxt_questdb_assets.storage.series_kind import CANDLE_KIND

NODE = NodeId.parse("ohlcv:binance:BTC/USDT:1h")
HOUR, DAY = 3_600_000, 86_400_000


def utc_ms(*args) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def day_of_bars(start_ms: int) -> pd.DataFrame:
    ts = start_ms + np.arange(24, dtype=np.int64) * HOUR
    price = 100.0 + np.arange(24)
    return pd.DataFrame(
        {"ts": ts, "open": price, "high": price + 1, "low": price - 1, "close": price, "volume": 1.0, "closed": True}
    )


@pytest.fixture(scope="module")
def seeded(questdb):
    """Hourly bars on 2024-03-30, 03-31 and 04-02 (04-01 holds none): 03-30 has its 05:00 bar
    twice, 03-31 a bar with high below low, 04-02 a negative volume (03:00) and its 07:00 bar twice."""
    client = QuestDBClient(questdb.connection)
    store = SeriesStore(client, "q_" + uuid.uuid4().hex[:10], CANDLE_KIND)
    days = {d: day_of_bars(d) for d in (utc_ms(2024, 3, 30), utc_ms(2024, 3, 31), utc_ms(2024, 4, 2))}
    mar31, apr2 = utc_ms(2024, 3, 31), utc_ms(2024, 4, 2)
    days[mar31].loc[10, "high"] = days[mar31].loc[10, "low"] - 5
    days[apr2].loc[3, "volume"] = -1.0
    for frame in days.values():
        store.write(NODE, frame)
    client.wait_visible(store.table)
    client.query(f'ALTER TABLE "{store.table}" DEDUP DISABLE')  # else a repeated row replaces the first
    store.write(NODE, days[utc_ms(2024, 3, 30)].iloc[[5]])
    store.write(NODE, days[apr2].iloc[[7]])
    client.wait_visible(store.table)
    yield client, store
    client.close()


def test_reports_by_day_are_each_days_own(seeded):
    client, store = seeded
    span = TimeWindow(utc_ms(2024, 3, 30), utc_ms(2024, 4, 3))
    stamps = timestamp_reports(client, store.table, NODE, span, "d")
    ohlc = ohlc_reports(client, store.table, NODE, span, "d")
    days = [utc_ms(2024, 3, 30), utc_ms(2024, 3, 31), utc_ms(2024, 4, 2)]
    assert sorted(stamps) == sorted(ohlc) == days  # 04-01 holds no row: no report
    for day in days:  # each day's figures are what that day's own window holds
        rows = store.count(NODE, TimeWindow(day, day + DAY))
        assert stamps[day].rows == ohlc[day].rows == rows
        assert stamps[day].off_grid == 0
    assert [stamps[d].rows for d in days] == [25, 24, 25]
    assert [stamps[d].duplicate_rows for d in days] == [1, 0, 1]
    assert stamps[days[0]].duplicates == [(days[0] + 5 * HOUR, 2)]  # each day's own duplicate only
    assert stamps[days[2]].duplicates == [(days[2] + 7 * HOUR, 2)]
    assert [ohlc[d].violations["high_below_low"] for d in days] == [0, 1, 0]
    assert [ohlc[d].violations["negative_volume"] for d in days] == [0, 0, 1]
    assert [t for t, *_ in ohlc[days[1]].examples] == [days[1] + 10 * HOUR]  # from its own day only
    assert [t for t, *_ in ohlc[days[2]].examples] == [days[2] + 3 * HOUR]


def test_reports_by_month_gather_their_days(seeded):
    client, store = seeded
    span = TimeWindow(utc_ms(2024, 3, 1), utc_ms(2024, 5, 1))
    stamps = timestamp_reports(client, store.table, NODE, span, "M")
    ohlc = ohlc_reports(client, store.table, NODE, span, "M")
    march, april = utc_ms(2024, 3, 1), utc_ms(2024, 4, 1)
    assert sorted(stamps) == sorted(ohlc) == [march, april]
    by_day = timestamp_reports(client, store.table, NODE, span, "d")
    assert stamps[march].rows == by_day[utc_ms(2024, 3, 30)].rows + by_day[utc_ms(2024, 3, 31)].rows
    assert stamps[april].rows == by_day[utc_ms(2024, 4, 2)].rows
    assert ohlc[march].violations["high_below_low"] == 1 and ohlc[march].violations["negative_volume"] == 0
    assert ohlc[april].violations["negative_volume"] == 1 and ohlc[april].violations["high_below_low"] == 0
    assert [t for t, *_ in ohlc[april].examples] == [utc_ms(2024, 4, 2, 3)]
    assert stamps[march].duplicates == [(utc_ms(2024, 3, 30, 5), 2)] and stamps[march].duplicate_rows == 1
    assert stamps[april].duplicates == [(utc_ms(2024, 4, 2, 7), 2)]


def test_a_period_unit_outside_days_and_months_is_refused(seeded):
    client, store = seeded
    with pytest.raises(ValueError, match="period unit 'h'"):
        timestamp_reports(client, store.table, NODE, TimeWindow(0, DAY), "h")
