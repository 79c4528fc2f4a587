"""Derived assets and asset checks through real Dagster runs, real QuestDB, real ccxt and the emulator.

The first test materializes a day of one symbol (1m candles, resampled 1h, trades, trade bars)
and compares what QuestDB computed with the emulator's own 1h and 1m candles. The second seeds
bad data into a fresh table prefix (rows written directly, bypassing validation, and coverage
recorded over rows that were never written) and shows each check failing on its own case only,
a blocking failure stopping the resampled asset in the same run, and a range run reporting all.
"""

import uuid
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, Definitions, materialize
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from ccxt_questdb_assets.core.clock import wall_clock_ms
from ccxt_questdb_assets.core.coverage import CoverageSpan
from ccxt_questdb_assets.core.node_ids import NodeId
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.core.windows import TimeWindow
from ccxt_questdb_assets.defs.build import build_resources
from ccxt_questdb_assets.defs.derived_assets import build_derived_assets, resampled_table, trade_bars_table
from ccxt_questdb_assets.defs.ingest_assets import build_ingest_assets, ohlcv_table
from ccxt_questdb_assets.defs.partitions import keys_for
from ccxt_questdb_assets.defs.project_config import ProjectConfig
from ccxt_questdb_assets.storage.client import QuestDBClient
from ccxt_questdb_assets.storage.coverage_store import CoverageStore
from ccxt_questdb_assets.storage.series import SeriesStore
from ccxt_questdb_assets.storage.series_kind import CANDLE_KIND
from ccxt_questdb_assets.testing.candles import assert_bars_equal

SYMBOL = "BTC/USDT"
KLINES = "/api/v3/klines"
AGG = "/api/v3/aggTrades"
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
ONE_M, ONE_H = "binance/ohlcv/ohlcv_1m", "binance/ohlcv/ohlcv_1h_resampled"
TRADES, BARS = "binance/trades", "binance/ohlcv/trade_bars_1m"
CANDLE_CHECKS = {"no_gaps", "unique_increasing_timestamps", "ohlc_sanity"}


def utc_ms(*args) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def make_project(questdb, emulator) -> ProjectConfig:
    conn = questdb.connection
    prefix = "k_" + uuid.uuid4().hex[:10]
    return ProjectConfig.from_mapping(
        {
            "start_date": "2024-01-01",
            "questdb": {"host": conn.host, "port": conn.port, "http_port": conn.http_port, "table_prefix": prefix},
            "rate_limiter": {"scope": "process", "max_concurrency": 2},
            "exchanges": {
                "binance": {
                    "base_url": emulator.base_url,
                    "symbols": [SYMBOL],
                    "timeframes": ["1m"],
                    "trades": True,
                    "resample_to": ["1h"],
                    "retry_backoff_s": 0.01,
                }
            },
        }
    )


class Project:
    """One project on a fresh table prefix, its Definitions pieces and an instance."""

    def __init__(self, cfg: ProjectConfig, instance: DagsterInstance, questdb) -> None:
        self.cfg, self.instance = cfg, instance
        self.ex = cfg.exchanges[0]
        self.assets = [*build_ingest_assets(cfg), *build_derived_assets(cfg)]
        self.resources = build_resources(cfg)
        self.client = QuestDBClient(questdb.connection)
        Definitions.validate_loadable(Definitions(assets=self.assets, resources=self.resources))

    def run(self, names: list[str], day: str | None = None, *, tags: dict | None = None):
        """The named assets with their checks (each asset's checks run in its own step)."""
        wanted = set(names)
        assets = [a for a in self.assets if a.key.to_user_string() in wanted]
        return materialize(
            assets,
            instance=self.instance,
            resources=self.resources,
            partition_key=keys_for([day], [SYMBOL])[0] if day else None,
            tags=tags,
            raise_on_error=False,
        )

    def store(self, table: str) -> SeriesStore:
        return SeriesStore(self.client, table, CANDLE_KIND)


