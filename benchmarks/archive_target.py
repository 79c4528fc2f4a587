"""Target 10: four years of 1m candles from the emulated public archive, against a floor script and REST.

Subject: ``CcxtQuestDBProvider.from_config({..., "archive": {"base_url": <emulator>}})`` and one
``ensure_range`` of 2020-01-01 to 2024-01-01 for BTC/USDT into a fresh table (48 monthly files:
checksum, unzip, parse, the page checks, write, WAL wait and coverage), then compared row for row
with the emulator's ground truth.

Floor: the least a script does for the same rows: the same 48 zip files fetched with aiohttp at the
same concurrency (the archive source's ``prefetch``, 4), each unzipped and parsed by pyarrow, one
frame of all rows, one ``Sender.dataframe`` and a wait for WAL apply. Limit 1.2x.

For information, the same span through REST paging (no archive: 2,104 kline pages), once.

The emulator generates a file when it is first asked (CSV formatting in Python, about 0.2 s a month
of 1m klines) and keeps it in a bounded cache; a warm-up run of each side asks every file first, so
both sides measure the client, not the emulator's formatting.

Memory: peak RSS of an archive backfill of 365 days (12 monthly files) against 30 days (30 daily
files), each in a fresh process (``benchmarks.peak_rss`` + ``benchmarks.peer_child``). Limit 1.2x.
Once, for information, 4 years (48 monthly files) against the 365 days.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from benchmarks.child_args import service_args
from benchmarks.harness import REPO_ROOT, Bench, alternate, log, median, target
from ccxt_questdb_assets.emulator.market import SyntheticMarket
from ccxt_questdb_assets.storage.schema import CANDLES
from ccxt_questdb_assets.testing.candles import assert_candles_exact, stored_candles, truth_candles

SYMBOL, SYMBOL_ID = "BTC/USDT", "BTCUSDT"
NODE = "ohlcv:binance:BTC/USDT:1m"
FIRST, END = date(2020, 1, 1), date(2024, 1, 1)
CONCURRENCY = 4  # the archive source's default prefetch
OHLCV = ("open", "high", "low", "close", "volume")


def _ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


S, E = _ms(FIRST), _ms(END)
YEARS_4 = 1461  # 2022-01-01 to 2026-01-01, for the memory bound
MONTHS = [date(y, m, 1) for y in range(FIRST.year, END.year) for m in range(1, 13)]


def _provider(bench: Bench, prefix: str, *, archive: bool):
    from ccxt_questdb_assets import CcxtQuestDBProvider

    conn = bench.connection
    config = {
        "exchange": "binance",
        "symbols": [SYMBOL],
        "timeframe": "1m",
        "questdb": {"host": conn.host, "port": conn.port, "http_port": conn.http_port, "table_prefix": prefix},
        "base_url": bench.emulator.base_url,
        "rate_limiter": {"scope": "local", "max_concurrency": 1, "min_interval_s": 0.001},
    }
    if archive:
        config["archive"] = {"base_url": bench.emulator.base_url}
    return CcxtQuestDBProvider.from_config(config)


def _ours(bench: Bench, truth: np.ndarray, *, archive: bool = True) -> tuple[float, Counter]:
    """One backfill of the span into a fresh table; checked exact against the truth."""
    from ccxt_questdb_assets.exchange.client import clear_markets_cache

    prefix = bench.table_prefix("arc" if archive else "rest")
    clear_markets_cache()  # the markets load of a fresh process is part of it
    bench.emulator.control.clear_requests()
    t0 = time.perf_counter()
    provider = _provider(bench, prefix, archive=archive)
    try:
        report = provider.ensure_range_sync(S / 1000, E / 1000, node_id=NODE)
    finally:
        provider.close_sync()
    took = time.perf_counter() - t0
    counts = Counter(r["path"].split("/")[1] if r["path"].startswith("/data/") else r["path"] for r in
                     bench.emulator.control.requests())  # fmt: skip
    assert report.rows_written == len(truth), (report.rows_written, len(truth))
    assert_candles_exact(stored_candles(bench, f"{prefix}_ohlcv", SYMBOL, S, E), truth, "archive backfill")
    bench.drop(f"{prefix}_ohlcv", f"{prefix}_ohlcv_coverage")
    return took, counts


def _month_url(base: str, month: date) -> str:
    name = f"{SYMBOL_ID}-1m-{month:%Y-%m}.zip"
    return f"{base}/data/spot/monthly/klines/{SYMBOL_ID}/1m/{name}"


async def _fetch_all(urls: list[str]) -> list[bytes]:
    import aiohttp

    gate = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession() as session:

        async def one(url: str) -> bytes:
            async with gate, session.get(url) as response:
                response.raise_for_status()
                return await response.read()

        return await asyncio.gather(*(one(u) for u in urls))


def _parse(data: bytes) -> pa.Table:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        csv = archive.read(archive.namelist()[0])
    types = {"f0": pa.int64(), **{f"f{i}": pa.float64() for i in range(1, 6)}}
    return pa_csv.read_csv(
        io.BytesIO(csv),
        read_options=pa_csv.ReadOptions(autogenerate_column_names=True),
        convert_options=pa_csv.ConvertOptions(column_types=types, include_columns=list(types)),
    )


def _floor(bench: Bench, truth_rows: int) -> float:
    """The floor script into a fresh table; returns its seconds."""
    from questdb.ingress import Sender

    table = bench.table_prefix("arcfloor")
    bench.client.ensure_table(CANDLES, table)
    conf = bench.connection.ilp_conf()
    urls = [_month_url(bench.emulator.base_url, m) for m in MONTHS]
    t0 = time.perf_counter()
    files = asyncio.run(_fetch_all(urls))
    tables = pa.concat_tables([_parse(f) for f in files])
    n = tables.num_rows
    frame = pd.DataFrame({"ts": pd.to_datetime(tables.column("f0").to_numpy(), unit="ms", utc=True)})
    for column, value in (("exchange", "binance"), ("symbol", SYMBOL), ("timeframe", "1m")):
        frame[column] = pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[value])
    for i, column in enumerate(OHLCV, start=1):
        frame[column] = tables.column(f"f{i}").to_numpy()
    frame["closed"] = True
    with Sender.from_conf(conf) as sender:
        sender.dataframe(frame, table_name=table, symbols=["exchange", "symbol", "timeframe"], at="ts")
        sender.flush()
    bench.client.wait_visible(table)
    took = time.perf_counter() - t0
    stored = bench.client.query(f'SELECT count() FROM "{table}"')[0][0]
    assert n == truth_rows == stored, (n, truth_rows, stored)
    bench.drop(table)
    return took


def _memory_child(bench: Bench, days: int, logdir: Path) -> dict:
    """One archive backfill of ``days`` from 2022-01-01 in a fresh process: its peak RSS."""
    start = _ms(date(2022, 1, 1))
    cmd = [
        sys.executable, "-m", "benchmarks.peer_child", "--path", "library", "--start-ms", str(start),
        "--end-ms", str(start + days * 86_400_000), "--archive-url", bench.emulator.base_url,
        *service_args(bench.emulator.base_url, bench.connection, bench.table_prefix(f"arcmem{days}")),
    ]  # fmt: skip
    logfile = logdir / f"mem{days}-{time.monotonic_ns()}.log"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.peak_rss", "--log", str(logfile), "--", *cmd],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    run = json.loads(done.stdout.strip().splitlines()[-1])
    if run["rc"] != 0:
        raise RuntimeError(f"the {days}-day archive backfill failed: {logfile.read_text()[-2000:]}")
    child = json.loads(logfile.read_text().strip().splitlines()[-1])
    assert child["rows"] == days * 1440, child
    log(
        f"archive memory: {days} days: {child['rows']:,} rows in {run['seconds']:.1f} s, "
        f"peak RSS {run['max_rss_mib']:.0f} MiB"
    )
    return run


@target(
    "archive",
    number=10,
    title="4 years of 1m candles from the emulated archive vs a floor script (and REST); memory 365 vs 30 days",
    needs=("questdb", "emulator"),
)
def archive_target(bench: Bench) -> None:
    runs = bench.runs(2, 5)
    t0 = time.perf_counter()
    truth = truth_candles(SimpleNamespace(market=SyntheticMarket()), SYMBOL, S, E)
    log(f"archive: {len(truth):,} candles of ground truth in {time.perf_counter() - t0:.1f} s; warm-up of both sides")
    requests: list[Counter] = []

    def ours() -> float:
        took, counts = _ours(bench, truth)
        requests.append(counts)
        return took

    def floor() -> float:
        return _floor(bench, len(truth))

    first = ours()  # warm-up: the emulator generates and caches each file once; not counted
    floor()
    log(f"archive: warm-up done (ours {first:.1f} s, files generated by the emulator)")
    t = alternate(runs, ours=ours, floor=floor)
    counts = requests[-1]
    bench.record(
        "10 archive",
        f"4 years ({len(truth):,} 1m candles, 48 monthly files) via the archive vs floor script",
        value=median(t["ours"]),
        baseline=median(t["floor"]),
        unit="s",
        op="<=",
        limit=1.2,
        runs=runs,
        samples=t,
        note=f"exact against the ground truth every run; ours asked {counts['data']} archive paths "
        f"(zips and .CHECKSUM) and {sum(v for k, v in counts.items() if k != 'data')} REST requests; "
        f"floor: the 48 zips, {CONCURRENCY} at a time, pyarrow, one Sender.dataframe",
    )
    log("archive: the same span through REST paging (once, for information)")
    rest, rest_counts = _ours(bench, truth, archive=False)
    bench.record(
        "10 archive",
        "same span via REST paging vs via the archive (how many times faster the archive is)",
        value=median(t["ours"]),
        baseline=rest,
        unit="s",
        op=">=",
        limit=None,
        runs=1,
        higher_is_better=True,
        note=f"REST: {rest_counts['/api/v3/klines']} kline pages in {rest:.1f} s",
    )
    mem_runs = bench.runs(1, 3)
    short: list[dict] = []
    long: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="ccxt-bench-archive-") as logdir:
        for i in range(mem_runs):
            for days in (30, 365) if i % 2 == 0 else (365, 30):
                (short if days == 30 else long).append(_memory_child(bench, days, Path(logdir)))
        years = _memory_child(bench, YEARS_4, Path(logdir))  # once: where the bound lies
    a, b = [r["max_rss_mib"] for r in short], [r["max_rss_mib"] for r in long]
    bench.record(
        "10 archive",
        "peak RSS, archive backfill of 365 days (12 monthly files) vs 30 days (30 daily files)",
        value=median(b),
        baseline=median(a),
        unit="MiB",
        op="<=",
        limit=1.2,
        runs=mem_runs,
        samples={"365d": b, "30d": a},
        note=f"fresh processes; 365 days took {median([r['seconds'] for r in long]):.1f} s, "
        f"30 days {median([r['seconds'] for r in short]):.1f} s (whole processes)",
    )
    bench.record(
        "10 archive",
        "peak RSS, archive backfill of 4 years (48 monthly files) vs 365 days",
        value=years["max_rss_mib"],
        baseline=median(b),
        unit="MiB",
        op="<=",
        limit=None,
        runs=1,
        note=f"2022-01-01 to 2026-01-01 (spot files in microseconds from 2025) in {years['seconds']:.1f} s",
    )
