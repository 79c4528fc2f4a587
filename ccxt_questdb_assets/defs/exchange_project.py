"""One exchange's part of the project: its engine configs (one per data type, derived from the
project's options once) and what its assets are (symbols, timeframes, trades, resampling, grains)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.node_ids import OHLCV, TRADES, Mode
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.defs.partitions import Grain, check_symbol_key
from ccxt_questdb_assets.defs.project_options import ExchangeSection, ProjectOptions
from ccxt_questdb_assets.exchange.dialects import CandlePaging, TradePaging
from ccxt_questdb_assets.history.config import ProviderConfig
from ccxt_questdb_assets.history.options import ProviderOptions


@dataclass(frozen=True)
class ExchangeProject:
    """One exchange's part of the project: its provider configs and asset options."""

    exchange_id: str
    symbols: tuple[str, ...]
    timeframes: tuple[str, ...]
    trades: bool
    resample_to: tuple[str, ...]
    listing_pattern: str | None
    ohlcv: ProviderConfig
    trades_config: ProviderConfig | None
    ohlcv_grain: Grain = Grain.DAY
    trades_grain: Grain = Grain.DAY

    def grain(self, mode: Mode) -> Grain:
        """The time grain of ``mode``'s assets (and of those computed from them)."""
        return self.trades_grain if mode == TRADES else self.ohlcv_grain

    def provider_config(self, mode: Mode, *, timeframe: str | None = None) -> ProviderConfig:
        """The engine config of one asset (one mode, one timeframe), derived without parsing again."""
        if mode == TRADES:
            if self.trades_config is None:
                raise ConfigError(f"exchange {self.exchange_id!r} has no trades asset: set trades: true")
            return self.trades_config
        tf = timeframe or self.timeframes[0]
        return replace(self.ohlcv, timeframes=(tf,), backfill=replace(self.ohlcv.backfill, timeframe=tf))


def _candle_timeframes(
    ex_id: str, section: ExchangeSection, ohlcv: ProviderConfig, trades: bool, where: str
) -> tuple[str, ...]:
    """The timeframes that become candle assets. An exchange serving only its latest candles (kraken:
    720 bars) cannot fill daily partitions of any age: it gets none, and its 1m bars come from its
    trades (``trade_bars_1m``), which it keeps in full."""
    dialect = ohlcv.backfill.dialect
    if dialect.candles is not CandlePaging.LATEST_ONLY:
        return ohlcv.timeframes
    if section.timeframes is not None or section.timeframe is not None:
        raise ConfigError(
            f"{where} exchanges.{ex_id}.timeframes: {dialect.limits}. Daily partitions reach "
            f"further back, so {ex_id} has no candle asset: remove timeframes (and set trades: true)"
        )
    if not trades:
        raise ConfigError(
            f"{where} exchanges.{ex_id}: {dialect.limits}. Set trades: true: {ex_id} then gets "
            f"its trades and {ex_id}/ohlcv/trade_bars_1m"
        )
    return ()


def _provider_options(
    ex_id: str, section: ExchangeSection, top: ProjectOptions, mode: Mode, where: str
) -> ProviderOptions:
    """One exchange's ``from_config`` options: the top's fetch keys, the section's over them."""
    fetch = {**top.fetch_given(), **section.fetch_given()}
    if mode == TRADES:
        fetch.pop("timeframes", None)
        timeframe = None
    else:
        timeframe = section.timeframe
        if timeframe is None and "timeframes" not in fetch:
            fetch["timeframes"] = ["1m"]
    given = {
        **fetch,
        "mode": mode,
        "exchange": ex_id,
        "symbols": section.symbols,
        "timeframe": timeframe,
        "questdb": top.questdb,
        "rate_limiter": top.rate_limiter,
        "connectors": top.connectors,
    }
    return ProviderOptions.parse(given, where=f"{where} exchanges.{ex_id}")


def exchange_project(
    ex_id: str, section: ExchangeSection, top: ProjectOptions, environ: Mapping[str, str], where: str
) -> ExchangeProject:
    ohlcv = ProviderConfig.from_options(_provider_options(ex_id, section, top, OHLCV, where), environ=environ)
    trades = section.trades
    timeframes = _candle_timeframes(ex_id, section, ohlcv, trades, where)
    resample = tuple(section.resample_to)
    if resample and not timeframes:
        raise ConfigError(
            f"{where} exchanges.{ex_id}.resample_to needs candles to compute from, and {ex_id} has "
            "no candle asset: remove resample_to"
        )
    base = Timeframe.parse(ohlcv.timeframes[0])
    for tf in resample:
        if Timeframe.parse(tf).ms <= base.ms or Timeframe.parse(tf).ms % base.ms:
            raise ConfigError(
                f"{where} exchanges.{ex_id}.resample_to {tf!r} must be a multiple of {base.name}, "
                f"the first timeframe it is computed from"
            )
    trades_cfg = None
    if trades:
        options = _provider_options(ex_id, section, top, TRADES, where)
        trades_cfg = ProviderConfig.from_options(options, environ=environ)
        dialect = trades_cfg.backfill.dialect
        if dialect.trades is TradePaging.NONE:
            raise ConfigError(f"{where} exchanges.{ex_id}.trades: {dialect.limits}; set trades: false")
    symbols = tuple(ohlcv.backfill.symbols or ())
    for symbol in symbols:  # each becomes a dynamic partition key
        check_symbol_key(symbol, f"{where} exchanges.{ex_id}.symbols")
    shared, own = top.partitions, section.partitions
    return ExchangeProject(
        exchange_id=ex_id,
        symbols=symbols,
        timeframes=timeframes,
        trades=trades,
        resample_to=resample,
        listing_pattern=section.listing_pattern,
        ohlcv=ohlcv,
        trades_config=trades_cfg,
        ohlcv_grain=own.ohlcv or shared.ohlcv or Grain.DAY,
        trades_grain=own.trades or shared.trades or Grain.DAY,
    )
