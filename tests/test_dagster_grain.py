"""The month grain through real Dagster runs, real QuestDB, real ccxt and the exchange emulator.

A project file choosing ``partitions: {ohlcv: month, trades: month}`` gets Dagster's monthly
partitions (``2024-02-01|BTC/USDT`` is February): a range run of two months is exact at the fewest
requests, each month's materialization carries that month's own figures and checks, a repeat asks
nothing, a month with a seeded hole fails its own check only, and a downstream asset loads the
whole month through the IO manager. Computed assets take their upstream's grain and follow it:
the automation condition requests an old month once its upstream month was updated, and the
resampled and trade bars of a month equal the emulator's. Candles and trades of different grains
get a job and a refresh schedule each, whose current partition is the grain's. A project over the
partitions budget is refused at load with the asset, the count and the fix; new listings are added
only within it.
"""

from __future__ import annotations

import json
import math
import uuid
import warnings
from datetime import UTC, date, datetime

import pandas as pd
import pytest
from dagster import (
    AssetIn,
    AssetKey,
    AssetMaterialization,
    AssetSelection,
    DagsterInstance,
    IdentityPartitionMapping,
    MonthlyPartitionsDefinition,
    MultiPartitionsDefinition,
    asset,
    build_schedule_context,
    build_sensor_context,
    evaluate_automation_conditions,
    instance_for_test,
    materialize,
    mem_io_manager,
)
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from ccxt_questdb_assets.core.clock import wall_clock_ms
from ccxt_questdb_assets.core.coverage import CoverageSpan
from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.defs.asset_keys import ohlcv_key, resampled_key, trade_bars_key, trades_key
from ccxt_questdb_assets.defs.build import build_definitions, build_resources
from ccxt_questdb_assets.defs.derived_assets import build_derived_assets, resampled_table, trade_bars_table
from ccxt_questdb_assets.defs.ingest_assets import build_ingest_assets, ohlcv_table
from ccxt_questdb_assets.defs.partition_budget import PartitionBudgetWarning
from ccxt_questdb_assets.defs.partitions import Grain, slices_of
from ccxt_questdb_assets.defs.project_config import ProjectConfig
from ccxt_questdb_assets.storage.client import QuestDBClient
from ccxt_questdb_assets.storage.coverage_store import CoverageStore
from ccxt_questdb_assets.testing.candles import assert_bars_equal, assert_candles_exact, stored_candles, truth_candles

KLINES = "/api/v3/klines"
AGG = "/api/v3/aggTrades"
INFO = "/api/v3/exchangeInfo"
MINUTE, DAY = 60_000, 86_400_000
CANDLES, HOURLY = ohlcv_key("binance", "1m"), resampled_key("binance", "1h")
TRADES, BARS = trades_key("binance"), trade_bars_key("binance")
CANDLE_CHECKS = {"no_gaps", "unique_increasing_timestamps", "ohlc_sanity"}
MONTHLY = {"ohlcv": "month", "trades": "month"}


def utc_ms(*args) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def mapping(questdb, emulator, partitions, *, symbols=("BTC/USDT", "ETH/USDT"), **exchange) -> dict:
    conn = questdb.connection
    return {
        "start_date": "2024-01-01",
        "partitions": partitions,
        "questdb": {
            "host": conn.host,
            "port": conn.port,
            "http_port": conn.http_port,
            "table_prefix": "g_" + uuid.uuid4().hex[:10],
        },
        "rate_limiter": {"scope": "process", "max_concurrency": 2},
        "exchanges": {
            "binance": {
                "base_url": emulator.base_url,
                "symbols": list(symbols),
                "timeframes": ["1m"],
                "trades": True,
                "resample_to": ["1h"],
                "retry_backoff_s": 0.01,
                **exchange,
            }
        },
    }


