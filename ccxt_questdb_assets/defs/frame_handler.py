"""The QuestDB IO manager's type handler for pandas DataFrames (as Dagster's database IO managers
keep one per type, apart from the IO manager): a frame of candles or trades is validated, then
upserted in bulk (the tables' DEDUP keys make a rewrite replace its rows, so no delete step is
needed), for one or many symbols (``symbol`` column); an input loads as one frame. The IO manager
imports this module with the first frame, so definitions, and runs of stored slices, load
without pandas."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ccxt_questdb_assets.core.clock import wall_clock_ms
from ccxt_questdb_assets.core.errors import ExchangeDataError, InvalidFrameError
from ccxt_questdb_assets.core.node_ids import OHLCV
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.core.validation import candles_frame, trades_frame, ts_column_ms
from ccxt_questdb_assets.core.windows import TimeWindow, format_ms
from ccxt_questdb_assets.defs.partitions import SymbolSlice
from ccxt_questdb_assets.storage.client import QuestDBClient
from ccxt_questdb_assets.storage.series_table import SeriesTable


class DataFrameHandler:
    """Validates a frame of candles or trades and upserts it symbol by symbol; loads an input's
    partitions as one frame."""

    TYPE = pd.DataFrame

    def store(
        self, table: SeriesTable, client: QuestDBClient, slices: list[SymbolSlice], obj: pd.DataFrame, asset: str
    ) -> dict[str, dict[str, Any]]:
        store = table.store(client)
        by_symbol = {s.symbol: s for s in slices}
        frame = obj
        if "symbol" not in frame.columns:
            if len(by_symbol) != 1:
                raise InvalidFrameError(
                    f"asset {asset}: the output spans symbols {sorted(by_symbol)}; add a "
                    "'symbol' column naming each row's symbol"
                )
            groups = [(next(iter(by_symbol)), frame)]
        else:
            groups = list(frame.groupby("symbol", sort=True, observed=True))
        cleaned = [(symbol, self._clean(table, part, by_symbol, symbol, asset)) for symbol, part in groups]
        figures: dict[str, dict[str, Any]] = {}
        for symbol, rows in cleaned:  # every group validated before anything is written
            store.write(table.node(symbol), rows)
            ts = rows["ts"].to_numpy()
            for p in by_symbol[symbol].partitions:
                figures[p.key] = {"rows_written": int(((ts >= p.window.start_ms) & (ts < p.window.end_ms)).sum())}
        return figures

    def load(self, table: SeriesTable, client: QuestDBClient, slices: list[SymbolSlice]) -> pd.DataFrame:
        """The partitions' rows as one frame, a ``symbol`` column after ``ts``."""
        store = table.store(client)
        frames = []
        for sl in slices:
            for window in sl.windows:
                part = store.read(table.node(sl.symbol), window)
                part.insert(1, "symbol", sl.symbol)
                frames.append(part)
        if not frames:
            return pd.DataFrame({c: [] for c in ("ts", "symbol", *table.series_kind.value_columns)})
        return pd.concat(frames, ignore_index=True)

    @staticmethod
    def _clean(
        table: SeriesTable, part: pd.DataFrame, by_symbol: dict[str, SymbolSlice], symbol: str, asset: str
    ) -> pd.DataFrame:
        what = f"asset {asset} output for {symbol}"
        if symbol not in by_symbol:
            raise InvalidFrameError(
                f"{what}: symbol {symbol!r} is not among this run's partitions {sorted(by_symbol)}; nothing was written"
            )
        columns = ["ts", *table.series_kind.value_columns]
        missing = [c for c in columns if c not in part.columns]
        if missing:
            raise InvalidFrameError(f"{what}: missing columns {missing}; expected {columns}")
        try:
            ts = ts_column_ms(part["ts"], what=what)
            if table.kind == OHLCV:
                values = part[columns].to_numpy(dtype="float64", copy=True)
                values[:, 0] = ts
                tf = Timeframe.parse(table.timeframe)
                # A bar is final only once it has closed, whatever the frame says.
                rows = candles_frame(values, tf, what=what, closed_until=wall_clock_ms())
                if "closed" in part:
                    given = pd.DataFrame({"ts": ts, "given": part["closed"].to_numpy(dtype=bool)})
                    given = given.drop_duplicates("ts", keep="last")
                    rows = rows.merge(given, on="ts", how="left")
                    rows["closed"] &= rows.pop("given").fillna(True).astype(bool)
            else:
                records = [
                    {"timestamp": t, "id": i, "price": p, "amount": a, "side": s}
                    for t, i, p, a, s in zip(
                        ts, part["trade_id"], part["price"], part["amount"], part["side"], strict=True
                    )
                ]
                rows = trades_frame(records, what=what)
        except ExchangeDataError as exc:
            raise InvalidFrameError(str(exc)) from None
        inside = pd.Series(False, index=rows.index)
        for w in by_symbol[symbol].windows:
            inside |= (rows["ts"] >= w.start_ms) & (rows["ts"] < w.end_ms)
        if not inside.all():
            first = int(rows.loc[~inside, "ts"].iloc[0])
            raise InvalidFrameError(
                f"{what}: row at {format_ms(first)} lies outside the run's partitions "
                f"({', '.join(_window_text(w) for w in by_symbol[symbol].windows)}); nothing was written"
            )
        return rows


def _window_text(w: TimeWindow) -> str:
    return f"[{format_ms(w.start_ms)}, {format_ms(w.end_ms)})"
