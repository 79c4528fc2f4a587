"""An ingestion asset's run: every (symbol, periods) of the run covered through the library's
coverage engine, and what each partition got (``ingest_assets`` declares the assets; this module,
and the engine with it, loads when a run starts)."""

from __future__ import annotations

from dataclasses import replace

from dagster import AssetExecutionContext

from ccxt_questdb_assets.core.clock import wall_clock_ms
from ccxt_questdb_assets.core.windows import format_ms
from ccxt_questdb_assets.defs.io_manager import StoredSlice
from ccxt_questdb_assets.defs.partition_figures import PartitionLedger, coverage_by_partition, stored_by_partition
from ccxt_questdb_assets.defs.partitions import Grain, SymbolSlice, slices_of
from ccxt_questdb_assets.defs.questdb_resource import QuestDBResource
from ccxt_questdb_assets.defs.rate_limiter_resource import RateLimiterResource
from ccxt_questdb_assets.history.backfill import BackfillReport
from ccxt_questdb_assets.history.ccxt_provider import CcxtQuestDBProvider
from ccxt_questdb_assets.history.config import ProviderConfig
from ccxt_questdb_assets.storage.series_table import SeriesTable


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
