"""One QuestDB client for reads (PG wire, binary), bulk writes (ILP over HTTP) and WAL visibility.

Writes go through ``questdb.Sender.dataframe`` (native serialisation, one HTTP request per
table and flush). A WAL commit is acknowledged before it is visible, so every writer that
must read its own data, or record coverage for it, calls ``wait_visible`` first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd
import psycopg
from questdb import Sender

from ccxt_questdb_assets.core.errors import StorageError
from ccxt_questdb_assets.storage.connection import QuestDBConnection
from ccxt_questdb_assets.storage.identifiers import validate_table_name
from ccxt_questdb_assets.storage.schema import TableSchema


class QuestDBClient:
    """Thread-safe access to one QuestDB server. Cheap to share; holds one PG connection."""

    def __init__(self, connection: QuestDBConnection, *, visibility_timeout_s: float = 60.0) -> None:
        self.connection = connection
        self.visibility_timeout_s = visibility_timeout_s
        self._lock = threading.RLock()
        self._pg: psycopg.Connection | None = None
        self._created: set[str] = set()

    # -- PG wire -----------------------------------------------------------------------------
    def _conn(self) -> psycopg.Connection:
        if self._pg is None or self._pg.closed:
            try:
                self._pg = psycopg.connect(self.connection.pg_conninfo(), autocommit=True)
            except psycopg.Error as exc:
                raise StorageError(
                    f"cannot connect to QuestDB over PG wire at {self.connection!s}: "
                    f"{type(exc).__name__}: {_first_line(exc)}"
                ) from None
        return self._pg

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            for attempt in (1, 2):
                try:
                    cur = self._conn().cursor(binary=True)
                    cur.execute(sql, params)
                    return cur.fetchall() if cur.description else []
                except psycopg.OperationalError as exc:
                    # A restarted server drops the connection: reconnect once.
                    self._close_pg()
                    if attempt == 2:
                        raise StorageError(f"QuestDB query failed: {_first_line(exc)}") from None
                except psycopg.Error as exc:
                    raise StorageError(f"QuestDB query failed: {_first_line(exc)}") from None
        raise AssertionError("unreachable")

    def query_frame(self, sql: str, params: Sequence[Any], columns: Sequence[str]) -> pd.DataFrame:
        rows = self.query(sql, params)
        if not rows:
            return pd.DataFrame({c: [] for c in columns})
        return pd.DataFrame.from_records(rows, columns=list(columns))

    def ensure_table(self, schema: TableSchema, table: str) -> None:
        """Create ``table`` with ``schema`` once per client (idempotent on the server too)."""
        validate_table_name(table)
        if table in self._created:
            return
        self.query(schema.create_sql(table))
        self._created.add(table)

    # -- ILP over HTTP ----------------------------------------------------------------------
    def write_frame(self, table: str, frame: pd.DataFrame, *, symbols: Sequence[str], at: str = "ts") -> None:
        """Write ``frame`` in bulk; ``symbols`` are sent as SYMBOL columns (categoricals)."""
        if frame.empty:
            return
        validate_table_name(table)
        try:
            with Sender.from_conf(self.connection.ilp_conf()) as sender:
                sender.dataframe(frame, table_name=table, symbols=list(symbols), at=at)
        except Exception as exc:  # the client raises its own IngressError family
            raise StorageError(
                f"QuestDB rejected a write of {len(frame)} rows to {table!r}: {_first_line(exc)}"
            ) from None

    # -- WAL visibility ---------------------------------------------------------------------
    def wait_visible(self, table: str, *, timeout_s: float | None = None) -> None:
        """Block until every WAL transaction committed to ``table`` so far is applied."""
        validate_table_name(table)
        deadline = time.monotonic() + (timeout_s or self.visibility_timeout_s)
        target: int | None = None
        delay = 0.002
        while True:
            rows = self.query(
                "SELECT writerTxn, sequencerTxn, suspended FROM wal_tables() WHERE name = %s", (table,)
            )
            if not rows:
                return  # not a WAL table, or not created yet: nothing pending
            writer, sequencer, suspended = rows[0]
            if suspended:
                raise StorageError(
                    f"QuestDB suspended WAL apply for {table!r}; see the server log, then "
                    f"ALTER TABLE {table} RESUME WAL"
                )
            target = sequencer if target is None else target
            if writer >= target:
                return
            if time.monotonic() > deadline:
                raise StorageError(
                    f"QuestDB has not applied WAL for {table!r} within "
                    f"{timeout_s or self.visibility_timeout_s:.0f} s (writer {writer} < {target})"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _close_pg(self) -> None:
        if self._pg is not None:
            try:
                self._pg.close()
            except Exception:
                pass
            self._pg = None

    def close(self) -> None:
        with self._lock:
            self._close_pg()

    def __repr__(self) -> str:
        return f"QuestDBClient({self.connection!s})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