@pytest.fixture
def project(questdb, emulator, emulator_control, tmp_path):
    with DagsterInstance.ephemeral(tempdir=str(tmp_path / "dagster")) as instance:
        instance.add_dynamic_partitions("binance_symbols", [SYMBOL])
        yield Project(make_project(questdb, emulator), instance, questdb)


def node(tf: str) -> NodeId:
    return NodeId("ohlcv", "binance", SYMBOL, Timeframe.parse(tf))


def step(name: str) -> str:
    """The step (and op) of an asset: its key as a Python identifier."""
    return AssetKey.from_user_string(name).to_python_identifier()


def checks_of(result, partition: str | None = None) -> dict[tuple[str, str], object]:
    """The run's check evaluations by (asset, check), of one partition if given."""
    evaluations = [e for e in result.get_asset_check_evaluations() if partition is None or e.partition == partition]
    out = {(e.asset_key.to_user_string(), e.check_name): e for e in evaluations}
    assert len(out) == len(evaluations), "one evaluation per asset, check and partition"
    return out


def truth(emulator, tf: str, start: int, end: int) -> np.ndarray:
    return np.array(emulator.market.candles(SYMBOL, tf, start, end), dtype=float)[:, :6]


def test_day_of_candles_resampled_and_trade_bars_are_exact_and_every_check_passes(project, emulator, emulator_control):
    day, start, end = "2024-03-01", utc_ms(2024, 3, 1), utc_ms(2024, 3, 2)
    result = project.run([ONE_M, ONE_H, TRADES, BARS], day)
    assert result.success

    evaluations = checks_of(result)
    expected = {(a, c) for a in (ONE_M, ONE_H, BARS) for c in CANDLE_CHECKS} | {(BARS, "agrees_with_exchange_candles")}
    assert set(evaluations) == expected
    assert [k for k, e in evaluations.items() if not e.passed] == []
    gaps = {a: evaluations[(a, "no_gaps")].metadata for a in (ONE_M, ONE_H, BARS)}
    assert {a: md["expected_bars"].value for a, md in gaps.items()} == {ONE_M: 1440, ONE_H: 24, BARS: 1440}
    assert all(md["missing_bars"].value == 0 and md["uncovered_closed_bars"].value == 0 for md in gaps.values())
    agree = evaluations[(BARS, "agrees_with_exchange_candles")].metadata
    assert (agree["minutes_compared"].value, agree["mismatches"].value) == (1440, 0)
    assert evaluations[(ONE_H, "ohlc_sanity")].metadata["rows_checked"].value == 24

    # What QuestDB computed equals the emulator's own candles (the exchange's ground truth).
    ex = project.ex
    window = TimeWindow(start, end)
    hourly = project.store(resampled_table(ex, "1h").table).read(node("1h"), window)
    assert_bars_equal(hourly, truth(emulator, "1h", start, end))
    from_trades = project.store(trade_bars_table(ex).table).read(node("1m"), window)
    assert_bars_equal(from_trades, truth(emulator, "1m", start, end))
    assert project.store(ohlcv_table(ex, "1m").table).count(node("1m"), window) == 1440
    closed = project.client.query(f'SELECT count() FROM "{resampled_table(ex, "1h").table}" WHERE closed')
    assert closed[0][0] == 24

    md = result.asset_materializations_for_node(step(ONE_H))[0].metadata
    assert md["rows_written"].value == 24 and md["uncovered_closed_bars"].value == 0
    assert md["dagster/row_count"].value == 24 and md["computed_from"].value == ohlcv_table(ex, "1m").table
    assert result.asset_materializations_for_node(step(BARS))[0].metadata["rows_written"].value == 1440
    # The derived series recorded their own coverage once their rows were visible.
    cov = CoverageStore(project.client, resampled_table(ex, "1h").table + "_coverage").load(str(node("1h")))
    assert cov.covered(wall_clock_ms()) == [window]

    # A second run computes the same bars again (an upsert) and fetches nothing.
    emulator_control.clear_requests()
    again = project.run([ONE_M, ONE_H, TRADES, BARS], day)
    assert again.success and all(e.passed for e in again.get_asset_check_evaluations())
    assert emulator_control.requests(KLINES) == [] and emulator_control.requests(AGG) == []
    assert project.store(resampled_table(ex, "1h").table).count(node("1h"), window) == 24


