"""The partitions budget: symbols x periods since ``start_date``, per asset, against what Dagster handles well.

Dagster recommends at most 100,000 partitions per asset. Past it, whatever evaluates partitions
(the UI's partition views, backfills, automation conditions) slows with their number: at a desk's
scale of 300 symbols since 2018 with daily partitions, an asset has 978,900 of them
(docs/benchmarks.md, target 8). An asset's count is its exchange's symbols times the periods of
its grain from the one holding ``start_date`` through the open one; candles (and what is resampled
from them) share one grain, trades (and the bars built from them) another.

* At load (:func:`check_budget`, called by ``ProjectConfig`` as it loads): a project whose configured symbols
  put an asset over ``partitions.max_per_asset`` (default 100,000) is **refused** with a
  ConfigError naming the asset, its count and the fixes (a coarser grain, a later ``start_date``,
  fewer symbols). A refusal at load is seen before anything runs; a warning in a code server's
  log is not, and the cost it announces (a daemon falling behind, backfills that take half an
  hour to submit) lands on everyone sharing the instance. An asset that is within the budget but
  will pass it within :data:`WARN_WITHIN_DAYS` (every day or month adds a partition per symbol)
  gets a :class:`PartitionBudgetWarning` with the date, so the refusal is never a surprise.
* At run time the symbols sensor adds a new listing only while the exchange's assets stay within
  the budget (:func:`symbols_room`), and logs an error for each one left out.

``max_per_asset`` is the escape hatch for a deployment that measured its own instance: raising it
is a decision, not a default.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.node_ids import OHLCV, TRADES, Mode
from ccxt_questdb_assets.defs.asset_keys import ohlcv_key, resampled_key, trade_bars_key, trades_key
from ccxt_questdb_assets.defs.exchange_project import ExchangeProject
from ccxt_questdb_assets.defs.partitions import Grain
from ccxt_questdb_assets.defs.project_options import ProjectOptions

#: An asset that will pass the budget within this many days is warned about at load.
WARN_WITHIN_DAYS = 365


class PartitionBudgetWarning(UserWarning):
    """An asset will have more partitions than the project's budget within a year."""


def today_utc() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class AssetPartitions:
    """The assets of one exchange and data type (they share a grain), and their partition count."""

    mode: Mode
    assets: tuple[str, ...]
    grain: Grain
    symbols: int
    periods: int

    @property
    def count(self) -> int:
        return self.symbols * self.periods

    def describe(self) -> str:
        return f"{self.symbols:,} symbols x {self.periods:,} {self.grain.plural} = {self.count:,} partitions"


def data_type_assets(ex: ExchangeProject) -> dict[Mode, tuple[str, ...]]:
    """The exchange's asset keys by the data type whose grain they take."""
    candles = [ohlcv_key(ex.exchange_id, tf) for tf in ex.timeframes]
    candles += [resampled_key(ex.exchange_id, tf) for tf in ex.resample_to]
    trades = [trades_key(ex.exchange_id), trade_bars_key(ex.exchange_id)] if ex.trades else []
    out = {OHLCV: tuple(k.to_user_string() for k in candles), TRADES: tuple(k.to_user_string() for k in trades)}
    return {mode: keys for mode, keys in out.items() if keys}


def asset_partitions(
    ex: ExchangeProject, start_date: str, today: date, symbols: int | None = None
) -> list[AssetPartitions]:
    """The partition count of each of the exchange's data types on ``today`` (with its configured
    symbols, or ``symbols`` of them)."""
    n = len(ex.symbols) if symbols is None else symbols
    return [
        AssetPartitions(mode, keys, ex.grain(mode), n, ex.grain(mode).periods(start_date, today))
        for mode, keys in data_type_assets(ex).items()
    ]


