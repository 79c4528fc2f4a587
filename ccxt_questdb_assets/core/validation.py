"""Turn exchange answers into typed frames, or refuse them whole.

A page either becomes clean rows or raises ``ExchangeDataError`` naming the first bad row;
nothing of a refused page is written. Exact duplicates are dropped and rows are sorted,
because exchanges (and proxies) do repeat and reorder; conflicting duplicates are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ccxt_questdb_assets.core.errors import ExchangeDataError
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.core.windows import format_ms

if TYPE_CHECKING:
    import pandas as pd

CANDLE_FIELDS = ("ts", "open", "high", "low", "close", "volume")
TRADE_FIELDS = ("ts", "trade_id", "price", "amount", "side")
_SIDES = {"buy", "sell"}


def _float_matrix(rows: Sequence[Sequence[Any]] | np.ndarray, what: str) -> np.ndarray:
    if isinstance(rows, np.ndarray) and rows.ndim == 2 and rows.shape[1] >= 6:
        return np.asarray(rows[:, :6], dtype=np.float64)  # a frame's columns: no per-row work
    try:  # the usual page: rows of equal length, converted in one call
        whole = np.array(rows, dtype=np.float64)
        if whole.ndim == 2 and whole.shape[1] >= 6:
            return whole[:, :6]
    except (TypeError, ValueError):
        pass  # ragged or odd rows: the per-row path below says which
    try:
        matrix = np.array([list(r[:6]) for r in rows], dtype=np.float64)
    except (TypeError, ValueError, IndexError) as exc:
        raise ExchangeDataError(f"{what}: a row is not six numbers ({exc}); first row {rows[0]!r}") from None
    if matrix.ndim != 2 or matrix.shape[1] != 6:
        raise ExchangeDataError(f"{what}: rows must be [ts, open, high, low, close, volume]; got {rows[0]!r}")
    return matrix


def candles_frame(
    rows: Sequence[Sequence[Any]], timeframe: Timeframe, *, what: str = "candles", closed_until: int | None = None
) -> pd.DataFrame:
    """Validate ccxt OHLCV rows into a frame with ``ts`` as int64 epoch ms; with ``closed_until``,
    a ``closed`` column says which bars had ended by then (built with the frame, not added to it)."""
    import pandas as pd

    if len(rows) == 0:
        frame = pd.DataFrame({c: pd.Series(dtype="int64" if c == "ts" else "float64") for c in CANDLE_FIELDS})
        if closed_until is not None:
            frame["closed"] = pd.Series(dtype="bool")
        return frame
    m = _float_matrix(rows, what)
    bad = ~np.isfinite(m).all(axis=1)
    _refuse(bad, rows, what, "has a value that is not a finite number")
    ts = m[:, 0].astype(np.int64)
    _refuse(ts != m[:, 0], rows, what, "has a timestamp that is not whole milliseconds")
    _refuse((ts - timeframe.anchor_ms) % timeframe.ms != 0, rows, what, f"has a timestamp off the {timeframe} grid")
    o, h, low, c, v = m[:, 1], m[:, 2], m[:, 3], m[:, 4], m[:, 5]
    _refuse(v < 0, rows, what, "has a negative volume")
    _refuse((low <= 0) | (o <= 0) | (c <= 0), rows, what, "has a price that is not positive")
    _refuse(h < low, rows, what, "has high below low")
    _refuse((h < np.maximum(o, c)) | (low > np.minimum(o, c)), rows, what, "has open/close outside [low, high]")
    columns = {"ts": ts, "open": o, "high": h, "low": low, "close": c, "volume": v}
    if closed_until is not None:
        columns["closed"] = ts + timeframe.ms <= closed_until
    frame = pd.DataFrame(columns)
    if (ts[1:] > ts[:-1]).all():
        return frame  # strictly increasing (the usual page): already sorted, no duplicate
    return _sorted_unique(frame, ["ts"], what)


def trades_frame(trades: Sequence[dict[str, Any]], *, what: str = "trades") -> pd.DataFrame:
    """Validate ccxt trade dicts into a frame with ``ts`` int64 ms and the exchange's trade id."""
    import pandas as pd

    if len(trades) == 0:
        return pd.DataFrame(
            {
                "ts": pd.Series(dtype="int64"),
                "trade_id": pd.Series(dtype="str"),
                "price": pd.Series(dtype="float64"),
                "amount": pd.Series(dtype="float64"),
                "side": pd.Series(dtype="str"),
            }
        )
    try:
        ts = np.array([t["timestamp"] for t in trades], dtype=np.float64)
        price = np.array([t["price"] for t in trades], dtype=np.float64)
        amount = np.array([t["amount"] for t in trades], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ExchangeDataError(
            f"{what}: a trade lacks a numeric timestamp, price or amount ({exc}); first trade {_brief(trades[0])}"
        ) from None
    ids = [t.get("id") for t in trades]
    sides = [t.get("side") for t in trades]
    _refuse(
        np.array([isinstance(i, bool) or not isinstance(i, (str, int)) or str(i) == "" for i in ids]),
        trades,
        what,
        "has no trade id (a non-empty string or integer)",
    )
    _refuse(
        np.array([s is not None and (not isinstance(s, str) or s not in _SIDES) for s in sides]),
        trades,
        what,
        "has a side other than buy/sell",
    )
    return trade_columns_frame(ts, [str(i) for i in ids], price, amount, [s or "" for s in sides], trades, what=what)


def trade_columns_frame(
    ts: np.ndarray,
    trade_ids: Sequence[str] | np.ndarray,
    price: np.ndarray,
    amount: np.ndarray,
    sides: Sequence[str] | np.ndarray,
    rows: Sequence[Any],
    *,
    what: str = "trades",
) -> pd.DataFrame:
    """Validate trades given as columns (``ts`` in ms as floats or ints, ids as strings, sides
    ``buy``/``sell``) into the trades frame; ``rows`` are what a refusal quotes (row ``i``)."""
    import pandas as pd

    ts = np.asarray(ts, dtype=np.float64)
    _refuse(~np.isfinite(ts) | (ts != np.floor(ts)), rows, what, "has a timestamp that is not whole milliseconds")
    _refuse(~np.isfinite(price) | (price <= 0), rows, what, "has a price that is not a positive number")
    _refuse(~np.isfinite(amount) | (amount < 0), rows, what, "has an amount that is not a number >= 0")
    frame = pd.DataFrame(
        {"ts": ts.astype(np.int64), "trade_id": trade_ids, "price": price, "amount": amount, "side": sides}
    )
    return _sorted_unique(frame, ["ts", "trade_id"], what)


def _sorted_unique(frame: pd.DataFrame, keys: list[str], what: str) -> pd.DataFrame:
    frame = frame.drop_duplicates().sort_values(keys, kind="stable").reset_index(drop=True)
    clash = frame.duplicated(subset=keys, keep=False)
    if clash.any():
        row = frame[clash].iloc[0]
        raise ExchangeDataError(
            f"{what}: two different rows share the key {dict(row[keys])} "
            f"(at {format_ms(int(row['ts']))}); refusing the page"
        )
    return frame


def _refuse(mask: np.ndarray, rows: Sequence[Any], what: str, problem: str) -> None:
    if mask.any():
        index = int(np.argmax(mask))
        raise ExchangeDataError(
            f"{what}: row {index} {problem}: {_brief(rows[index])}; nothing of this page was written"
        )


def _brief(row: Any) -> str:
    if isinstance(row, dict):
        row = {k: row.get(k) for k in ("id", "timestamp", "price", "amount", "side")}
    text = repr(row)
    return text if len(text) < 200 else text[:197] + "..."


def ts_column_ms(ts: pd.Series, *, what: str = "frame") -> np.ndarray:
    """A ``ts`` column as int64 epoch milliseconds: timezone-aware datetimes, or integer epoch ms.

    Naive datetimes are refused: their zone would be a guess.
    """
    import pandas as pd

    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        return np.asarray(ts.dt.tz_convert("UTC").dt.as_unit("ms").astype("int64"), dtype=np.int64)
    if pd.api.types.is_datetime64_dtype(ts.dtype):
        raise ExchangeDataError(
            f"{what}: column ts holds naive datetimes; make them UTC with "
            "ts.dt.tz_localize('UTC') (or pass epoch milliseconds)"
        )
    if pd.api.types.is_integer_dtype(ts.dtype):
        return ts.to_numpy(dtype=np.int64)
    raise ExchangeDataError(f"{what}: column ts has dtype {ts.dtype}; give UTC datetimes or int64 epoch milliseconds")
