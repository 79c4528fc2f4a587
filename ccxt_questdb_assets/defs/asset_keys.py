"""Asset keys and catalog tags: ``{exchange}/{data type}/{variant}``, as a desk reads the catalog.

* ``binance/ohlcv/1m``: candles fetched from the exchange, one asset per timeframe;
* ``binance/ohlcv/1h_resampled``: candles computed in QuestDB from the first timeframe;
* ``binance/trades``: trades fetched from the exchange;
* ``binance/trade_bars/1m``: 1m bars computed in QuestDB from the trades.

The catalog folds keys by their parts, so each exchange is a folder with one folder per data
type. Every asset is also tagged with its exchange, data type, source and (for candles) timeframe,
so ``tag:data_type=ohlcv`` selects across exchanges.
"""

from __future__ import annotations

from dagster import AssetKey

OHLCV = "ohlcv"
TRADES = "trades"
TRADE_BARS = "trade_bars"
TRADE_BARS_TIMEFRAME = "1m"
#: Where an asset's rows come from: the exchange through ccxt, or QuestDB from another asset.
FETCHED, COMPUTED = "exchange", "questdb"


def ohlcv_key(exchange_id: str, timeframe: str) -> AssetKey:
    return AssetKey([exchange_id, OHLCV, timeframe])


def resampled_key(exchange_id: str, timeframe: str) -> AssetKey:
    return AssetKey([exchange_id, OHLCV, f"{timeframe}_resampled"])


def trades_key(exchange_id: str) -> AssetKey:
    return AssetKey([exchange_id, TRADES])


def trade_bars_key(exchange_id: str) -> AssetKey:
    return AssetKey([exchange_id, TRADE_BARS, TRADE_BARS_TIMEFRAME])


def catalog_tags(exchange_id: str, data_type: str, source: str, timeframe: str | None = None) -> dict[str, str]:
    tags = {"exchange": exchange_id, "data_type": data_type, "source": source}
    if timeframe is not None:
        tags["timeframe"] = timeframe
    return tags
