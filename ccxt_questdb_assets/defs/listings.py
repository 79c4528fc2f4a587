"""The ``{exchange}_symbols`` sensor: the project's symbols, and new listings, become partitions.

Every 300 s (default RUNNING) it adds the config's symbols missing from the dynamic partitions,
and with ``listing_pattern`` (an ``fnmatch`` glob over ccxt symbols, such as ``*/USDT``) also
markets **listed after the sensor first looked**: the first check loads the active spot markets
and keeps the matching ones in its cursor as the baseline (an exchange such as Binance has
hundreds of ``*/USDT`` markets; put existing ones you want under ``symbols``); every later tick
loads the markets again (fresh, through the shared rate limiter, one ``load_markets`` request)
and adds matching active spot markets the baseline did not have. Delisted markets are never
removed (their stored data stays). A bad pattern fails at load.

A new listing adds a partition per period since ``start_date`` to each of the exchange's assets,
so listings are added only while every asset stays within the project's partitions budget
(``partitions.max_per_asset``, :mod:`.partition_budget`); the config's symbols were counted at
load. A listing left out is logged as an error on every tick (it stays out of the cursor's
baseline) until the budget has room: a coarser grain, a later ``start_date``, or a raised budget.
"""

# No ``from __future__ import annotations``: Dagster resolves the sensor's annotations at
# definition time, and it is defined in a closure.

