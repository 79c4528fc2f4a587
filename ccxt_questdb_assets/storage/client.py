"""One QuestDB client for reads (PG wire, binary), bulk writes (ILP over HTTP), bulk reads
(parquet over HTTP ``/exp``) and WAL visibility.

Writes go through ``questdb.Sender.dataframe`` (native serialisation) on a sender kept open
between writes; every write ends with a flush, so its rows are committed when it returns. A WAL
commit is acknowledged before it is visible, so every writer that must read its own data, or
record coverage for it, calls ``wait_visible`` first.

Large reads come back faster as a parquet file from ``/exp`` than row by row over PG wire
(about 3x for a million candles, see docs/benchmarks.md): ``query_frame(..., export_sql=...)``.
``/exp`` takes no bound parameters, so callers put only values of a closed alphabet into that
SQL (see ``storage.series``).
"""

from __future__ import annotations

import base64
import errno
import http.client
import ipaddress
import logging
import signal
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import urlencode

import psycopg
from questdb import QuestDBError, QuestDBErrorCode, Sender

from ccxt_questdb_assets.core.errors import StorageError
from ccxt_questdb_assets.storage.connection import QuestDBConnection
from ccxt_questdb_assets.storage.identifiers import validate_table_name
from ccxt_questdb_assets.storage.schema import TableSchema

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Idle senders / HTTP connections kept per client (one is in use per concurrent writer/reader).
MAX_IDLE = 4
#: Frames of at least this many rows are written in parallel slices (``write_parallelism``).
PARALLEL_MIN_ROWS = 100_000
#: Interrupted sends (EINTR) in a row a write may retry, each in halves down to INTERRUPTED_MIN_ROWS.
WRITE_INTERRUPTIONS = 12
INTERRUPTED_MIN_ROWS = 100
#: The signals a write holds: all a thread can hold but those asking the process to stop (Ctrl-C,
#: a run's termination), which should interrupt a write (Python's handler runs right after it fails).
HELD_SIGNALS = (
    signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP, signal.SIGINT, signal.SIGTERM}
    if hasattr(signal, "pthread_sigmask")
    else set()
)


class _Pool(Generic[T]):
    """Open connections of one kind, each lent to one thread at a time and reused afterwards.

    A connection whose use raised is closed, not returned, so the next lease opens a fresh one
    (after a server restart, a broken keep-alive socket is simply replaced). ``close`` closes the
    idle ones at once and the lent ones when they come back; the pool stays usable.
    """

    def __init__(self, make: Callable[[], T], close: Callable[[T, bool], None], max_idle: int = MAX_IDLE) -> None:
        self._make, self._close, self._max_idle = make, close, max_idle
        self._idle: list[T] = []
        self._lock = threading.Lock()
        self._generation = 0  # bumped by close(): what was lent before is not taken back
        self.opened = 0  # connections made over the pool's life (tests, benchmarks)

    @contextmanager
    def lease(self) -> Iterator[T]:
        with self._lock:
            item = self._idle.pop() if self._idle else None
            generation = self._generation
        if item is None:
            item = self._make()
            with self._lock:
                self.opened += 1
        try:
            yield item
        except BaseException:
            self._close(item, False)
            raise
        with self._lock:
            if generation == self._generation and len(self._idle) < self._max_idle:
                self._idle.append(item)
                return
        self._close(item, True)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._generation += 1
        for item in idle:
            self._close(item, True)


