"""Ingestion assets: exchange candles and trades, one asset per (exchange, timeframe) and per exchange.

A run covers its partitions through the library's coverage engine, so a covered partition costs
no exchange request (unless ``force``) and a partial one fetches only its gaps. The engine writes
page by page (memory bounded by a page, a crash loses at most the page in flight); the asset
returns a :class:`StoredSlice` and the IO manager waits for visibility and describes the slice.
"""


from dataclasses import replace
from typing import Any

from dagster import AssetExecutionContext, AssetsDefinition, Config, MetadataValue, asset
from pydantic import Field

from ccxt_questdb_assets.core.windows import format_ms
from ccxt_questdb_assets.defs.io_manager import SeriesTable, StoredSlice
from ccxt_questdb_assets.defs.partitions import BACKFILL_POLICY, market_partitions, slices_of
from ccxt_questdb_assets.defs.project_config import ExchangeProject, ProjectConfig
from ccxt_questdb_assets.defs.questdb_resource import QuestDBResource
from ccxt_questdb_assets.defs.rate_limiter_resource import RateLimiterResource
from ccxt_questdb_assets.history.backfill import BackfillReport
from ccxt_questdb_assets.history.ccxt_provider import CcxtQuestDBProvider
from ccxt_questdb_assets.history.config import ProviderConfig

IO_MANAGER_KEY = "questdb_io_manager"
KINDS = {"ccxt", "questdb"}


class IngestConfig(Config):
    force: bool = Field(default=False, description="Refetch the partitions even where coverage says they are stored.")


def pool_name(exchange_id: str) -> str:
    """One concurrency pool per exchange (limits concurrent steps; the rate limiter paces requests)."""
    return f"ccxt_{exchange_id}"


def ohlcv_asset_name(exchange_id: str, timeframe: str) -> str:
    return f"{exchange_id}_ohlcv_{timeframe}"


def trades_asset_name(exchange_id: str) -> str:
    return f"{exchange_id}_trades"


def ohlcv_table(ex: ExchangeProject, timeframe: str) -> SeriesTable:
    return SeriesTable(ex.ohlcv.tables.data, "ohlcv", ex.exchange_id, timeframe)


def trades_table(ex: ExchangeProject) -> SeriesTable:
    assert ex.trades_config is not None
    return SeriesTable(ex.trades_config.tables.data, "trades", ex.exchange_id)


def build_ingest_assets(project: ProjectConfig) -> list[AssetsDefinition]:
    out: list[AssetsDefinition] = []
    for ex in project.exchanges:
        for tf in ex.timeframes:
            out.append(_ingest_asset(
                project, ex, name=ohlcv_asset_name(ex.exchange_id, tf), table=ohlcv_table(ex, tf),
                mapping=ex.provider_mapping("ohlcv", timeframe=tf),
                description=f"{tf} candles of {ex.exchange_id}, fetched through ccxt into QuestDB. Only closed bars "
                            "count as stored; the still-open bar is stored provisionally and refetched until closed.",
            ))
        if ex.trades:
            out.append(_ingest_asset(
                project, ex, name=trades_asset_name(ex.exchange_id), table=trades_table(ex),
                mapping=ex.provider_mapping("trades"),
                description=f"Trades of {ex.exchange_id} with millisecond timestamps and the exchange's trade id, "
                            "paged by id so no trade is lost or repeated at page edges.",
            ))
    return out


def _ingest_asset(project: ProjectConfig, ex: ExchangeProject, *, name: str, table: SeriesTable,
                  mapping: dict[str, Any], description: str) -> AssetsDefinition:
    provider_config = ProviderConfig.from_mapping(mapping)  # checked at load: a bad config fails the code location

    @asset(
        name=name,
        group_name=ex.exchange_id,
        description=description,
        partitions_def=market_partitions(ex.exchange_id, project.start_date),
        backfill_policy=BACKFILL_POLICY,
        pool=pool_name(ex.exchange_id),
        kinds=KINDS,
        io_manager_key=IO_MANAGER_KEY,
        metadata={**table.definition_metadata(), "node_id_template": _node_template(table)},
    )
    async def ingest(context: AssetExecutionContext, config: IngestConfig, questdb: QuestDBResource,
                     rate_limiter: RateLimiterResource) -> StoredSlice:
        return await run_ingest(context, provider_config, table, questdb, rate_limiter, force=config.force)

    ingest.__name__ = name
    return ingest


def _node_template(table: SeriesTable) -> str:
    return f"ohlcv:{table.exchange}:{{symbol}}:{table.timeframe}" if table.kind == "ohlcv" else f"trades:{table.exchange}:{{symbol}}"


async def run_ingest(context: AssetExecutionContext, config: ProviderConfig, table: SeriesTable,
                     questdb: QuestDBResource, rate_limiter: RateLimiterResource, *, force: bool) -> StoredSlice:
    """Cover every (symbol, days) of the run, then report what it took."""
    slices = slices_of(context.partition_keys)
    reports: list[BackfillReport] = []
    client = questdb.client()
    already = 0
    with rate_limiter.track(context, add_metadata=False) as limiter_scope:
        for sl in slices:
            provider = CcxtQuestDBProvider.from_config(_for_symbol(config, sl.symbol, rate_limiter), client=client)
            store = table.store(client)
            try:
                for window in sl.windows:
                    node = table.node(sl.symbol)
                    already += store.stats(node, window)[0]
                    report = await provider.ensure_range(window.start_ms / 1000, window.end_ms / 1000,
                                                         node_id=str(node), force=force)
                    reports.append(report)
                    context.log.info(_describe(report))
            finally:
                await provider.close()
    window_ms = sum(r.window.end_ms - r.window.start_ms for r in reports) or 1
    context.add_output_metadata({
        "rows_written": sum(r.rows_written for r in reports),
        "exchange_requests": sum(r.requests for r in reports),
        "rows_already_present": already,
        "coverage_before": MetadataValue.float(round(sum(r.covered_before_ms for r in reports) / window_ms, 6)),
        "coverage_after": MetadataValue.float(round(sum(r.covered_after_ms for r in reports) / window_ms, 6)),
        "gaps_fetched": sum(len(r.gaps) for r in reports),
        "empty_windows_found": sum(r.empty_windows for r in reports),
        "forced": force,
        "symbols": ", ".join(sl.symbol for sl in slices),
        **rate_limiter.metadata(limiter_scope.stats, sorted(k for k in limiter_scope.keys if k)),
    })
    return StoredSlice(rows_written=sum(r.rows_written for r in reports))


def _for_symbol(config: ProviderConfig, symbol: str, rate_limiter: RateLimiterResource) -> ProviderConfig:
    """The asset's provider config for one symbol (a dynamic partition may be new), paced by the
    shared limiter resource (the same process-wide limiter every asset and library call uses)."""
    backfill = replace(config.backfill, symbols=[symbol], rate_limiter=rate_limiter.to_config())
    return replace(config, backfill=backfill)


def _describe(report: BackfillReport) -> str:
    if not report.gaps:
        return f"{report.node_id} {format_ms(report.window.start_ms)}..{format_ms(report.window.end_ms)}: already covered, 0 requests"
    return (f"{report.node_id} {format_ms(report.window.start_ms)}..{format_ms(report.window.end_ms)}: "
            f"{len(report.gaps)} gap(s), {report.requests} requests, {report.rows_written} rows written in "
            f"{report.seconds:.2f} s")
