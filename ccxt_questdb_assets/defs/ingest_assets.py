"""Ingestion assets: exchange candles and trades, one asset per (exchange, timeframe) and per exchange.

A run covers its partitions through the library's coverage engine, so a covered partition costs
no exchange request of any kind (unless ``force``): the exchange's markets are loaded only when a
gap must be fetched. A partial partition fetches only its gaps. The engine writes page by page
(memory bounded by a page, a crash loses at most the pages in flight); the asset returns a
:class:`StoredSlice` with each partition's own figures (rows written into that day or month, the
requests of pages starting in it, coverage before and after), the IO manager waits for visibility and adds
what each partition holds, and the candle checks are evaluated per partition in the same step.
What belongs to the whole run (gaps, rate-limiter waits) goes to the run's log.
"""

from dataclasses import replace

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    Config,
    MaterializeResult,
)
from pydantic import Field

from ccxt_questdb_assets.core.clock import wall_clock_ms
from ccxt_questdb_assets.core.windows import format_ms
from ccxt_questdb_assets.defs.asset_keys import (
    FETCHED,
    OHLCV,
    TRADES,
    catalog_tags,
    ohlcv_key,
    trades_key,
)
from ccxt_questdb_assets.defs.asset_options import AssetOptions
from ccxt_questdb_assets.defs.checks import CandleChecks
from ccxt_questdb_assets.defs.exchange_project import ExchangeProject
from ccxt_questdb_assets.defs.io_manager import StoredSlice, series_metadata
from ccxt_questdb_assets.defs.partition_figures import PartitionLedger, coverage_by_partition, stored_by_partition
from ccxt_questdb_assets.defs.partitions import Grain, SymbolSlice, slices_of
from ccxt_questdb_assets.defs.project_config import ProjectConfig
from ccxt_questdb_assets.defs.questdb_resource import QuestDBResource
from ccxt_questdb_assets.defs.rate_limiter_resource import RateLimiterResource
from ccxt_questdb_assets.history.backfill import BackfillReport
from ccxt_questdb_assets.history.ccxt_provider import CcxtQuestDBProvider
from ccxt_questdb_assets.history.config import ProviderConfig
from ccxt_questdb_assets.storage.series_table import SeriesTable

KINDS = {"ccxt", "questdb"}


class IngestConfig(Config):
    force: bool = Field(default=False, description="Refetch the partitions even where coverage says they are stored.")


def ohlcv_table(ex: ExchangeProject, timeframe: str) -> SeriesTable:
    return SeriesTable.candles(ex.ohlcv.tables, ex.exchange_id, timeframe)


def trades_table(ex: ExchangeProject) -> SeriesTable:
    assert ex.trades_config is not None
    return SeriesTable.trades(ex.trades_config.tables, ex.exchange_id)


def build_ingest_assets(project: ProjectConfig) -> list[AssetsDefinition]:
    out: list[AssetsDefinition] = []
    for ex in project.exchanges:
        options = AssetOptions.of(project, ex, OHLCV)
        for tf in ex.timeframes:
            key, table = ohlcv_key(ex.exchange_id, tf), ohlcv_table(ex, tf)
            out.append(
                _ingest_asset(
                    options,
                    key,
                    table,
                    ex.provider_config(OHLCV, timeframe=tf),
                    checks=CandleChecks(key, table, ex.ohlcv.recheck, options.partitions_def),
                    tags=catalog_tags(ex.exchange_id, OHLCV, FETCHED, tf),
                    description=f"{tf} candles of {ex.exchange_id}, fetched through ccxt into QuestDB table "
                    f"`{table.table}`. Only closed bars count as stored; the still-open bar is stored "
                    f"provisionally (`closed` false) and refetched until closed. What is stored is recorded "
                    f"in `{table.coverage_table}`, so a stored partition costs no exchange request.",
                )
            )
        if ex.trades:
            table = trades_table(ex)
            out.append(
                _ingest_asset(
                    AssetOptions.of(project, ex, TRADES),
                    trades_key(ex.exchange_id),
                    table,
                    ex.provider_config(TRADES),
                    checks=None,
                    tags=catalog_tags(ex.exchange_id, TRADES, FETCHED),
                    description=f"Trades of {ex.exchange_id} with millisecond timestamps and the exchange's trade id, "
                    f"paged by id so no trade is lost or repeated at page edges, in QuestDB table "
                    f"`{table.table}`; what is stored is recorded in `{table.coverage_table}`.",
                )
            )
    return out