class QuestDBClient:
    """Thread-safe access to one QuestDB server. Cheap to share: one PG connection (queries are
    serialised), and a few ILP senders and HTTP connections reused across writes and reads."""

    def __init__(
        self,
        connection: QuestDBConnection,
        *,
        visibility_timeout_s: float = 60.0,
        export: bool = True,
        export_timeout_s: float = 300.0,
        write_parallelism: int = 2,
    ) -> None:
        self.connection = connection
        self.write_parallelism = max(1, int(write_parallelism))
        self.visibility_timeout_s = visibility_timeout_s
        self.export_timeout_s = export_timeout_s
        #: Bulk reads through ``/exp`` parquet; switched off for good once it fails where PG wire works.
        self.export_enabled = export
        self._lock = threading.RLock()
        self._pg: psycopg.Connection | None = None
        self._created: set[str] = set()
        self._senders: _Pool[Sender] = _Pool(self._new_sender, _close_sender)
        self._http: _Pool[http.client.HTTPConnection] = _Pool(self._new_http, lambda c, _ok: c.close())
        # On loopback, compressing the export costs more than it saves.
        self._export_codec = "UNCOMPRESSED" if _is_loopback(connection.http_host or connection.host) else "LZ4_RAW"
        auth = f"{connection.user}:{connection.password}".encode()
        self._auth_header = "Basic " + base64.b64encode(auth).decode()

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

    def query_frame(
        self, sql: str, params: Sequence[Any], columns: Sequence[str], *, export_sql: str | None = None
    ) -> pd.DataFrame:
        """Rows of ``sql`` as a frame with ``columns``.

        ``export_sql``, the same query with its parameters written in as literals, lets a large
        result come as parquet from ``/exp`` instead (columnar, no Python object per value). If
        the server refuses the export (a read-only replica, a version without parquet export)
        but answers over PG wire, this client stops trying ``/exp``.
        """
        import pandas as pd

        refusal = None
        if export_sql is not None and self.export_enabled:
            frame, refusal = self._export(export_sql)
            if frame is not None:
                if frame.shape[1] != len(columns):
                    raise StorageError(f"QuestDB /exp returned {list(frame.columns)}, expected {list(columns)}")
                frame.columns = list(columns)
                return frame
        rows = self.query(sql, params)
        if refusal is not None:
            self.disable_export(refusal)
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

    # -- parquet over HTTP (/exp) -------------------------------------------------------------
    def _new_http(self) -> http.client.HTTPConnection:
        c = self.connection
        host = c.http_host or c.host
        if c.http_tls:
            ctx = ssl.create_default_context()
            if not c.tls_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection(host, c.http_port, timeout=self.export_timeout_s, context=ctx)
        return http.client.HTTPConnection(host, c.http_port, timeout=self.export_timeout_s)

    def _export(self, sql: str) -> tuple[pd.DataFrame | None, str | None]:
        """``(frame, None)``; ``(None, why)`` when the server refused the export; ``(None, None)``
        when it could not be reached (the PG wire fallback then tells whether the server is up)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = "/exp?" + urlencode(
            {"query": sql, "fmt": "parquet", "compression_codec": self._export_codec, "statistics_enabled": "false"}
        )
        for attempt in (1, 2):
            try:
                with self._http.lease() as conn:
                    conn.request("GET", path, headers={"Authorization": self._auth_header})
                    resp = conn.getresponse()
                    body = resp.read()
            except (http.client.HTTPException, OSError) as exc:
                # A kept-alive socket the server closed (restart, idle timeout): one fresh try.
                if attempt == 2 or isinstance(exc, TimeoutError):
                    log.debug("QuestDB /exp failed: %s: %s", type(exc).__name__, exc)
                    return None, None
                continue
            if resp.status != 200:
                return None, f"/exp answered HTTP {resp.status}: {body[:200].decode(errors='replace')}"
            try:
                return pq.read_table(pa.BufferReader(body)).to_pandas(), None
            except pa.ArrowException as exc:
                return None, f"/exp answered something that is not parquet: {exc}"
        raise AssertionError("unreachable")

    def disable_export(self, why: str) -> None:
        if self.export_enabled:
            log.warning("QuestDB at %s: bulk reads fall back to PG wire (%s)", self.connection, why)
        self.export_enabled = False

    # -- ILP over HTTP ----------------------------------------------------------------------
    def _new_sender(self) -> Sender:
        sender = Sender.from_conf(self.connection.ilp_conf())
        sender.establish()
        return sender

    def write_frame(self, table: str, frame: pd.DataFrame, *, symbols: Sequence[str], at: str = "ts") -> None:
        """Write ``frame`` in bulk and flush: when this returns, the rows are committed (not yet
        necessarily visible: see ``wait_visible``). ``symbols`` are sent as SYMBOL columns.

        A frame of ``PARALLEL_MIN_ROWS`` or more is cut in ``write_parallelism`` slices sent at
        once on as many senders: one slice is serialised while the server ingests another
        (about 1.5x faster for a million candles on two cores, docs/benchmarks.md).
        """
        if frame.empty:
            return
        validate_table_name(table)
        n = len(frame)
        ways = self.write_parallelism if n >= PARALLEL_MIN_ROWS else 1
        if ways <= 1:
            self._send(table, frame, list(symbols), at)
            return
        step = -(-n // ways)
        slices = [frame.iloc[i : i + step] for i in range(0, n, step)]
        with ThreadPoolExecutor(len(slices), thread_name_prefix="questdb-ilp") as pool:
            for done in [pool.submit(self._send, table, part, list(symbols), at) for part in slices]:
                done.result()  # the first failure, after every slice has finished

    def _send(self, table: str, frame: pd.DataFrame, symbols: list[str], at: str) -> None:
        """Write ``frame`` on a kept sender, again on a fresh one where the failure may pass.

        Rows sent before a failure are upserted again, which DEDUP makes harmless. A kept-alive
        connection the server dropped is tried once more. A write interrupted by a pause of the
        process (EINTR: a profiler stopping it to sample, a debugger) goes again in halves, which
        fit between the pauses, for as long as a part gets through at least every
        :data:`WRITE_INTERRUPTIONS` tries."""
        parts, reconnected, interruptions = [frame], False, 0
        while parts:
            part = parts.pop()
            try:
                with _signals_deferred(), self._senders.lease() as sender:
                    sender.dataframe(part, table_name=table, symbols=symbols, at=at)
                    sender.flush()
                interruptions = 0
            except Exception as exc:  # the client raises its own QuestDBError family
                if _is_socket_error(exc) and not reconnected:
                    reconnected = True
                    parts.append(part)
                    continue
                if _is_interrupted(exc) and interruptions < WRITE_INTERRUPTIONS:
                    interruptions += 1
                    parts.extend(_halves(part))
                    continue
                what = "could not be reached for" if _is_socket_error(exc) or _is_interrupted(exc) else "rejected"
                raise StorageError(
                    f"QuestDB {what} a write of {len(frame)} rows to {table!r}: {_first_line(exc)}"
                ) from None

    # -- WAL visibility ---------------------------------------------------------------------
    def wait_visible(self, table: str, *, timeout_s: float | None = None) -> None:
        """Block until every WAL transaction committed to ``table`` so far is applied."""
        validate_table_name(table)
        deadline = time.monotonic() + (timeout_s or self.visibility_timeout_s)
        target: int | None = None
        delay = 0.002
        while True:
            rows = self.query("SELECT writerTxn, sequencerTxn, suspended FROM wal_tables() WHERE name = %s", (table,))
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
            delay = min(delay * 1.5, 0.02)

    def _close_pg(self) -> None:
        if self._pg is not None:
            try:
                self._pg.close()
            except Exception:
                pass
            self._pg = None

    def close(self) -> None:
        """Close every connection. The client stays usable: the next call reconnects."""
        with self._lock:
            self._close_pg()
        self._senders.close()
        self._http.close()

    def __enter__(self) -> QuestDBClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"QuestDBClient({self.connection!s})"


def _close_sender(sender: Sender, healthy: bool) -> None:
    try:
        sender.close(flush=healthy)
    except Exception:
        pass


def _is_socket_error(exc: BaseException) -> bool:
    return isinstance(exc, QuestDBError) and getattr(exc, "code", None) == QuestDBErrorCode.SocketError


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold the calling thread's :data:`HELD_SIGNALS` while the ILP client works, then deliver them.

    The client does not retry a system call a signal interrupts (EINTR): a signal the host process
    handles for its own purposes (a child's exit, a profiler's timer, any handler it installed)
    arriving in the middle of a write would fail it. Held, a signal goes to another thread or waits
    the few milliseconds of the write; its Python handler then runs as it would have."""
    if not hasattr(signal, "pthread_sigmask"):  # not a POSIX platform
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _halves(frame: pd.DataFrame) -> list[pd.DataFrame]:
    if len(frame) <= INTERRUPTED_MIN_ROWS:
        return [frame]
    middle = len(frame) // 2
    return [frame.iloc[:middle], frame.iloc[middle:]]


def _is_interrupted(exc: BaseException) -> bool:
    """The client's system call was interrupted by a signal (EINTR): it reports the OS error in its
    message, whichever step it was at (the protocol probe of a new sender, a flush)."""
    return isinstance(exc, QuestDBError) and f"(os error {errno.EINTR})" in str(exc)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