def symbols_room(ex: ExchangeProject, start_date: str, budget: int, today: date) -> int:
    """How many symbols the exchange's assets can have on ``today`` within ``budget`` partitions each."""
    periods = [a.periods for a in asset_partitions(ex, start_date, today, symbols=1)]
    return min((budget // p for p in periods if p), default=budget)


def check_budget(
    exchanges: Sequence[ExchangeProject], options: ProjectOptions, source: str, today: date | None = None
) -> None:
    """Refuse a project (its ``exchanges``, parsed from ``options`` of the file ``source``) with an
    asset over its budget; warn about one that will be within a year."""
    today = today or today_utc()
    budget = options.partitions.max_per_asset
    for ex in exchanges:
        counts = asset_partitions(ex, options.start_date, today)
        over = [c for c in counts if c.count > budget]
        if over:
            raise ConfigError(_refusal(options, source, ex, over, budget, today))
        horizon = today + timedelta(days=WARN_WITHIN_DAYS)
        for counted in counts:
            if counted.symbols * counted.grain.periods(options.start_date, horizon) > budget:
                passes = _passes_on(counted, options.start_date, budget)
                warning = _warning(options, source, counted, budget, passes, today)
                warnings.warn(warning, PartitionBudgetWarning, stacklevel=2)


def _assets_text(counted: AssetPartitions) -> str:
    first, *rest = counted.assets
    return first + (f" (and {', '.join(rest)}, of the same grain)" if rest else "")


def _refusal(
    options: ProjectOptions, source: str, ex: ExchangeProject, over: list[AssetPartitions], budget: int, today: date
) -> str:
    """One message for every data type of ``ex`` over the budget: the assets, the counts, the fixes."""
    fixes = []
    daily = [c for c in over if c.grain is Grain.DAY]
    symbols, months = over[0].symbols, Grain.MONTH.periods(options.start_date, today)
    if daily and symbols * months <= budget:
        own = any(_exchange_sets(options, ex, c.mode) for c in daily)
        where = f"exchanges.{ex.exchange_id}.partitions" if own else "partitions"
        grains = ", ".join(f"{c.mode}: month" for c in daily)
        fixes.append(f"a coarser grain, {where}: {{{grains}}} ({symbols:,} x {months:,} months = {symbols * months:,})")
    starts = [_latest_start(c.grain, c.symbols, budget, today) for c in over]
    if all(s is not None for s in starts):
        fixes.append(f"a later start_date ({max(s for s in starts if s is not None).isoformat()} or after)")
    fixes.append(
        f"fewer symbols (at most {min(budget // max(c.periods, 1) for c in over):,} since {options.start_date})"
    )
    counts = "; ".join(f"{_assets_text(c)} would have {c.describe()}" for c in over)
    return (
        f"project config {source}: {counts} since {options.start_date}, over the {budget:,} per asset "
        f"Dagster handles well (partitions.max_per_asset). Choose {'; or '.join(fixes)}. Raise "
        "partitions.max_per_asset only knowingly: every partition is evaluated by the UI, backfills and "
        "automation (docs/dagster.md, 'Partitions at a desk's scale')"
    )


def _warning(
    options: ProjectOptions, source: str, counted: AssetPartitions, budget: int, passes: date, today: date
) -> str:
    days = (passes - today).days
    return (
        f"project config {source}: {_assets_text(counted)} has {counted.describe()} and passes the "
        f"{budget:,} partitions per asset on {passes.isoformat()} (in {days} day{'' if days == 1 else 's'}), when the "
        f"project will be refused at load: choose a coarser grain or a later start_date before then "
        "(docs/dagster.md, 'Partitions at a desk's scale')"
    )


def _exchange_sets(options: ProjectOptions, ex: ExchangeProject, mode: Mode) -> bool:
    section = options.exchanges[ex.exchange_id].partitions
    return getattr(section, str(mode)) is not None


def _latest_start(grain: Grain, symbols: int, budget: int, today: date) -> date | None:
    """The latest start_date keeping ``symbols`` within ``budget`` partitions on ``today``, if any."""
    periods = budget // max(symbols, 1)
    if periods < 1:
        return None
    return grain.shift(grain.period_start(today), -(periods - 1))


def _passes_on(counted: AssetPartitions, start_date: str, budget: int) -> date:
    """The first day on which the count exceeds ``budget`` (it has symbols)."""
    allowed = budget // counted.symbols  # periods within the budget; the next one passes it
    return counted.grain.shift(counted.grain.period_start(date.fromisoformat(start_date)), allowed)
