"""Series computed inside QuestDB from stored series: ``INSERT INTO ... SELECT ... SAMPLE BY``.

Nothing leaves the server: a resample or a trade-bar build is one statement per window, with
every value (exchange, symbol, timeframes, the UTC window) a bound parameter and table names
validated (``quote_ident``). The bar length of ``SAMPLE BY`` cannot be bound: it is written from a
parsed :class:`Timeframe` (``1h``, ``15m``, ``1w``...), a closed alphabet.

``ALIGN TO CALENDAR`` puts buckets on the epoch grid (weeks on Mondays), the grid
``core.timeframes`` uses. Callers pass windows on the target grid, so every bucket is whole.
Targets are candle tables (DEDUP on ts, exchange, symbol, timeframe): a recomputation upserts.

QuestDB quirks met here: an aggregate aliased with its column's name (``first(open) open``)
fails in a ``SAMPLE BY`` select, so the aggregation runs in a subquery with short aliases and the
outer select names the target columns; ``nsum`` (Neumaier summation) keeps volumes as close to
the exchange's decimal totals as doubles allow.
"""

from __future__ import annotations

import re

import numpy as np

from ccxt_questdb_assets.core.coverage import CoverageSpan, EmptyRecheckPolicy, gaps, holes
from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.node_ids import NodeId
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.core.windows import TimeWindow
from ccxt_questdb_assets.storage.client import QuestDBClient
from ccxt_questdb_assets.storage.identifiers import quote_ident
from ccxt_questdb_assets.storage.schema import CANDLES, TRADES

_SAMPLE_UNIT = re.compile(r"^[1-9][0-9]*[smhdw]$")
_TARGET_COLUMNS = "ts, exchange, symbol, timeframe, open, high, low, close, volume, closed"


def _us(ms: int) -> int:
    return ms * 1000


def sample_by(tf: Timeframe) -> str:
    """The ``SAMPLE BY`` period of a timeframe; only parsed timeframe names reach SQL."""
    if not _SAMPLE_UNIT.match(tf.name):
        raise ConfigError(f"timeframe {tf.name!r} cannot be a SAMPLE BY period")
    return tf.name


def resample_candles(
    client: QuestDBClient,
    *,
    source_table: str,
    target_table: str,
    source: NodeId,
    target: Timeframe,
    window: TimeWindow,
) -> None:
    """Write ``target`` bars of ``source``'s exchange and symbol for ``window`` (on the target grid)
    into ``target_table``: first open, max high, min low, last close, summed volume, closed."""
    _on_grid(window, target)
    if source.timeframe is None:
        raise ConfigError(f"{source} is not a candle series: only candles can be resampled")
    client.ensure_table(CANDLES, target_table)
    sql = (
        f"INSERT INTO {quote_ident(target_table)} ({_TARGET_COLUMNS}) "
        "SELECT ts, %s, %s, %s, o, h, l, c, v, true FROM ("
        "SELECT ts, first(open) o, max(high) h, min(low) l, last(close) c, nsum(volume) v "
        f"FROM {quote_ident(source_table)} "
        "WHERE exchange = %s AND symbol = %s AND timeframe = %s AND ts >= %s::timestamp AND ts < %s::timestamp "
        f"SAMPLE BY {sample_by(target)} ALIGN TO CALENDAR)"
    )
    client.query(
        sql,
        (
            source.exchange,
            source.symbol,
            target.name,
            source.exchange,
            source.symbol,
            source.timeframe.name,
            _us(window.start_ms),
            _us(window.end_ms),
        ),
    )


def bars_from_trades(
    client: QuestDBClient,
    *,
    trades_table: str,
    target_table: str,
    exchange: str,
    symbol: str,
    timeframe: Timeframe,
    window: TimeWindow,
) -> None:
    """Write ``timeframe`` bars built from the trades of ``window`` (on the grid) into ``target_table``.

    Open is the first trade of the bar and close the last, by time and then by trade id
    (numeric ids compare by length first, so ``"10"`` follows ``"9"``): many trades share a
    millisecond. Volume is the summed amount. A bar without trades is not written.
    """
    _on_grid(window, timeframe)
    client.ensure_table(CANDLES, target_table)
    client.ensure_table(TRADES, trades_table)
    sql = (
        f"INSERT INTO {quote_ident(target_table)} ({_TARGET_COLUMNS}) "
        "SELECT ts, %s, %s, %s, o, h, l, c, v, true FROM ("
        "SELECT ts, first(price) o, max(price) h, min(price) l, last(price) c, nsum(amount) v FROM ("
        f"SELECT ts, price, amount FROM {quote_ident(trades_table)} "
        "WHERE exchange = %s AND symbol = %s AND ts >= %s::timestamp AND ts < %s::timestamp "
        "ORDER BY ts, length(trade_id), trade_id) timestamp(ts) "
        f"SAMPLE BY {sample_by(timeframe)} ALIGN TO CALENDAR)"
    )
    client.query(sql, (exchange, symbol, timeframe.name, exchange, symbol, _us(window.start_ms), _us(window.end_ms)))


def bar_opens(client: QuestDBClient, table: str, node: NodeId, window: TimeWindow) -> np.ndarray:
    """Open times (epoch ms, sorted) of ``node``'s bars in ``[start, end)`` of a candle table."""
    if node.timeframe is None:
        raise ConfigError(f"{node} is not a candle series")
    client.ensure_table(CANDLES, table)
    rows = client.query(
        f"SELECT cast(ts AS long) FROM {quote_ident(table)} WHERE exchange = %s AND symbol = %s AND timeframe = %s "
        "AND ts >= %s::timestamp AND ts < %s::timestamp ORDER BY ts",
        (node.exchange, node.symbol, node.timeframe.name, _us(window.start_ms), _us(window.end_ms)),
    )
    return np.array([r[0] // 1000 for r in rows], dtype=np.int64)


def bar_windows(covered: list[TimeWindow], within: TimeWindow, tf: Timeframe) -> list[TimeWindow]:
    """The parts of ``covered`` inside ``within`` that hold whole bars of ``tf``, cut to its grid."""
    out = []
    for w in covered:
        start, end = tf.ceil(max(w.start_ms, within.start_ms)), tf.floor(min(w.end_ms, within.end_ms))
        if end > start:
            out.append(TimeWindow(start, end))
    return out


def derived_spans(
    window: TimeWindow, opens: np.ndarray, tf: Timeframe, now_ms: int, policy: EmptyRecheckPolicy
) -> list[CoverageSpan]:
    """Coverage of a window a derived series computed: the window as data, each bar without a row
    as an empty span. A recent empty stays out of the data span (as the ingestion engine does),
    so it lapses and is recomputed once the upstream has been rechecked."""
    empty = holes(opens, window, tf.ms)
    recent = [w for w in empty if w.end_ms > now_ms - policy.recent_ms]
    spans = [CoverageSpan(w.start_ms, w.end_ms, True, now_ms) for w in empty]
    spans += [CoverageSpan(w.start_ms, w.end_ms, False, now_ms) for w in gaps(window, recent)]
    return spans


def _on_grid(window: TimeWindow, tf: Timeframe) -> None:
    if not (tf.on_grid(window.start_ms) and tf.on_grid(window.end_ms)) or window.empty:
        raise ConfigError(f"window {window} is not a whole number of {tf.name} bars on the grid")
