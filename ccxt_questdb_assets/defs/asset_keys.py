"""Asset keys and catalog tags: ``{exchange}/{data type}/{name}``, as a desk reads the catalog.

* ``binance/ohlcv/ohlcv_1m``: candles fetched from the exchange, one asset per timeframe;
* ``binance/ohlcv/ohlcv_1h_resampled``: candles computed in QuestDB from the first timeframe;
* ``binance/ohlcv/trade_bars_1m``: 1m candles computed in QuestDB from the trades;
* ``binance/trades``: trades fetched from the exchange.

The catalog folds keys by their parts: each exchange is a folder, with the candles in one folder
beside the trades. The lineage graph labels a node with the key's last part, so that part names
the asset on its own (``ohlcv_1m``, not ``1m``). Every asset is also tagged with its exchange, data
type, source and (for candles) timeframe, so ``tag:data_type=ohlcv`` selects across exchanges.
"""

from __future__ import annotations

from dagster import AssetKey

from ccxt_questdb_assets.core.node_ids import OHLCV, TRADES

TRADE_BARS_TIMEFRAME = "1m"
#: Where an asset's rows come from: the exchange through ccxt, or QuestDB from another asset.
FETCHED, COMPUTED = "exchange", "questdb"


def ohlcv_key(exchange_id: str, timeframe: str) -> AssetKey:
    return AssetKey([exchange_id, OHLCV, f"ohlcv_{timeframe}"])


def resampled_key(exchange_id: str, timeframe: str) -> AssetKey:
    return AssetKey([exchange_id, OHLCV, f"ohlcv_{timeframe}_resampled"])


def trade_bars_key(exchange_id: str) -> AssetKey:
    return AssetKey([exchange_id, OHLCV, f"trade_bars_{TRADE_BARS_TIMEFRAME}"])


def trades_key(exchange_id: str) -> AssetKey:
    return AssetKey([exchange_id, TRADES])


def catalog_tags(exchange_id: str, data_type: str, source: str, timeframe: str | None = None) -> dict[str, str]:
    tags = {"exchange": exchange_id, "data_type": data_type, "source": source}
    if timeframe is not None:
        tags["timeframe"] = timeframe
    return tags