def seed_day(project: Project, emulator, table: str, tf: str, day_start: int, *, skip=(), edit=None) -> pd.DataFrame:
    """Write the emulator's candles of one day straight into ``table`` (no validation), minus the
    ``skip`` windows, after ``edit(frame)``; returns what was written."""
    rows = truth(emulator, tf, day_start, day_start + DAY)
    frame = pd.DataFrame(rows, columns=["ts", "open", "high", "low", "close", "volume"])
    frame["ts"] = frame["ts"].astype(np.int64)
    for a, b in skip:
        frame = frame[(frame["ts"] < a) | (frame["ts"] >= b)]
    frame = frame.reset_index(drop=True)
    frame["closed"] = True
    if edit is not None:
        edit(frame)
    project.store(table).write(node(tf), frame)
    project.client.wait_visible(table)
    return frame


def cover(project: Project, table: str, tf: str, *spans: CoverageSpan) -> None:
    CoverageStore(project.client, table + "_coverage").record(str(node(tf)), list(spans))


def set_at(frame: pd.DataFrame, ts: int, **values) -> None:
    for column, value in values.items():
        frame.loc[frame["ts"] == ts, column] = value


def failed(result) -> set[tuple[str, str]]:
    return {k for k, e in checks_of(result).items() if not e.passed}


def failed_on(result, partition: str) -> set[tuple[str, str]]:
    return {k for k, e in checks_of(result, partition).items() if not e.passed}


def resampled_not_run(project: Project, result, day_start: int, failed_check: str) -> bool:
    """The blocking check's step failed, and the resampled asset's step never started (Dagster
    abandons the steps downstream of a failed step): nothing materialized, no row written."""
    table = resampled_table(project.ex, "1h").table
    return (
        result.get_failed_step_keys() == {step(ONE_M)}
        and not checks_of(result)[(ONE_M, failed_check)].passed
        and result.filter_events(lambda e: e.step_key == step(ONE_H)) == []
        and result.asset_materializations_for_node(step(ONE_H)) == []
        and project.store(table).count(node("1h"), TimeWindow(day_start, day_start + DAY)) == 0
    )


