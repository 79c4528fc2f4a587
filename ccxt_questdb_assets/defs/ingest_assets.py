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

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    Config,
    MaterializeResult,
)
from pydantic import Field

from ccxt_questdb_assets.core.long_lived import import_long_lived
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
from ccxt_questdb_assets.defs.io_manager import series_metadata
from ccxt_questdb_assets.defs.project_config import ProjectConfig
from ccxt_questdb_assets.defs.questdb_resource import QuestDBResource
from ccxt_questdb_assets.defs.rate_limiter_resource import RateLimiterResource
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
            run_ingest = import_long_lived("ccxt_questdb_assets.defs.ingest_run").run_ingest  # the engine

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
