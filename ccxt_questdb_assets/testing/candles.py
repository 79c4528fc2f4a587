"""Candles as stored in QuestDB against the emulator's ground truth, for tests and benchmarks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ccxt_questdb_assets.core.node_ids import NodeId
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.core.windows import TimeWindow

__all__ = ["assert_bars_equal", "assert_candles_exact", "stored_candles", "truth_candles"]


def stored_candles(
    questdb: Any,
    table: str,
    symbol: str,
    start_ms: int,
    end_ms: int,
    *,
    exchange: str = "binance",
    timeframe: str = "1m",
) -> pd.DataFrame:
    """The candles of ``exchange``/``symbol`` in ``table`` over [start, end), in timestamp order."""
    from ccxt_questdb_assets.storage.client import QuestDBClient
    from ccxt_questdb_assets.storage.series import SeriesStore
    from ccxt_questdb_assets.storage.series_kind import CANDLE_KIND

    client = QuestDBClient(questdb.connection)
    try:
        store = SeriesStore(client, table, CANDLE_KIND)
        node = NodeId("ohlcv", exchange, symbol, Timeframe.parse(timeframe))
        return store.read(node, TimeWindow(start_ms, end_ms))
    finally:
        client.close()


def truth_candles(emulator: Any, symbol: str, start_ms: int, end_ms: int, timeframe: str = "1m") -> np.ndarray:
    """The emulator's candles over [start, end): rows of ts (ms), open, high, low, close, volume."""
    rows = emulator.market.candles(symbol.replace("/", ""), timeframe, start_ms, end_ms)
    return np.array(rows, dtype=float)[:, :6].reshape(-1, 6)


def assert_candles_exact(got: pd.DataFrame, want: np.ndarray, what: str = "candles") -> None:
    """Same timestamps and the same values, row for row (so no duplicate and no hole)."""
    assert len(got) == len(want), f"{what}: {len(got)} rows stored, {len(want)} expected"
    np.testing.assert_array_equal(
        got["ts"].dt.as_unit("ms").astype("int64").to_numpy(), want[:, 0].astype(np.int64), err_msg=what
    )
    np.testing.assert_array_equal(
        got[["open", "high", "low", "close", "volume"]].to_numpy(), want[:, 1:6], err_msg=what
    )


def assert_bars_equal(got: pd.DataFrame, want: np.ndarray, what: str = "bars") -> None:
    """Bars computed from other rows (resampled, built from trades): timestamps and open, high, low,
    close exactly; volume, a sum of doubles, to the last few bits."""
    assert len(got) == len(want) > 0, f"{what}: {len(got)} rows stored, {len(want)} expected"
    np.testing.assert_array_equal(
        got["ts"].dt.as_unit("ms").astype("int64").to_numpy(), want[:, 0].astype(np.int64), err_msg=what
    )
    np.testing.assert_array_equal(got[["open", "high", "low", "close"]].to_numpy(), want[:, 1:5], err_msg=what)
    np.testing.assert_allclose(got["volume"].to_numpy(), want[:, 5], rtol=1e-12, atol=0, err_msg=what)