def test_each_check_fails_on_its_seeded_case_and_a_blocking_failure_stops_the_resampled_asset(
    project, emulator, emulator_control
):
    ex, now = project.ex, wall_clock_ms()
    one_m = ohlcv_table(ex, "1m").table
    # Without DEDUP a repeated row stays a second row: the only way to store a duplicate bar.
    project.client.ensure_table(CANDLE_KIND.schema, one_m)
    project.client.query(f'ALTER TABLE "{one_m}" DEDUP DISABLE')

    def whole_day(day_start):
        return CoverageSpan(day_start, day_start + DAY, False, now)

    # 2024-03-02: high < low at 10:00, negative volume at 11:00, a NaN open at 12:00.
    d2 = utc_ms(2024, 3, 2)
    bad_high, bad_volume, bad_nan = d2 + 10 * HOUR, d2 + 11 * HOUR, d2 + 12 * HOUR

    def break_ohlc(frame):
        low = float(frame.loc[frame["ts"] == bad_high, "low"].iloc[0])
        set_at(frame, bad_high, high=low - 1.0)
        set_at(frame, bad_volume, volume=-0.5)
        set_at(frame, bad_nan, open=np.nan)

    seed_day(project, emulator, one_m, "1m", d2, edit=break_ohlc)
    cover(project, one_m, "1m", whole_day(d2))
    # 2024-03-03: the 09:00 bar stored twice.
    d3 = utc_ms(2024, 3, 3)
    frame = seed_day(project, emulator, one_m, "1m", d3)
    project.store(one_m).write(node("1m"), frame[frame["ts"] == d3 + 9 * HOUR])
    project.client.wait_visible(one_m)
    cover(project, one_m, "1m", whole_day(d3))
    # 2024-03-04: coverage claims the day, but 20:00-21:00 was never written; 03:00-03:30 is a
    # known-empty window (an outage), not written either.
    d4 = utc_ms(2024, 3, 4)
    outage = (d4 + 3 * HOUR, d4 + 3 * HOUR + 30 * MINUTE)
    seed_day(project, emulator, one_m, "1m", d4, skip=[(d4 + 20 * HOUR, d4 + 21 * HOUR), outage])
    cover(project, one_m, "1m", whole_day(d4), CoverageSpan(*outage, True, now))

    emulator_control.clear_requests()
    r2 = project.run([ONE_M, ONE_H], "2024-03-02")
    assert not r2.success and failed(r2) == {(ONE_M, "ohlc_sanity")}
    sanity = checks_of(r2)[(ONE_M, "ohlc_sanity")].metadata
    assert sanity["rows_checked"].value == 1440
    assert (sanity["high_below_low"].value, sanity["negative_volume"].value, sanity["nan_values"].value) == (1, 1, 1)
    assert sanity["low_above_open_or_close"].value == 0
    table_md = sanity["first_bad_rows"].value
    assert table_md.index("2024-03-02T10:00") < table_md.index("2024-03-02T11:00") < table_md.index("2024-03-02T12:00")
    assert resampled_not_run(project, r2, d2, "ohlc_sanity")

    r3 = project.run([ONE_M, ONE_H], "2024-03-03")
    assert not r3.success and failed(r3) == {(ONE_M, "unique_increasing_timestamps")}
    unique = checks_of(r3)[(ONE_M, "unique_increasing_timestamps")].metadata
    assert (unique["rows"].value, unique["distinct_timestamps"].value, unique["duplicate_rows"].value) == (
        1441,
        1440,
        1,
    )
    assert unique["first_duplicates"].value == [f"{SYMBOL} 2024-03-03T09:00:00+00:00 x2"]
    assert resampled_not_run(project, r3, d3, "unique_increasing_timestamps")

    r4 = project.run([ONE_M, ONE_H], "2024-03-04")
    assert not r4.success and failed(r4) == {(ONE_M, "no_gaps")}
    gaps = checks_of(r4)[(ONE_M, "no_gaps")].metadata
    assert (gaps["missing_bars"].value, gaps["known_empty_bars"].value, gaps["expected_bars"].value) == (60, 30, 1410)
    assert gaps["first_missing"].value == [f"{SYMBOL} 2024-03-04T20:0{i}:00+00:00" for i in range(5)]
    assert resampled_not_run(project, r4, d4, "no_gaps")
    assert emulator_control.requests(KLINES) == []  # coverage said stored: the seeded rows stayed

    # One range run over the three days evaluates every day on its own and reports each seeded
    # case on its own day: one evaluation per check and partition, no run-wide verdict.
    emulator_control.clear_requests()
    rng = project.run(
        [ONE_M],
        tags={
            ASSET_PARTITION_RANGE_START_TAG: f"2024-03-02|{SYMBOL}",
            ASSET_PARTITION_RANGE_END_TAG: f"2024-03-04|{SYMBOL}",
        },
    )
    days = {d: f"2024-03-0{d}|{SYMBOL}" for d in (2, 3, 4)}
    assert len(rng.get_asset_check_evaluations()) == 3 * len(CANDLE_CHECKS)
    assert {d: failed_on(rng, key) for d, key in days.items()} == {
        2: {(ONE_M, "ohlc_sanity")},
        3: {(ONE_M, "unique_increasing_timestamps")},
        4: {(ONE_M, "no_gaps")},
    }
    md = {d: {c: checks_of(rng, key)[(ONE_M, c)].metadata for c in CANDLE_CHECKS} for d, key in days.items()}
    assert [md[d]["ohlc_sanity"]["rows_checked"].value for d in (2, 3, 4)] == [1440, 1441, 1350]
    assert [md[d]["unique_increasing_timestamps"]["duplicate_rows"].value for d in (2, 3, 4)] == [0, 1, 0]
    assert [md[d]["no_gaps"]["missing_bars"].value for d in (2, 3, 4)] == [0, 0, 60]
    assert [md[d]["no_gaps"]["expected_bars"].value for d in (2, 3, 4)] == [1440, 1440, 1440 - 30]
    assert {e.target_materialization_data.run_id for e in rng.get_asset_check_evaluations()} == {rng.run_id}
    assert emulator_control.requests(KLINES) == []