import fnmatch
import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dagster import (
    AddDynamicPartitionsRequest,
    DagsterInstance,
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.defs.alerts import redact_text
from ccxt_questdb_assets.defs.exchange_project import ExchangeProject
from ccxt_questdb_assets.defs.partition_budget import symbols_room, today_utc
from ccxt_questdb_assets.defs.partitions import is_partition_safe, symbols_partitions
from ccxt_questdb_assets.defs.project_config import ProjectConfig

if TYPE_CHECKING:
    from ccxt_questdb_assets.exchange.config import CcxtBackfillConfig

SYMBOLS_SENSOR_INTERVAL_S = 300


def symbols_sensor_name(exchange_id: str) -> str:
    return f"{exchange_id}_symbols"


def compile_listing_pattern(pattern: Any, exchange_id: str = "exchange") -> re.Pattern[str]:
    """The compiled ``fnmatch`` glob of ``listing_pattern``; ConfigError for a pattern that cannot match."""
    where = f"exchanges.{exchange_id}.listing_pattern"
    if not isinstance(pattern, str) or not pattern.strip():
        raise ConfigError(f"{where} {pattern!r} must be a glob over ccxt symbols such as '*/USDT'")
    if pattern != pattern.strip():
        raise ConfigError(f"{where} {pattern!r} has leading or trailing spaces; ccxt symbols have none")
    if "/" not in pattern and pattern.strip("*") != "":
        raise ConfigError(
            f"{where} {pattern!r} has no '/': it is matched against ccxt symbols such as 'BTC/USDT' "
            "(e.g. '*/USDT', 'BTC/*')"
        )
    if any(c in pattern for c in "|,"):
        raise ConfigError(f"{where} {pattern!r} contains '|' or ',', which no symbol partition may hold")
    if pattern.count("[") != pattern.count("]"):
        raise ConfigError(f"{where} {pattern!r} has an unclosed '[' (a character class such as '[BE]*/USDT')")
    regex = fnmatch.translate(pattern)
    if "(?!)" in regex:
        raise ConfigError(f"{where} {pattern!r} has an empty character range (such as '[z-a]') and matches nothing")
    return re.compile(regex)


def matching_markets(markets: Mapping[str, Mapping[str, Any]], pattern: re.Pattern[str]) -> set[str]:
    """Active spot markets whose ccxt symbol matches (``active`` unknown counts as active)."""
    out = set()
    for symbol, market in markets.items():
        if not market.get("spot") or market.get("active") is False:
            continue
        if pattern.match(symbol) and is_partition_safe(symbol):
            out.add(symbol)
    return out


def load_markets_fresh(config: "CcxtBackfillConfig") -> dict[str, Any]:
    """The exchange's markets reloaded now (not the process cache), through the shared limiter and retries."""
    from ccxt_questdb_assets.exchange.loops import run_sync  # the exchange layer loads when a sensor asks
    from ccxt_questdb_assets.exchange.session import ExchangeSession

    async def load() -> dict[str, Any]:
        session = ExchangeSession(config)
        try:
            return dict(await session.call("load_markets", True))
        finally:
            await session.close()

    return run_sync(load, in_running_loop="thread")


def _parse_cursor(cursor: str | None) -> set[str] | None:
    if not cursor:
        return None
    try:
        known = json.loads(cursor).get("known")
    except (ValueError, AttributeError):
        return None
    return set(known) if isinstance(known, list) else None


def within_budget(
    project: ProjectConfig, ex: ExchangeProject, existing: int, listed: list[str]
) -> tuple[list[str], list[str]]:
    """The new listings that fit the partitions budget beside ``existing`` symbols, and the rest."""
    room = symbols_room(ex, project.start_date, project.max_partitions_per_asset, today_utc())
    fits = max(0, room - existing)
    return listed[:fits], listed[fits:]


def symbols_sensor(
    project: ProjectConfig, ex: ExchangeProject, pattern: re.Pattern[str] | None, interval_s: int
) -> SensorDefinition:
    partitions_name = symbols_partitions(ex.exchange_id).name
    config = ex.ohlcv.backfill
    listing = f" and new listings matching {ex.listing_pattern!r}" if pattern else ""

    @sensor(
        name=symbols_sensor_name(ex.exchange_id),
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Adds the config's {ex.exchange_id} symbols{listing} to the {partitions_name} partitions.",
    )
    def add_symbols(context: SensorEvaluationContext):
        existing = set(context.instance.get_dynamic_partitions(partitions_name))
        to_add = [s for s in dict.fromkeys(ex.symbols) if s not in existing]
        cursor = context.cursor
        listed: list[str] = []
        if pattern is not None:
            try:
                markets = load_markets_fresh(config)
            except Exception as exc:
                if not to_add:
                    raise
                context.log.error(
                    f"{ex.exchange_id}: cannot load markets for listings ({type(exc).__name__}: "
                    f"{redact_text(str(exc))}); adding the config's symbols only"
                )
            else:
                matching = matching_markets(markets, pattern)
                baseline = _parse_cursor(cursor)
                if baseline is None:
                    context.log.info(
                        f"{ex.exchange_id}: first listings check, {len(matching)} active spot markets match "
                        f"{ex.listing_pattern!r}; they are the baseline (list wanted ones under symbols); markets "
                        "listed from now on are added"
                    )
                else:
                    listed = sorted(matching - baseline - existing - set(to_add))
                listed, left_out = within_budget(project, ex, len(existing) + len(to_add), listed)
                if left_out:
                    context.log.error(
                        f"{ex.exchange_id}: new listings {', '.join(left_out)} not added: each would put the "
                        f"{ex.exchange_id} assets over {project.max_partitions_per_asset:,} partitions (partitions."
                        "max_per_asset). Choose a coarser grain (partitions: {ohlcv: month, trades: month}) or a "
                        "later start_date; they are retried every tick"
                    )
                cursor = json.dumps(
                    {
                        "pattern": ex.listing_pattern,
                        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
                        "known": sorted(matching - set(left_out)),
                    }
                )
        if listed:
            context.log.info(f"{ex.exchange_id}: new listings {', '.join(listed)}")
            from ccxt_questdb_assets.exchange.client import clear_markets_cache

            clear_markets_cache()  # runs in this process must see the new markets too
        to_add += listed
        if not to_add:
            return SensorResult(cursor=cursor, skip_reason=SkipReason(f"no new {ex.exchange_id} symbols"))
        context.log.info(f"adding {len(to_add)} symbol(s) to {partitions_name}: {', '.join(to_add)}")
        return SensorResult(
            cursor=cursor, dynamic_partitions_requests=[AddDynamicPartitionsRequest(partitions_name, to_add)]
        )

    return add_symbols


def sync_symbol_partitions(instance: DagsterInstance, project: ProjectConfig) -> list[str]:
    """Add every exchange's config symbols missing from its dynamic partitions, now.

    The symbols sensor does the same on its ticks; the demo and the CLI cannot wait for one.
    Returns what was added as ``exchange:symbol`` (empty when all were there).
    """
    added: list[str] = []
    for ex in project.exchanges:
        name = symbols_partitions(ex.exchange_id).name
        existing = set(instance.get_dynamic_partitions(name))
        missing = [s for s in dict.fromkeys(ex.symbols) if s not in existing]
        if missing:
            instance.add_dynamic_partitions(name, missing)
            logging.getLogger(__name__).info("added %s to %s", ", ".join(missing), name)
            added.extend(f"{ex.exchange_id}:{s}" for s in missing)
    return added
