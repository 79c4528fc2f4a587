"""Targets 1 (write), 2 (read) and 3 (coverage lookup): the storage layer against raw clients.

Writes and reads are measured twice: through ``QuestDBBackend`` (the library) and through the
Dagster ``QuestDBIOManager`` (``handle_output`` of a DataFrame, ``load_input`` of a range of
daily partitions: validation, upsert, WAL wait and the materialization's metadata included).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from questdb import Sender

from benchmarks.dagster_io import IOManagerBench
from benchmarks.harness import Bench, alternate, log, median, target, timed
from ccxt_questdb_assets.core.coverage import CoverageSpan
from ccxt_questdb_assets.core.node_ids import NodeId
from ccxt_questdb_assets.history.backend import QuestDBBackend
from ccxt_questdb_assets.storage.schema import CANDLES, TableNames

MIN = 60_000
NODE = NodeId.parse("ohlcv:binance:BTC/USDT:1m")
START_MS = 1_514_764_800_000  # 2018-01-01 UTC
VALUES = ("open", "high", "low", "close", "volume")


def candles(n: int, start_ms: int = START_MS, seed: int = 7) -> pd.DataFrame:
    """``n`` 1m candles as the library takes them: ``ts`` in epoch ms, OHLCV, ``closed``."""
    rng = np.random.default_rng(seed)
    o = 30_000 + rng.random(n) * 100
    c = 30_000 + rng.random(n) * 100
    return pd.DataFrame(
        {
            "ts": start_ms + np.arange(n, dtype=np.int64) * MIN,
            "open": o,
            "high": np.maximum(o, c) + 1.0,
            "low": np.minimum(o, c) - 1.0,
            "close": c,
            "volume": rng.exponential(10.0, n),
            "closed": np.ones(n, dtype=bool),
        }
    )


def ilp_frame(rows: pd.DataFrame, node: NodeId = NODE) -> pd.DataFrame:
    """The same rows as a user of ``Sender.dataframe`` would shape them (UTC datetimes, categoricals)."""
    n = len(rows)
    frame = pd.DataFrame({"ts": pd.to_datetime(rows["ts"].to_numpy(), unit="ms", utc=True)})
    for column, value in (("exchange", node.exchange), ("symbol", node.symbol), ("timeframe", node.timeframe.name)):
        frame[column] = pd.Categorical([value] * n)
    for column in (*VALUES, "closed"):
        frame[column] = rows[column].to_numpy()
    return frame


def backend(bench: Bench, name: str) -> QuestDBBackend:
    b = QuestDBBackend(bench.client, TableNames.for_data_table(bench.table_prefix(name)), mode="ohlcv")
    b.series.ensure()
    b.coverage_store.ensure()
    return b


# -- 1 ---------------------------------------------------------------------------------------


@target("write", number=1, title="bulk write vs raw Sender.dataframe and vs one INSERT per row")
def write_target(bench: Bench) -> None:
    n = 1_000_000
    runs = bench.runs(3, 5)
    rows = candles(n)
    raw = ilp_frame(rows)
    conf = bench.connection.ilp_conf()
    io = IOManagerBench(bench.connection)

    def library() -> float:
        b = backend(bench, "w")
        try:
            # QuestDBBackend.write: SeriesStore.write (frame + ILP) and the wait for WAL apply.
            return timed(lambda: bench.run(b.write(NODE, rows, wait=True)))
        finally:
            bench.drop(b.tables.data)

    def sender() -> float:
        table = bench.table_prefix("w")
        bench.client.ensure_table(CANDLES, table)
        try:

            def work() -> None:
                with Sender.from_conf(conf) as s:
                    s.dataframe(raw, table_name=table, symbols=["exchange", "symbol", "timeframe"], at="ts")
                    s.flush()
                bench.client.wait_visible(table)

            return timed(work)
        finally:
            bench.drop(table)

    def io_manager() -> float:
        table = bench.table_prefix("wio")
        try:
            metadata: dict = {}
            context = io.output_context(table, rows)  # Dagster's part, before the IO manager runs
            took = timed(lambda: metadata.update(io.handle_output(context, rows)))
            days = metadata["partitions"].values()  # each day's own figures
            assert sum(d["dagster/row_count"] for d in days) == sum(d["rows_written"] for d in days) == n, metadata
            return took
        finally:
            bench.drop(table)

    log(f"write: {n:,} candles, {runs} runs each (library, IO manager and raw Sender.dataframe, all until WAL-visible)")
    library()  # warm-up (server JIT, page cache, first connections); not counted
    io_manager()
    sender()
    t = alternate(runs, library=library, sender=sender, io_manager=io_manager)
    io.close()
    base = median(t["sender"])
    bench.record(
        "1 write",
        f"QuestDBBackend.write {n:,} candles vs raw Sender.dataframe",
        value=median(t["library"]),
        baseline=base,
        unit="s",
        op="<=",
        limit=1.25,
        runs=runs,
        samples={"library": t["library"], "sender": t["sender"]},
        note="both include the wait until WAL is applied",
    )
    bench.record(
        "1 write",
        f"QuestDBIOManager.handle_output {n:,} candles vs raw Sender.dataframe",
        value=median(t["io_manager"]),
        baseline=base,
        unit="s",
        op="<=",
        limit=1.25,
        runs=runs,
        samples={"io_manager": t["io_manager"], "sender": t["sender"]},
        note="a DataFrame output for 695 daily partitions of one symbol: validation, upsert, WAL wait and "
        "the materialization metadata (row count, first/last ts, preview)",
    )

    # One PG-wire INSERT per row with bound parameters, then the same wait for WAL apply; in
    # autocommit (each INSERT its own statement and commit, the target's baseline) and, for
    # information, all in one transaction (QuestDB then batches the commit).
    k = bench.size(5_000, 20_000)
    ins_runs = bench.runs(3, 3)
    few = rows.iloc[:k]
    records = [
        (int(ts) * 1000, NODE.exchange, NODE.symbol, NODE.timeframe.name, *vals, True)
        for ts, *vals in few[["ts", *VALUES]].itertuples(index=False)
    ]

    def inserts(autocommit: bool) -> float:
        table = bench.table_prefix("ins")
        bench.client.ensure_table(CANDLES, table)
        sql = (
            f'INSERT INTO "{table}" (ts, exchange, symbol, timeframe, open, high, low, close, volume, closed) '
            "VALUES (%s::timestamp, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        )
        try:
            with bench.connection.pg_connect(autocommit=autocommit) as pg:

                def work() -> None:
                    with pg.cursor() as cur:
                        for rec in records:
                            cur.execute(sql, rec)
                    if not autocommit:
                        pg.commit()
                    bench.client.wait_visible(table)

                return timed(work) / k
        finally:
            bench.drop(table)

    log(f"write: {k:,} single-row INSERTs, {ins_runs} runs in autocommit and in one transaction")
    ins = alternate(ins_runs, autocommit=lambda: inserts(True), transaction=lambda: inserts(False))
    per_row = [x / n for x in t["library"]]
    bench.record(
        "1 write",
        f"per row: bulk write vs one PG INSERT per row, autocommit ({k:,} rows)",
        value=median(per_row),
        baseline=median(ins["autocommit"]),
        unit="s/row",
        op=">=",
        limit=50,
        runs=ins_runs,
        higher_is_better=True,
        samples={"library": per_row, "insert": ins["autocommit"]},
        note="ratio = how many times faster per row",
    )
    per_row_io = [x / n for x in t["io_manager"]]
    bench.record(
        "1 write",
        "per row: IO manager write vs one PG INSERT per row, autocommit",
        value=median(per_row_io),
        baseline=median(ins["autocommit"]),
        unit="s/row",
        op=">=",
        limit=50,
        runs=ins_runs,
        higher_is_better=True,
        samples={"io_manager": per_row_io, "insert": ins["autocommit"]},
    )
    bench.record(
        "1 write",
        f"same, the {k:,} INSERTs in one transaction",
        value=median(per_row),
        baseline=median(ins["transaction"]),
        unit="s/row",
        op=">=",
        limit=None,
        runs=ins_runs,
        higher_is_better=True,
        samples={"library": per_row, "insert": ins["transaction"]},
    )


# -- 2 ---------------------------------------------------------------------------------------


@target("read", number=2, title="read_range vs a raw psycopg binary fetch into pandas")
def read_target(bench: Bench) -> None:
    n = 1_000_000
    runs = bench.runs(3, 5)
    b = backend(bench, "r")
    rows = candles(n)
    bench.run(b.write(NODE, rows, wait=True))
    other = NodeId.parse("ohlcv:binance:ETH/USDT:1m")  # a second series in the table: the filter must work
    bench.run(b.write(other, rows, wait=True))
    start, end = START_MS, START_MS + n * MIN
    table = b.tables.data
    pg = bench.connection.pg_connect(autocommit=True)
    io = IOManagerBench(bench.connection)

    def library(export: bool) -> float:
        bench.client.export_enabled = export
        frame = None

        def work() -> None:
            nonlocal frame
            frame = bench.run(b.read_range(start / 1000, end / 1000, node_id=str(NODE)))

        took = timed(work)
        bench.client.export_enabled = True
        assert frame is not None and len(frame) == n, len(frame) if frame is not None else None
        return took

    def psycopg_fetch() -> float:
        def work() -> None:
            with pg.cursor(binary=True) as cur:
                cur.execute(
                    f'SELECT ts, open, high, low, close, volume FROM "{table}" WHERE exchange = %s AND symbol = %s '
                    "AND timeframe = %s AND ts >= %s AND ts < %s ORDER BY ts",
                    (
                        NODE.exchange,
                        NODE.symbol,
                        NODE.timeframe.name,
                        pd.Timestamp(start, unit="ms").to_pydatetime(),
                        pd.Timestamp(end, unit="ms").to_pydatetime(),
                    ),
                )
                frame = pd.DataFrame(cur.fetchall(), columns=["ts", *VALUES])
            frame["ts"] = frame["ts"].dt.tz_localize("UTC")  # the library's output type
            assert len(frame) == n

        return timed(work)

    def io_manager() -> float:
        frame = None

        def work() -> None:
            nonlocal frame
            frame = io.load_input(table, start, end)

        took = timed(work)
        assert frame is not None and len(frame) == n and (frame["symbol"] == NODE.symbol).all()
        return took

    # First reads warm the server's page cache for all four.
    library(True)
    library(False)
    io_manager()
    psycopg_fetch()
    log(f"read: {n:,} candles, {runs} runs each (read_range, load_input, read_range on PG wire only, raw psycopg)")
    t = alternate(
        runs,
        library=lambda: library(True),
        psycopg=psycopg_fetch,
        io_manager=io_manager,
        pg_only=lambda: library(False),
    )
    pg.close()
    io.close()
    base = median(t["psycopg"])
    bench.record(
        "2 read",
        f"QuestDBBackend.read_range {n:,} candles vs psycopg binary fetch",
        value=median(t["library"]),
        baseline=base,
        unit="s",
        op="<=",
        limit=1.2,
        runs=runs,
        samples={"library": t["library"], "psycopg": t["psycopg"]},
        note="parquet over HTTP /exp (the library's path for large reads)",
    )
    bench.record(
        "2 read",
        f"QuestDBIOManager.load_input {n:,} candles vs psycopg binary fetch",
        value=median(t["io_manager"]),
        baseline=base,
        unit="s",
        op="<=",
        limit=1.2,
        runs=runs,
        samples={"io_manager": t["io_manager"], "psycopg": t["psycopg"]},
        note="695 daily partitions of one symbol as one range; the frame gains a symbol column",
    )
    bench.record(
        "2 read",
        "same, with /exp disabled (PG wire fallback)",
        value=median(t["pg_only"]),
        baseline=base,
        unit="s",
        op="<=",
        limit=1.2,
        runs=runs,
        samples={"pg_only": t["pg_only"], "psycopg": t["psycopg"]},
    )
    bench.drop(table, b.tables.coverage)


# -- 3 ---------------------------------------------------------------------------------------


def _fill(bench: Bench, b: QuestDBBackend, total: int, batch: int) -> None:
    """Store ``total`` candles in ``batch``-row ``Sender.dataframe`` writes; after each, record its
    coverage the way the backfill engine does (one run, extended in place)."""
    conf = bench.connection.ilp_conf()
    template = ilp_frame(candles(batch))
    offsets = template["ts"] - template["ts"].iloc[0]
    now = int(time.time() * 1000)
    with Sender.from_conf(conf) as sender:
        for first in range(0, total, batch):
            count = min(batch, total - first)
            frame = template.iloc[:count].copy()
            frame["ts"] = pd.Timestamp(START_MS + first * MIN, unit="ms", tz="UTC") + offsets.iloc[:count]
            sender.dataframe(frame, table_name=b.tables.data, symbols=["exchange", "symbol", "timeframe"], at="ts")
            sender.flush()
            b.client.wait_visible(b.tables.data)
            span = CoverageSpan(START_MS, START_MS + (first + count) * MIN, False, now)
            bench.run(b.record_coverage(NODE, [span]))
    bench.run(b.compact_coverage(NODE, now))


@target("coverage", number=3, title="coverage lookup with 10,000,000 vs 10,000 rows stored")
def coverage_target(bench: Bench) -> None:
    small_n, big_n = 10_000, 10_000_000
    runs = bench.runs(5, 7)
    lookups = bench.size(100, 200)
    small, big = backend(bench, "cs"), backend(bench, "cb")
    t0 = time.monotonic()
    _fill(bench, small, small_n, 1_000)  # 10 pages
    _fill(bench, big, big_n, 1_000_000)  # 10 batches
    count = bench.client.query(f'SELECT count() FROM "{big.tables.data}"')[0][0]
    assert count == big_n, count
    log(f"coverage: stored {small_n:,} and {big_n:,} rows in {time.monotonic() - t0:.0f} s")
    expected = [
        (START_MS // 1000, (START_MS + (small_n - 1) * MIN) // 1000),
        (START_MS // 1000, (START_MS + (big_n - 1) * MIN) // 1000),
    ]

    def lookup(b: QuestDBBackend, want: tuple[int, int]) -> float:
        def work() -> None:
            for _ in range(lookups):
                bars = bench.run(b.coverage(node_id=str(NODE)))
            assert bars == [want], bars

        return timed(work) / lookups

    lookup(small, expected[0])  # warm up
    lookup(big, expected[1])
    t = alternate(runs, small=lambda: lookup(small, expected[0]), big=lambda: lookup(big, expected[1]))
    rows = [bench.client.query(f'SELECT count() FROM "{b.tables.coverage}"')[0][0] for b in (small, big)]
    bench.record(
        "3 coverage",
        f"coverage lookup, {big_n:,} vs {small_n:,} rows stored",
        value=median(t["big"]),
        baseline=median(t["small"]),
        unit="s",
        op="<=",
        limit=2.0,
        runs=runs,
        samples=t,
        note=f"QuestDBBackend.coverage, median of {lookups} lookups a run; coverage rows {rows[0]} vs {rows[1]}",
    )
    bench.drop(small.tables.data, small.tables.coverage, big.tables.data, big.tables.coverage)