def test_derived_assets_compute_only_covered_bars_and_trade_bars_disagreement_is_reported(
    project, emulator, emulator_control
):
    ex, now = project.ex, wall_clock_ms()
    one_m, bars = ohlcv_table(ex, "1m").table, trade_bars_table(ex).table

    # 2024-03-05: a whole day of 1m candles, but coverage only claims 00:00-05:30.
    d5 = utc_ms(2024, 3, 5)
    seed_day(project, emulator, one_m, "1m", d5)
    cover(project, one_m, "1m", CoverageSpan(d5, d5 + 5 * HOUR + 30 * MINUTE, False, now))
    r5 = project.run([ONE_H], "2024-03-05")  # the resampled asset and its checks, not the 1m asset
    assert r5.success and failed(r5) == set()
    hourly = project.store(resampled_table(ex, "1h").table).read(node("1h"), TimeWindow(d5, d5 + DAY))
    assert_bars_equal(hourly, truth(emulator, "1h", d5, d5 + 5 * HOUR))  # 05:00 is half covered: not computed
    md = r5.asset_materializations_for_node(step(ONE_H))[0].metadata
    assert (md["rows_written"].value, md["uncovered_closed_bars"].value) == (5, 19)
    gaps = checks_of(r5)[(ONE_H, "no_gaps")].metadata
    assert (gaps["expected_bars"].value, gaps["missing_bars"].value, gaps["uncovered_closed_bars"].value) == (5, 0, 19)
    assert gaps["first_uncovered"].value == [f"{SYMBOL} [2024-03-05T05:00:00+00:00, 2024-03-06T00:00:00+00:00)"]

    # 2024-03-06: exchange candles and trade bars stored directly; trade bars differ at 07:15
    # (close) and 08:30 (volume 1e-6 relative), and at 09:45 by less than the volume tolerance.
    d6 = utc_ms(2024, 3, 6)
    seed_day(project, emulator, one_m, "1m", d6)
    t_close, t_volume, t_tiny = d6 + 7 * HOUR + 15 * MINUTE, d6 + 8 * HOUR + 30 * MINUTE, d6 + 9 * HOUR + 45 * MINUTE

    def disagree(frame):
        close = float(frame.loc[frame["ts"] == t_close, "close"].iloc[0])
        set_at(frame, t_close, close=close + 0.01)
        for ts, factor in ((t_volume, 1 + 1e-6), (t_tiny, 1 + 1e-12)):
            set_at(frame, ts, volume=float(frame.loc[frame["ts"] == ts, "volume"].iloc[0]) * factor)

    seed_day(project, emulator, bars, "1m", d6, skip=[(d6 + 23 * HOUR, d6 + DAY)], edit=disagree)
    r6 = project.run([BARS], "2024-03-06")  # no trades coverage here: the asset computes nothing
    assert failed(r6) == {(BARS, "agrees_with_exchange_candles")}
    assert r6.success  # not blocking
    agree = checks_of(r6)[(BARS, "agrees_with_exchange_candles")].metadata
    assert (agree["minutes_compared"].value, agree["mismatches"].value) == (1380, 2)
    assert (agree["only_in_trade_bars"].value, agree["only_in_exchange_candles"].value) == (0, 60)
    mismatches = agree["first_mismatches"].value
    assert "2024-03-06T07:15" in mismatches and "2024-03-06T08:30" in mismatches and "09:45" not in mismatches
    assert r6.asset_materializations_for_node(step(BARS))[0].metadata["uncovered_closed_bars"].value == 1440