def _ingest_asset(
    options: AssetOptions,
    key: AssetKey,
    table: SeriesTable,
    provider_config: ProviderConfig,
    *,
    checks: CandleChecks | None,
    tags: dict[str, str],
    description: str,
) -> AssetsDefinition:
    """``provider_config`` is checked at load: a bad config fails the code location, not a run."""

    async def ingest(
        context: AssetExecutionContext,
        config: IngestConfig,
        questdb: QuestDBResource,
        rate_limiter: RateLimiterResource,
    ):  # yields MaterializeResult, then check evaluations
        if key in context.selected_asset_keys:
            stored = await run_ingest(
                context, provider_config, table, questdb, rate_limiter, force=config.force, grain=options.grain
            )
            yield MaterializeResult(asset_key=key, value=stored)
        if checks is not None:
            for event in checks.evaluate(context, questdb.client()):
                yield event

    metadata = {**series_metadata(table), "node_id_template": _node_template(table)}
    spec = AssetSpec(key, description=description, tags=tags, kinds=KINDS, metadata=metadata)
    return options.define(ingest, spec, checks.specs() if checks else None, fetched=True)


def _node_template(table: SeriesTable) -> str:
    return str(table.node("{symbol}"))


async def run_ingest(
    context: AssetExecutionContext,
    config: ProviderConfig,
    table: SeriesTable,
    questdb: QuestDBResource,
    rate_limiter: RateLimiterResource,
    *,
    force: bool,
    grain: Grain,
) -> StoredSlice:
    """Cover every (symbol, periods) of the run; count what each partition got."""
    client = questdb.client()
    figures: dict[str, dict[str, object]] = {}
    reports: list[BackfillReport] = []
    with rate_limiter.track(context, add_metadata=False):
        for sl in slices_of(context.partition_keys, grain):
            async with CcxtQuestDBProvider.from_config(  # markets: loaded by a gap's first page, if any
                _for_symbol(config, sl.symbol, rate_limiter), client=client, validate_markets=False
            ) as provider:
                figures.update(await _cover_symbol(context, provider, table, sl, force, reports))
    context.log.info(_run_summary(reports, force))
    return StoredSlice(figures)


async def _cover_symbol(
    context: AssetExecutionContext,
    provider: CcxtQuestDBProvider,
    table: SeriesTable,
    sl: SymbolSlice,
    force: bool,
    reports: list[BackfillReport],
) -> dict[str, dict[str, object]]:
    """Cover one symbol's periods; each partition's rows written, requests, rows held before and coverage."""
    node = table.node(sl.symbol)
    held_before = stored_by_partition(table.store(provider.backend.client), node, sl.partitions)
    coverage_before = coverage_by_partition(await provider.backend.load_coverage(node), sl.partitions, wall_clock_ms())
    ledger = PartitionLedger(sl.partitions)
    for window in sl.windows:
        report = await provider.ensure(provider.request(node, window, force=force), observer=ledger)
        reports.append(report)
        context.log.info(_describe(report))
    # The engine's own last read: its coverage writes are visible in it (a new read might not be yet).
    coverage_after = coverage_by_partition(report.coverage, sl.partitions, wall_clock_ms())
    return {
        key: {
            "rows_written": rows,
            "exchange_requests": requests,
            "rows_already_present": held_before[key].rows,
            "coverage_before": coverage_before[key],
            "coverage_after": coverage_after[key],
        }
        for key, (rows, requests) in ledger.by_partition().items()
    }


def _for_symbol(config: ProviderConfig, symbol: str, rate_limiter: RateLimiterResource) -> ProviderConfig:
    """The asset's provider config for one symbol (a dynamic partition may be new), paced by the
    shared limiter resource (the same process-wide limiter every asset and library call uses)."""
    backfill = replace(config.backfill, symbols=[symbol], rate_limiter=rate_limiter.to_config())
    return replace(config, backfill=backfill)


def _describe(report: BackfillReport) -> str:
    where = f"{report.node_id} {format_ms(report.window.start_ms)}..{format_ms(report.window.end_ms)}"
    if not report.gaps:
        return f"{where}: already covered, 0 requests"
    return (
        f"{where}: {len(report.gaps)} gap(s), {report.requests} requests, {report.rows_written} rows written in "
        f"{report.seconds:.2f} s"
    )


def _run_summary(reports: list[BackfillReport], force: bool) -> str:
    """The run's totals (they belong to the run, not to any one partition)."""
    return (
        f"run totals: {len(reports)} window(s), {sum(len(r.gaps) for r in reports)} gap(s) fetched, "
        f"{sum(r.requests for r in reports)} exchange requests, {sum(r.rows_written for r in reports)} rows "
        f"written, {sum(r.empty_windows for r in reports)} empty window(s) found" + (", forced" if force else "")
    )