class Project:
    def __init__(self, cfg: ProjectConfig, instance: DagsterInstance) -> None:
        self.cfg, self.instance = cfg, instance
        self.ex = cfg.exchanges[0]
        self.defs = build_definitions(cfg)
        self.resources = build_resources(cfg)
        self.assets = {a.key: a for a in [*build_ingest_assets(cfg), *build_derived_assets(cfg)]}

    def asset(self, key: AssetKey):
        """The asset without resources bound (the run gives them)."""
        return self.assets[key]

    def run(self, keys, *, partition: str | None = None, first: str | None = None, last: str | None = None, **kw):
        """The assets ``keys`` (with their checks) over one partition or a range of one symbol."""
        tags = {}
        if first is not None:
            tags = {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
        return materialize(
            [self.asset(k) for k in keys],
            instance=self.instance,
            resources=self.resources,
            partition_key=partition,
            tags=tags,
            **kw,
        )


@pytest.fixture
def monthly(questdb, emulator, tmp_path):
    cfg = ProjectConfig.from_mapping(mapping(questdb, emulator, MONTHLY))
    with DagsterInstance.ephemeral(tempdir=str(tmp_path / "dagster")) as instance:
        instance.add_dynamic_partitions("binance_symbols", list(cfg.exchanges[0].symbols))
        yield Project(cfg, instance)


def by_partition(result, key: AssetKey) -> dict[str, dict]:
    return {e.partition: e.metadata for e in result.asset_materializations_for_node(key.to_python_identifier())}


def checks_by_partition(result) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for e in result.get_asset_check_evaluations():
        out.setdefault(e.partition, {})[f"{e.asset_key.to_user_string()}:{e.check_name}"] = e
    return out


def test_a_range_run_of_two_months_is_exact_at_the_fewest_requests_with_each_months_own_figures(
    monthly, questdb, emulator, emulator_control
):
    graph = monthly.defs.resolve_asset_graph()
    for key in (CANDLES, HOURLY, TRADES, BARS):
        node = graph.get(key)
        assert isinstance(node.partitions_def.get_partitions_def_for_dimension("date"), MonthlyPartitionsDefinition)
        assert node.backfill_policy.max_partitions_per_run == 12  # a year of one symbol: one run
    jan, feb, mar = utc_ms(2024, 1, 1), utc_ms(2024, 2, 1), utc_ms(2024, 3, 1)
    keys = {"2024-01-01|BTC/USDT": (jan, feb), "2024-02-01|BTC/USDT": (feb, mar)}

    emulator_control.clear_requests()
    result = monthly.run([CANDLES], first="2024-01-01|BTC/USDT", last="2024-02-01|BTC/USDT")
    assert result.success
    table = monthly.ex.ohlcv.tables.data
    assert_candles_exact(
        stored_candles(questdb, table, "BTC/USDT", jan, mar), truth_candles(emulator, "BTC/USDT", jan, mar)
    )
    bars = {k: (end - start) // MINUTE for k, (start, end) in keys.items()}
    assert list(bars.values()) == [31 * 1440, 29 * 1440]
    requests = emulator_control.requests(KLINES)
    assert len(requests) == math.ceil(sum(bars.values()) / 1000)  # one window over both months: the fewest
    events = by_partition(result, CANDLES)
    assert sorted(events) == sorted(keys)
    for key, (start, end) in keys.items():
        md = events[key]
        assert md["dagster/row_count"].value == md["rows_written"].value == bars[key]
        assert md["first_ts"].value == start / 1000 and md["last_ts"].value == (end - MINUTE) / 1000
        assert md["coverage_before"].value == 0.0 and md["coverage_after"].value == 1.0
        assert md["rows_already_present"].value == 0 and key[:10] in md["preview"].value
    # each request counted once, in the month its 1000-bar page started from: January holds 45 pages' starts
    assert [events[k]["exchange_requests"].value for k in keys] == [45, 42]

    checks = checks_by_partition(result)
    assert sorted(checks) == sorted(keys)
    for key in keys:
        assert set(checks[key]) == {f"binance/ohlcv/ohlcv_1m:{c}" for c in CANDLE_CHECKS}
        assert all(e.passed for e in checks[key].values())
        gaps = checks[key]["binance/ohlcv/ohlcv_1m:no_gaps"].metadata
        assert gaps["expected_bars"].value == bars[key] and gaps["missing_bars"].value == 0
        assert gaps["checked"].value.startswith(f"BTC/USDT [{key[:10]}T00:00")
        sanity = checks[key]["binance/ohlcv/ohlcv_1m:ohlc_sanity"].metadata
        assert sanity["rows_checked"].value == bars[key]
        assert {e.target_materialization_data.run_id for e in checks[key].values()} == {result.run_id}

    # February again: stored, so no request of any kind, and its figures say so
    emulator_control.clear_requests()
    again = monthly.run([CANDLES], partition="2024-02-01|BTC/USDT")
    assert again.success and emulator_control.requests() == []
    md = by_partition(again, CANDLES)["2024-02-01|BTC/USDT"]
    assert (md["exchange_requests"].value, md["rows_written"].value) == (0, 0)
    assert (md["rows_already_present"].value, md["coverage_before"].value) == (bars["2024-02-01|BTC/USDT"], 1.0)

    # March: coverage claims its first day, whose bars were never written; the checks alone over
    # February and March (the UI's "Execute checks") fail March's no_gaps only, with March's figures
    client = QuestDBClient(questdb.connection)
    try:
        node = ohlcv_table(monthly.ex, "1m").node("BTC/USDT")
        CoverageStore(client, table + "_coverage").record(
            str(node), [CoverageSpan(mar, mar + DAY, False, wall_clock_ms())]
        )
    finally:
        client.close()
    alone = monthly.run(
        [CANDLES],
        selection=AssetSelection.checks_for_assets(CANDLES),
        first="2024-02-01|BTC/USDT",
        last="2024-03-01|BTC/USDT",
        raise_on_error=False,
    )
    checks = checks_by_partition(alone)
    assert {k: {c for c, e in v.items() if not e.passed} for k, v in checks.items()} == {
        "2024-02-01|BTC/USDT": set(),
        "2024-03-01|BTC/USDT": {"binance/ohlcv/ohlcv_1m:no_gaps"},
    }
    gaps = checks["2024-03-01|BTC/USDT"]["binance/ohlcv/ohlcv_1m:no_gaps"].metadata
    assert (gaps["missing_bars"].value, gaps["expected_bars"].value) == (1440, 1440)
    assert gaps["uncovered_closed_bars"].value == 30 * 1440  # the rest of March: not covered yet
    assert emulator_control.requests(KLINES) == []

    # a downstream asset of the same grain reads whole months through the IO manager
    seen: list[pd.DataFrame] = []
    partitions = monthly.asset(CANDLES).partitions_def

    @asset(partitions_def=partitions, ins={"candles": AssetIn(key=CANDLES)}, io_manager_key="memory")
    def candle_count(context, candles: pd.DataFrame) -> int:
        seen.append(candles)
        return len(candles)

    down = materialize(
        [monthly.asset(CANDLES), candle_count],
        selection=[candle_count.key],
        partition_key="2024-01-01|BTC/USDT",
        instance=monthly.instance,
        resources={**monthly.resources, "memory": mem_io_manager},
    )
    assert down.success and len(seen) == 1
    assert_candles_exact(seen[0].drop(columns="symbol"), truth_candles(emulator, "BTC/USDT", jan, feb), "loaded")
    assert set(seen[0]["symbol"]) == {"BTC/USDT"}


def test_computed_assets_take_their_upstreams_month_and_follow_it(monthly, questdb, emulator, emulator_control):
    graph = monthly.defs.resolve_asset_graph()
    for derived, upstream in ((HOURLY, CANDLES), (BARS, TRADES)):
        assert graph.get(derived).partitions_def == graph.get(upstream).partitions_def
        assert isinstance(graph.get_partition_mapping(derived, upstream), IdentityPartitionMapping)
    feb, mar = utc_ms(2024, 2, 1), utc_ms(2024, 3, 1)
    key = "2024-02-01|ETH/USDT"

    # An old month (far before the latest two) of candles materialized by hand: the automation
    # condition requests the same month of the resampled candles, and nothing else.
    first = evaluate_automation_conditions(monthly.defs, monthly.instance)
    assert first.total_requested == 0
    candles = monthly.run([CANDLES], partition=key)
    assert candles.success and all(c.passed for c in candles.get_asset_check_evaluations())
    tick = evaluate_automation_conditions(monthly.defs, monthly.instance, cursor=first.cursor)
    assert tick.total_requested == 1 and tick.get_requested_partitions(HOURLY) == {key}

    # The computed assets of the month (as the job runs them): exact, each with the month's figures
    emulator_control.clear_requests()
    result = monthly.run([HOURLY, TRADES, BARS], partition=key)
    assert result.success
    assert emulator_control.requests(KLINES) == []  # the candles were stored: no candle asked again
    ex = monthly.ex
    hourly = stored_candles(questdb, resampled_table(ex, "1h").table, "ETH/USDT", feb, mar, timeframe="1h")
    assert_bars_equal(hourly, truth_candles(emulator, "ETH/USDT", feb, mar, "1h"), "February's 1h bars")
    bars = stored_candles(questdb, trade_bars_table(ex).table, "ETH/USDT", feb, mar)
    assert_bars_equal(bars, truth_candles(emulator, "ETH/USDT", feb, mar), "February's 1m bars from trades")
    trades_md = by_partition(result, TRADES)[key]
    assert trades_md["dagster/row_count"].value == trades_md["rows_written"].value == 29 * 24 * 240
    assert trades_md["coverage_after"].value == 1.0
    assert trades_md["exchange_requests"].value == len(emulator_control.requests(AGG))
    for derived, count in ((HOURLY, 29 * 24), (BARS, 29 * 1440)):
        md = by_partition(result, derived)[key]
        assert md["rows_written"].value == md["bars_computed"].value == md["dagster/row_count"].value == count
        assert md["uncovered_closed_bars"].value == 0 and md["coverage_after"].value == 1.0
    checks = checks_by_partition(result)[key]
    assert all(e.passed for e in checks.values()), {k for k, e in checks.items() if not e.passed}
    agree = checks["binance/ohlcv/trade_bars_1m:agrees_with_exchange_candles"].metadata
    assert (agree["minutes_compared"].value, agree["mismatches"].value) == (29 * 1440, 0)
    assert {k.split(":")[0] for k in checks} == {HOURLY.to_user_string(), BARS.to_user_string()}

    # once handled, the next tick requests nothing more
    after = evaluate_automation_conditions(monthly.defs, monthly.instance, cursor=tick.cursor)
    assert after.total_requested == 0


def test_candles_by_month_and_trades_by_day_get_a_job_and_a_refresh_each(questdb, emulator, emulator_control, tmp_path):
    cfg = ProjectConfig.from_mapping(mapping(questdb, emulator, {"ohlcv": "month"}, symbols=["BTC/USDT"]))
    assert (cfg.exchanges[0].ohlcv_grain, cfg.exchanges[0].trades_grain) == (Grain.MONTH, Grain.DAY)
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:  # persistent: schedules need it
        instance.add_dynamic_partitions("binance_symbols", ["BTC/USDT"])
        project = Project(cfg, instance)
        defs = project.defs
        jobs = {
            name: sorted(k.to_user_string() for k in defs.resolve_job_def(name).asset_layer.selected_asset_keys)
            for name in ("binance_ingest", "binance_trades_ingest")
        }
        assert jobs == {
            "binance_ingest": ["binance/ohlcv/ohlcv_1h_resampled", "binance/ohlcv/ohlcv_1m"],
            "binance_trades_ingest": ["binance/ohlcv/trade_bars_1m", "binance/trades"],
        }

        def refresh(name: str, *when) -> list[tuple[str, str]]:
            sched = defs.resolve_schedule_def(name)
            ctx = build_schedule_context(
                instance=instance,
                scheduled_execution_time=datetime(*when, tzinfo=UTC),
                repository_def=defs.get_repository_def(),
            )
            out = []
            for r in sched.evaluate_tick(ctx).run_requests:
                tags = r.tags
                out.append(
                    (r.partition_key, r.partition_key)
                    if r.partition_key
                    else (tags[ASSET_PARTITION_RANGE_START_TAG], tags[ASSET_PARTITION_RANGE_END_TAG])
                )
            return out

        assert defs.resolve_schedule_def("binance_refresh").job_name == "binance_ingest"
        assert defs.resolve_schedule_def("binance_trades_refresh").job_name == "binance_trades_ingest"
        # the current month, and in the first hour of a month the one that just closed too
        assert refresh("binance_refresh", 2024, 3, 15, 13, 5) == [("2024-03-01|BTC/USDT", "2024-03-01|BTC/USDT")]
        assert refresh("binance_refresh", 2024, 3, 1, 0, 5) == [("2024-02-01|BTC/USDT", "2024-03-01|BTC/USDT")]
        assert refresh("binance_refresh", 2024, 3, 2, 0, 5) == [("2024-03-01|BTC/USDT", "2024-03-01|BTC/USDT")]
        assert refresh("binance_refresh", 2024, 1, 1, 0, 5) == [("2024-01-01|BTC/USDT", "2024-01-01|BTC/USDT")]
        # the trades' days as before
        assert refresh("binance_trades_refresh", 2024, 3, 2, 0, 5) == [("2024-03-01|BTC/USDT", "2024-03-02|BTC/USDT")]

        # the refresh's run of the month is runnable as is (candles, to keep it short)
        request = (
            defs.resolve_schedule_def("binance_refresh")
            .evaluate_tick(
                build_schedule_context(
                    instance=instance,
                    scheduled_execution_time=datetime(2024, 3, 15, 13, 5, tzinfo=UTC),
                    repository_def=defs.get_repository_def(),
                )
            )
            .run_requests[0]
        )
        emulator_control.clear_requests()
        month = defs.resolve_job_def("binance_ingest").execute_in_process(
            instance=instance, partition_key=request.partition_key, tags=request.tags, asset_selection=[CANDLES]
        )
        assert month.success and list(by_partition(month, CANDLES)) == ["2024-03-01|BTC/USDT"]
        assert len(emulator_control.requests(KLINES)) == math.ceil(31 * 1440 / 1000)
        mar = utc_ms(2024, 3, 1)

        # a day of trades and its bars (days), checked against the month of exchange candles
        day = "2024-03-01|BTC/USDT"
        result = defs.resolve_job_def("binance_trades_ingest").execute_in_process(instance=instance, partition_key=day)
        assert result.success
        checks = checks_by_partition(result)
        assert set(checks) == {day} and all(e.passed for e in checks[day].values())
        agree = checks[day]["binance/ohlcv/trade_bars_1m:agrees_with_exchange_candles"].metadata
        assert (agree["minutes_compared"].value, agree["mismatches"].value) == (1440, 0)
        bars = stored_candles(questdb, trade_bars_table(cfg.exchanges[0]).table, "BTC/USDT", mar, mar + DAY)
        assert_bars_equal(bars, truth_candles(emulator, "BTC/USDT", mar, mar + DAY), "a day of bars from trades")


def desk(n: int = 300, start: str = "2018-01-01", partitions=None, **top) -> dict:
    bases = [f"{chr(65 + i // 676)}{chr(65 + i // 26 % 26)}{chr(65 + i % 26)}" for i in range(n)]
    section = {"base_url": "http://127.0.0.1:1", "symbols": [f"{b}/USDT" for b in bases], "trades": True}
    raw = {"start_date": start, "exchanges": {"binance": {**section, "resample_to": ["1h"]}}, **top}
    if partitions is not None:
        raw["partitions"] = partitions
    return raw


def test_a_project_over_the_partitions_budget_is_refused_at_load_with_the_asset_the_count_and_the_fix(tmp_path):
    today = datetime.now(UTC).date()
    days, months = Grain.DAY.periods("2018-01-01", today), Grain.MONTH.periods("2018-01-01", today)
    with pytest.raises(ConfigError) as refused:
        ProjectConfig.from_mapping(desk(), environ={})
    text = str(refused.value)
    for needed in (
        "binance/ohlcv/ohlcv_1m",
        "binance/trades",
        f"300 symbols x {days:,} days = {300 * days:,} partitions",
        "over the 100,000 per asset",
        f"partitions: {{ohlcv: month, trades: month}} (300 x {months:,} months = {300 * months:,})",
        "a later start_date",
        "partitions.max_per_asset",
    ):
        assert needed in text, (needed, text)

    # the desk-scale grain is one line, and Dagster counts what the budget counted
    cfg = ProjectConfig.from_mapping(desk(partitions=MONTHLY), environ={})
    assert ProjectConfig.from_mapping(desk(partitions="month"), environ={}).exchanges == cfg.exchanges
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # jobs, schedules and sensors resolve as quietly as the default's
        defs = build_definitions(cfg)
        defs.get_repository_def()
    with DagsterInstance.ephemeral(tempdir=str(tmp_path)) as instance:
        instance.add_dynamic_partitions("binance_symbols", list(cfg.exchanges[0].symbols))
        graph = defs.resolve_asset_graph()
        with partition_loading_context(dynamic_partitions_store=instance):
            counts = {
                k.to_user_string(): graph.get(k).partitions_def.get_num_partitions() for k in graph.get_all_asset_keys()
            }
    assert counts == {
        k: 300 * months
        for k in (
            "binance/ohlcv/ohlcv_1m",
            "binance/ohlcv/ohlcv_1h_resampled",
            "binance/trades",
            "binance/ohlcv/trade_bars_1m",
        )
    }
    assert 300 * months <= 100_000

    # only the trades over the budget: the fix names them alone; an exchange's own grain counts
    with pytest.raises(ConfigError, match=r"binance/trades .* Choose a coarser grain, partitions: \{trades: month\}"):
        ProjectConfig.from_mapping(desk(partitions={"ohlcv": "month"}), environ={})
    mixed = desk(partitions={"ohlcv": "month"})
    mixed["exchanges"]["binance"]["partitions"] = {"trades": "month"}
    assert ProjectConfig.from_mapping(mixed, environ={}).exchanges[0].trades_grain == Grain.MONTH

    # months are not enough for ever more symbols: a later start_date or fewer symbols
    with pytest.raises(
        ConfigError, match=r"1,000 symbols x [\d,]+ months .* Choose a later start_date \(\d{4}-\d\d-01"
    ):
        ProjectConfig.from_mapping(desk(1000, partitions=MONTHLY), environ={})
    # a deployment that measured its instance may raise the budget, knowingly
    raised = desk(partitions={"max_per_asset": 2_000_000})
    assert ProjectConfig.from_mapping(raised, environ={}).max_partitions_per_asset == 2_000_000


def test_an_asset_passing_the_budget_within_a_year_is_warned_about_with_the_date():
    today = datetime.now(UTC).date()
    days = Grain.DAY.periods("2024-01-01", today)
    with pytest.warns(
        PartitionBudgetWarning, match=r"passes the .* partitions per asset on \d{4}-\d\d-\d\d \(in 100 days\)"
    ):
        ProjectConfig.from_mapping(desk(2, "2024-01-01", {"max_per_asset": 2 * (days + 99)}), environ={})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ProjectConfig.from_mapping(desk(2, "2024-01-01", {"max_per_asset": 2 * (days + 400)}), environ={})
    with pytest.raises(ConfigError, match=r"2 symbols x [\d,]+ days"):
        ProjectConfig.from_mapping(desk(2, "2024-01-01", {"max_per_asset": 2 * days - 1}), environ={})


@pytest.mark.parametrize(
    ("partitions", "where", "message"),
    [
        ({"ohlcv": "weekly"}, "top", r"partitions\.ohlcv must be 'day' or 'month' .*, got 'weekly'"),
        ("hourly", "top", r"partitions\.ohlcv must be 'day' or 'month'"),
        ({"trades": "month", "candles": "month"}, "top", r"unknown option 'candles' in .*partitions"),
        ({"max_per_asset": 0}, "top", r"partitions\.max_per_asset must be >= 1, got 0"),
        ({"trades": 7}, "exchange", r"exchanges\.binance\.partitions\.trades must be 'day' or 'month'.*, got 7"),
        ({"max_per_asset": 5}, "exchange", r"unknown option 'max_per_asset' in .*exchanges\.binance\.partitions"),
    ],
)
def test_a_bad_grain_is_refused_naming_the_key_the_value_and_the_choices(partitions, where, message):
    raw = desk(2, "2024-01-01")
    if where == "top":
        raw["partitions"] = partitions
    else:
        raw["exchanges"]["binance"]["partitions"] = partitions
    with pytest.raises(ConfigError, match=message):
        ProjectConfig.from_mapping(raw, environ={})


def test_new_listings_are_added_only_within_the_partitions_budget(questdb, emulator, emulator_control, tmp_path):
    months = Grain.MONTH.periods("2024-01-01", datetime.now(UTC).date())
    raw = mapping(questdb, emulator, {**MONTHLY, "max_per_asset": 3 * months}, listing_pattern="*/USDT")
    cfg = ProjectConfig.from_mapping(raw)  # 2 symbols: room for one more
    sensor = build_definitions(cfg).resolve_sensor_def("binance_symbols")
    with DagsterInstance.ephemeral(tempdir=str(tmp_path / "dagster")) as instance:

        def tick(cursor):
            data = sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=cursor))
            for request in data.dynamic_partitions_requests:
                instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
            return data

        baseline = tick(None)  # the config's symbols, and the markets listed now as the baseline
        assert sorted(instance.get_dynamic_partitions("binance_symbols")) == ["BTC/USDT", "ETH/USDT"]
        suffix = uuid.uuid4().hex[:4].upper()
        first, second = f"NEWA{suffix}", f"NEWB{suffix}"
        emulator_control.list_market(first, "USDT")
        emulator_control.list_market(second, "USDT")
        listed = tick(baseline.cursor)
        assert [list(r.partition_keys) for r in listed.dynamic_partitions_requests] == [[f"{first}/USDT"]]
        assert f"{second}/USDT" not in json.loads(listed.cursor)["known"]  # asked again every tick
        again = tick(listed.cursor)
        assert again.dynamic_partitions_requests == []
        assert f"{second}/USDT" not in json.loads(again.cursor)["known"]
        assert f"{second}/USDT" not in instance.get_dynamic_partitions("binance_symbols")


