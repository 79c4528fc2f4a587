"""Target 4: a 90-day backfill of 1m candles through Dagster vs a plain ccxt + ``Sender`` script.

Subject: one run materializing the project's ``binance/ohlcv/ohlcv_1m`` ingest asset for 90 daily
partitions of one symbol (a partition-range run, as the daily grain's backfill policy makes of a 90-day
backfill), in an ephemeral Dagster instance (in-memory run and event storage), against the
unthrottled emulator, into a fresh table. It includes what such a run does: the run and step
machinery, resources, the market check, the coverage engine (fetch, write, WAL wait and coverage
page after page), the IO manager's WAL wait and metadata, and the 90 planned and 90 materialization
events. The instance's own storage is left out on purpose: with sqlite on a shared disk each
event costs 10 to 100 ms of fsync (docs/benchmarks.md), a property of the deployment's Dagster
storage, not of this project.

Floor: the least a script can do for the same rows: one async ccxt exchange (URLs pointed at
the emulator, ccxt's throttle off), ``load_markets``, ``fetch_ohlcv(since, limit=1000)`` page
after page, then one ``Sender.dataframe`` of all rows and a wait for WAL apply.

Both sides load the markets once and ask exactly ceil(129,600 / 1000) = 130 kline pages, which is
checked on the emulator's request log for every run.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from questdb import Sender

from benchmarks.harness import Bench, alternate, log, median, target
from ccxt_questdb_assets.storage.schema import CANDLES

KLINES = "/api/v3/klines"
SYMBOL = "BTC/USDT"
FIRST_DAY = date(2022, 1, 1)
DAYS = 90
PAGE = 1000
ROWS = DAYS * 1440
START_MS = int(datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=UTC).timestamp() * 1000)
END_MS = START_MS + DAYS * 86_400_000
OHLCV = ("open", "high", "low", "close", "volume")


def _request_counts(bench: Bench) -> Counter:
    return Counter(r["path"] for r in bench.emulator.control.requests())


def _check_requests(counts: Counter, what: str) -> None:
    """Exactly the kline pages the rows need, plus one markets load."""
    pages = math.ceil(ROWS / PAGE)
    others = {p: n for p, n in counts.items() if p != KLINES}
    assert counts[KLINES] == pages, f"{what}: {counts[KLINES]} kline requests, expected {pages}"
    assert sum(others.values()) == 1, f"{what}: besides klines {others}, expected one markets load"


class DagsterSide:
    """The ingest asset, its resources and an on-disk instance, built once (a code location load)."""

    def __init__(self, bench: Bench, *, on_disk: bool = False) -> None:
        from dagster import DagsterInstance

        self.bench = bench
        self.home = tempfile.mkdtemp(prefix="ccxt-bench-dagster-")
        if on_disk:  # sqlite run and event storage, as a local DAGSTER_HOME has
            Path(self.home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
            self.instance = DagsterInstance.from_config(self.home)
        else:
            self.instance = DagsterInstance.ephemeral(tempdir=self.home)
        self.instance.add_dynamic_partitions("binance_symbols", [SYMBOL])

    def _asset_and_resources(self, prefix: str) -> tuple[Any, dict[str, Any]]:
        from ccxt_questdb_assets.defs.asset_keys import ohlcv_key
        from ccxt_questdb_assets.defs.build import build_resources
        from ccxt_questdb_assets.defs.ingest_assets import build_ingest_assets
        from ccxt_questdb_assets.defs.project_config import ProjectConfig

        conn = self.bench.connection
        project = ProjectConfig.from_mapping(
            {
                "start_date": "2021-01-01",
                "questdb": {"host": conn.host, "port": conn.port, "http_port": conn.http_port, "table_prefix": prefix},
                # Unthrottled: a limiter rate far above what the loop reaches keeps ccxt's own throttle off.
                "rate_limiter": {"scope": "local", "max_concurrency": 1, "min_interval_s": 0.001},
                "exchanges": {
                    "binance": {"base_url": self.bench.emulator.base_url, "symbols": [SYMBOL], "timeframes": ["1m"]}
                },
            },
            source="benchmark",
        )
        asset = next(a for a in build_ingest_assets(project) if a.key == ohlcv_key("binance", "1m"))
        return asset, build_resources(project)

    def run(self) -> tuple[float, dict[str, Any], Counter]:
        """One partition-range run into a fresh table; returns (seconds, metadata, requests)."""
        from dagster import materialize
        from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

        from ccxt_questdb_assets.exchange.client import clear_markets_cache

        prefix = self.bench.table_prefix("dg")
        asset, resources = self._asset_and_resources(prefix)
        last_day = FIRST_DAY + timedelta(days=DAYS - 1)
        tags = {
            ASSET_PARTITION_RANGE_START_TAG: f"{FIRST_DAY}|{SYMBOL}",
            ASSET_PARTITION_RANGE_END_TAG: f"{last_day}|{SYMBOL}",
        }
        clear_markets_cache()  # each run loads the markets once, as a fresh run process would
        self.bench.emulator.control.clear_requests()
        t0 = time.perf_counter()
        result = materialize([asset], instance=self.instance, resources=resources, tags=tags)
        took = time.perf_counter() - t0
        counts = _request_counts(self.bench)
        assert result.success
        events = result.asset_materializations_for_node(asset.node_def.name)
        assert len(events) == DAYS, f"{len(events)} partitions materialized, expected {DAYS}"
        days = [{k: getattr(v, "value", v) for k, v in e.metadata.items()} for e in events]
        for md in days:  # each partition's own figures: one day of candles, fully covered
            assert md["rows_written"] == md["dagster/row_count"] == ROWS // DAYS and md["coverage_after"] == 1.0, md
        md = {k: sum(day[k] for day in days) for k in ("rows_written", "exchange_requests")}
        return took, md, counts

    def close(self) -> None:
        import shutil

        self.instance.dispose()
        shutil.rmtree(self.home, ignore_errors=True)


async def _floor_fetch(base_url: str) -> list[list[float]]:
    from ccxt_questdb_assets.exchange.client import build_exchange

    exchange = build_exchange("binance", base_url=base_url, enable_rate_limit=False)
    try:
        await exchange.load_markets()
        rows: list[list[float]] = []
        since = START_MS
        while since < END_MS:
            page = await exchange.fetch_ohlcv(SYMBOL, "1m", since=since, limit=PAGE, params={"until": END_MS - 1})
            if not page:
                break
            rows.extend(page)
            since = int(page[-1][0]) + 60_000
        return rows
    finally:
        await exchange.close()


def floor_run(bench: Bench) -> tuple[float, Counter]:
    """The floor script into a fresh table; returns (seconds, requests)."""
    table = bench.table_prefix("dgf")
    bench.client.ensure_table(CANDLES, table)
    conf = bench.connection.ilp_conf()
    bench.emulator.control.clear_requests()
    t0 = time.perf_counter()
    raw = np.asarray(bench.run(_floor_fetch(bench.emulator.base_url)), dtype=np.float64)
    n = len(raw)
    frame = pd.DataFrame({"ts": pd.to_datetime(raw[:, 0].astype(np.int64), unit="ms", utc=True)})
    for column, value in (("exchange", "binance"), ("symbol", SYMBOL), ("timeframe", "1m")):
        frame[column] = pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[value])
    for i, column in enumerate(OHLCV, start=1):
        frame[column] = raw[:, i]
    frame["closed"] = True
    with Sender.from_conf(conf) as sender:
        sender.dataframe(frame, table_name=table, symbols=["exchange", "symbol", "timeframe"], at="ts")
        sender.flush()
    bench.client.wait_visible(table)
    took = time.perf_counter() - t0
    counts = _request_counts(bench)
    stored = bench.client.query(f'SELECT count() FROM "{table}"')[0][0]
    assert n == ROWS and stored == ROWS, (n, stored)
    bench.drop(table)
    return took, counts


@target(
    "dagster",
    number=4,
    title="90 days of 1m candles through a Dagster run vs a ccxt + Sender floor script",
    needs=("questdb", "emulator"),
)
def dagster_target(bench: Bench) -> None:
    runs = bench.runs(3, 5)
    side = DagsterSide(bench)
    requests: dict[str, list[Counter]] = {"dagster": [], "floor": []}
    metadata: list[dict[str, Any]] = []

    def dagster() -> float:
        took, md, counts = side.run()
        _check_requests(counts, "Dagster run")
        requests["dagster"].append(counts)
        metadata.append(md)
        return took

    def floor() -> float:
        took, counts = floor_run(bench)
        _check_requests(counts, "floor script")
        requests["floor"].append(counts)
        return took

    try:
        log(f"dagster: {DAYS} days ({ROWS:,} candles) of {SYMBOL}, {runs} runs each (Dagster run, floor script)")
        dagster()  # warm-up: imports, first connections, the server's first table; not counted
        floor()
        t = alternate(runs, dagster=dagster, floor=floor)
    finally:
        side.close()
    counts = requests["dagster"][-1]
    markets = ", ".join(f"{p} x{n}" for p, n in sorted(counts.items()) if p != KLINES)
    bench.record(
        "4 dagster",
        f"{DAYS}-day backfill ({ROWS:,} 1m candles) through Dagster vs floor script",
        value=median(t["dagster"]),
        baseline=median(t["floor"]),
        unit="s",
        op="<=",
        limit=1.5,
        runs=runs,
        samples=t,
        note=f"every run of both: {counts[KLINES]} kline requests (= ceil({ROWS:,} / {PAGE})) + "
        f"{markets}; Dagster run metadata: exchange_requests "
        f"{metadata[-1]['exchange_requests']}, rows_written {metadata[-1]['rows_written']:,}",
    )
