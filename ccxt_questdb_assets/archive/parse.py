"""An archive file's CSV, parsed in bulk into the frames REST pages become, and checked the same way.

Klines: ``open time, open, high, low, close, volume, close time, ...``; aggregated trades:
``id, price, quantity, first id, last id, time, buyer is maker[, best match]``. Spot files have no
header, futures files one. Times are epoch milliseconds, or microseconds (spot files from
2025-01-01): the unit is read from each value's magnitude, and a microsecond time must be a whole
millisecond. Rows then pass the REST pages' checks (bar grid, prices, duplicates): a bad file is
refused whole, naming the file and the row.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from ccxt_questdb_assets.core.errors import ExchangeDataError
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.core.validation import candles_frame, trade_columns_frame

#: Times above this are microseconds (1e13 ms is the year 2286).
MICROSECONDS_ABOVE = 10**13

_KLINE_TYPES = {"f0": pa.int64(), **{f"f{i}": pa.float64() for i in range(1, 6)}}
_TRADE_TYPES = {"f0": pa.int64(), "f1": pa.float64(), "f2": pa.float64(), "f5": pa.int64(), "f6": pa.bool_()}


@contextmanager
def csv_member(data: bytes, name: str) -> Iterator[zipfile.ZipExtFile]:
    """The single CSV inside an archive zip file, as a stream: the parser reads it as it is
    decompressed (a month of 1m klines is 6 MB of CSV, never held whole)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.namelist()
            if len(members) != 1:
                raise ExchangeDataError(f"archive file {name} holds {len(members)} files, expected one CSV")
            with archive.open(members[0]) as member:
                yield member
    except zipfile.BadZipFile as exc:  # at opening, or a bad CRC once read
        raise ExchangeDataError(f"archive file {name} is not a valid zip file ({exc})") from exc


def _table(csv: zipfile.ZipExtFile, name: str, types: dict[str, pa.DataType]) -> pa.Table:
    first = csv.peek(1)[:1]
    header = bool(first) and not first.isdigit()
    try:
        return pa_csv.read_csv(
            csv,
            # one thread: the stream is decompressed no faster, and parallel blocks cost memory
            read_options=pa_csv.ReadOptions(
                autogenerate_column_names=True, skip_rows=1 if header else 0, use_threads=False
            ),
            convert_options=pa_csv.ConvertOptions(column_types=types, include_columns=list(types)),
            memory_pool=pa.system_memory_pool(),
        )
    except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
        raise ExchangeDataError(f"archive file {name}: a row is not what the archive's layout says ({exc})") from exc


def milliseconds(times: np.ndarray, name: str) -> np.ndarray:
    """Epoch times in ms, each read as ms or microseconds by its magnitude."""
    micro = times > MICROSECONDS_ABOVE
    if micro.any():
        off = micro & (times % 1000 != 0)
        if off.any():
            row = int(np.argmax(off))
            raise ExchangeDataError(
                f"archive file {name}: row {row} has time {int(times[row])} in microseconds that is not a whole "
                "millisecond; refusing the file"
            )
        times = np.where(micro, times // 1000, times)
    return times


def kline_frame(csv: zipfile.ZipExtFile, timeframe: Timeframe, name: str) -> pd.DataFrame:
    """The candles of a klines file (``ts`` epoch ms), checked like a REST page."""
    table = _table(csv, name, _KLINE_TYPES)
    matrix = np.empty((table.num_rows, 6), dtype=np.float64)
    matrix[:, 0] = milliseconds(table.column("f0").to_numpy(), name)
    for i in range(1, 6):
        matrix[:, i] = table.column(f"f{i}").to_numpy()
    return candles_frame(matrix, timeframe, what=f"archive file {name}")


def agg_trade_frame(csv: zipfile.ZipExtFile, name: str) -> pd.DataFrame:
    """The trades of an aggTrades file: its aggregate id as the trade id (as ccxt's aggTrades
    paging gives it), the taker's side (a buyer-maker trade is a sell)."""
    table = _table(csv, name, _TRADE_TYPES)
    ts = milliseconds(table.column("f5").to_numpy(), name)
    ids = table.column("f0").to_numpy()
    sides = np.where(table.column("f6").to_numpy(zero_copy_only=False), "sell", "buy")
    rows = _RowQuote(table)
    return trade_columns_frame(
        ts,
        ids.astype(str),
        table.column("f1").to_numpy(),
        table.column("f2").to_numpy(),
        sides,
        rows,
        what=f"archive file {name}",
    )


class _RowQuote:
    """Row ``i`` of a table, built only when a refusal quotes it."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table

    def __len__(self) -> int:
        return int(self._table.num_rows)

    def __getitem__(self, i: int) -> dict[str, object]:
        return {name: self._table.column(name)[i].as_py() for name in self._table.column_names}