def test_a_follow_upstream_tick_at_a_desks_scale_reads_what_changed_not_every_partition(tmp_path, monkeypatch):
    """Dagster's eager condition lists every partition key of an asset on each tick (its newly
    missing partitions); the project's condition never does, so its ticks cost with what changed."""
    cfg = ProjectConfig.from_mapping(desk(partitions=MONTHLY), environ={})
    defs = build_definitions(cfg)
    listed: list[int] = []
    keys = MultiPartitionsDefinition.get_partition_keys

    def counting(self, *args, **kwargs):
        out = keys(self, *args, **kwargs)
        listed.append(len(out))
        return out

    with DagsterInstance.ephemeral(tempdir=str(tmp_path)) as instance:
        instance.add_dynamic_partitions("binance_symbols", list(cfg.exchanges[0].symbols))
        monkeypatch.setattr(MultiPartitionsDefinition, "get_partition_keys", counting)
        cursor = None
        for _ in range(3):
            tick = evaluate_automation_conditions(defs, instance, cursor=cursor)
            assert tick.total_requested == 0
            cursor = tick.cursor
        instance.report_runless_asset_event(AssetMaterialization(CANDLES, partition="2019-05-01|AAC/USDT"))
        tick = evaluate_automation_conditions(defs, instance, cursor=cursor)
    assert listed == [], f"partition keys listed: {listed}"
    # the upstream month was updated, yet its blocking checks have not passed (a runless report): held
    assert tick.total_requested == 0


def test_partition_keys_map_to_their_grains_windows():
    feb = slices_of(["2024-02-01|BTC/USDT", "2024-03-01|BTC/USDT", "2024-05-01|BTC/USDT"], Grain.MONTH)
    assert [(str(w)) for w in feb[0].windows] == [
        "[2024-02-01T00:00:00+00:00, 2024-04-01T00:00:00+00:00)",
        "[2024-05-01T00:00:00+00:00, 2024-06-01T00:00:00+00:00)",
    ]
    day = slices_of(["2024-02-01|BTC/USDT"], Grain.DAY)[0].partitions[0]
    assert day.window.duration_ms == DAY and feb[0].partitions[0].window.duration_ms == 29 * DAY
    with pytest.raises(ConfigError, match=r"'2024-02-03' is not a month partition: .*\(2024-02-01\)"):
        slices_of(["2024-02-03|BTC/USDT"], Grain.MONTH)
    assert Grain.MONTH.periods("2018-01-15", date(2026, 12, 7)) == 108
    assert Grain.DAY.periods("2018-01-01", date(2026, 12, 7)) == 3263
    assert Grain.MONTH.time_partitions("2024-01-15").get_first_partition_window().start.day == 1
