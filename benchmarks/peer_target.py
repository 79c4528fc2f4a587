"""Target 9: this project against freqtrade, the most used ccxt backfiller, on issue 15's six workloads.

Both sides run as whole processes against the same emulator, unthrottled, and are timed from the
fork to the exit (``benchmarks.peak_rss``, which also reads each process's peak RSS):

- **freqtrade** ``download-data --timerange A-B --timeframes 1m --pairs BTC/USDT`` (``--dl-trades``
  for trades) from its own virtualenv (``benchmarks.peer_freqtrade``), storing feather files;
- **ours, library**: ``CcxtQuestDBProvider.from_config(...)`` and one ``ensure_range``
  (``benchmarks.peer_child --path library``);
- **ours, through Dagster**: one run materializing the 1m ingest asset for the days' partitions
  (``benchmarks.peer_child --path dagster``), for the four candle workloads, and for the months'
  partitions (the grain docs/dagster.md gives deep history) of the cold 365 days;
- **Dagster alone** (information): the same run of an asset with the same partitions and checks
  that does nothing (``--path dagster-floor``, this project not imported): what Dagster's own part
  costs, so the least a Dagster ratio could be, and what this project adds to it.

The workloads, each in a fresh store per round (freqtrade: a fresh data directory; ours: a fresh
table prefix), from 2022-01-01: cold 92 days; the same command again (warm rerun); 93 days (one
more day); 92 days over a store missing day 46 (a deleted day in the middle); one day of trades
(bursts of trades sharing a millisecond); cold 365 days. After every run the stored
rows are compared with the emulator's ground truth on both sides: ours must be exact (else the
target fails); freqtrade's rows in the range, past it and missing are reported as found. Every
figure is ours/freqtrade of the median wall time (limit 0.8); peak RSS ratios are shown for
information.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from benchmarks import peer_freqtrade as ft
from benchmarks.child_args import service_args
from benchmarks.harness import REPO_ROOT, Bench, log, median, target
from ccxt_questdb_assets.emulator.market import SyntheticMarket
from ccxt_questdb_assets.testing.candles import stored_candles, truth_candles

SYMBOL = "BTC/USDT"
NODE = "ohlcv:binance:BTC/USDT:1m"
DAY = 86_400_000
FIRST = datetime(2022, 1, 1, tzinfo=UTC)
S = int(FIRST.timestamp() * 1000)
DELETED = S + 46 * DAY  # 2022-02-16, the middle of the 92 days
LIMIT = 0.8


@dataclass(frozen=True)
class Work:
    key: str
    title: str
    end_ms: int
    trades: bool = False
    dagster: str | None = "day"  # the Dagster path's partition grain (None: not measured)

    @property
    def timerange(self) -> str:
        end = FIRST + timedelta(milliseconds=self.end_ms - S)
        return f"{FIRST:%Y%m%d}-{end:%Y%m%d}"


COLD = Work("cold", "cold 92 days of 1m", S + 92 * DAY)
WARM = Work("warm", "warm rerun (92 days stored)", S + 92 * DAY)
MORE = Work("more", "one more day (93 days, 92 stored)", S + 93 * DAY)
HOLE = Work("hole", "a deleted day in the middle (92 days, day 46 missing)", S + 92 * DAY)
TRADES = Work("trades", "1 day of trades (same-ms bursts)", S + DAY, trades=True, dagster=None)
YEAR = Work("year", "cold 365 days of 1m", S + 365 * DAY, dagster="month")  # Dagster: 12 month partitions
WORKS = (COLD, WARM, MORE, HOLE, TRADES, YEAR)
SIDES = ("freqtrade", "library", "dagster", "floor")
"""``floor``: Dagster alone, the Dagster path's run doing nothing (``peer_child --path dagster-floor``)."""


@dataclass
class Sample:
    seconds: float
    rss_mib: float
    requests: Counter
    check: dict[str, Any] | None  # None: a run storing nothing (the floor)
    startup: float  # from the fork to the start of the download/backfill: interpreter, imports, config, markets
    child: dict[str, Any] = field(default_factory=dict)

    @property
    def work(self) -> float:
        return self.seconds - self.startup


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Both sides start from compiled bytecode, as an installed program does (a warm-up writes ours).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _launch(cmd: list[str], logfile: Path) -> dict[str, Any]:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.peak_rss", "--log", str(logfile), "--", *cmd],
        cwd=REPO_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"launcher failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        tail = logfile.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{Path(cmd[0]).name} exited {result['rc']}: {tail}")
    return result


def freqtrade_work_start(logfile: Path) -> float:
    """When freqtrade began downloading: the epoch time of its "About to download" log line."""
    for line in logfile.read_text(errors="replace").splitlines():
        if "About to download" in line:
            stamp = time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")  # logged in local time
            return time.mktime(stamp) + int(line[20:23]) / 1000
    raise RuntimeError(f"no 'About to download' line in {logfile}")


def compare_candles(ts: np.ndarray, values: np.ndarray, truth: np.ndarray, start: int, end: int) -> dict[str, int]:
    """Rows in [start, end) against the truth, rows outside it, missing and wrong rows."""
    inside = (ts >= start) & (ts < end)
    got = dict(zip(ts[inside].tolist(), map(tuple, values[inside].tolist()), strict=True))
    want = dict(zip(truth[:, 0].astype(np.int64).tolist(), map(tuple, truth[:, 1:6].tolist()), strict=True))
    return {
        "in_range": int(inside.sum()),
        "expected": len(want),
        "missing": sum(1 for t in want if t not in got),
        "wrong": sum(1 for t, row in got.items() if t in want and want[t] != row),
        "unexpected": sum(1 for t in got if t not in want),
        "before": int((ts < start).sum()),
        "after": int((ts >= end).sum()),
        "duplicates": int(len(ts) - len(np.unique(ts))),
    }


def compare_trades(rows: list[tuple[int, int, float, float, str]], truth: list[Any], start: int, end: int) -> dict:
    """Trades (id, ts ms, price, amount, side) against the truth."""
    inside = [r for r in rows if start <= r[1] < end]
    got = {r[0]: r for r in inside}
    want = {t.id: (t.id, t.timestamp, t.price, t.amount, t.side) for t in truth}
    return {
        "in_range": len(inside),
        "expected": len(want),
        "missing": sum(1 for i in want if i not in got),
        "wrong": sum(1 for i, r in got.items() if i in want and want[i] != r),
        "unexpected": sum(1 for i in got if i not in want),
        "before": sum(1 for r in rows if r[1] < start),
        "after": sum(1 for r in rows if r[1] >= end),
        "duplicates": len(rows) - len({r[0] for r in rows}),
    }


def exact(check: dict[str, int]) -> bool:
    return check["in_range"] == check["expected"] and not any(
        check[k] for k in ("missing", "wrong", "unexpected", "before", "after", "duplicates")
    )


def describe(check: dict[str, int]) -> str:
    if exact(check):
        return f"exact ({check['expected']:,})"
    parts = [f"{check['in_range']:,} of {check['expected']:,} in range"]
    for key, word in (
        ("missing", "missing"),
        ("wrong", "wrong"),
        ("after", "past the range"),
        ("before", "before it"),
        ("duplicates", "duplicated"),
    ):
        if check[key]:
            parts.append(f"{check[key]:,} {word}")
    return ", ".join(parts)


class Peer:
    """One invocation's state: the freqtrade install, a scratch directory, the samples."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.exe = ft.ensure_freqtrade()
        self.tmp = Path(tempfile.mkdtemp(prefix="ccxt-bench-peer-"))
        self.config = ft.write_config(self.tmp / "freqtrade.json", bench.emulator.base_url)
        self.samples: dict[tuple[str, str], list[Sample]] = {}
        self._n = 0
        self.truth: dict[int, np.ndarray] = {}
        # The emulator's ground truth (the same synthetic market the server serves).
        self.emulator = SimpleNamespace(market=SyntheticMarket())

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _log(self) -> Path:
        self._n += 1
        return self.tmp / f"run{self._n}.log"

    def _requests(self) -> Counter:
        return Counter(r["path"] for r in self.bench.emulator.control.requests())

    def _truth(self, end: int) -> np.ndarray:
        if end not in self.truth:
            self.truth[end] = truth_candles(self.emulator, SYMBOL, S, end)
        return self.truth[end]

    # -- the sides
    def freqtrade(self, work: Work, datadir: Path) -> Sample:
        cmd = ft.download_command(self.exe, self.config, datadir, work.timerange, trades=work.trades)
        self.bench.emulator.control.clear_requests()
        logfile = self._log()
        run = _launch(cmd, logfile)
        startup = freqtrade_work_start(logfile) - run["started_at"]
        requests = self._requests()
        if work.trades:
            frame = ft.read_trades(datadir)
            rows = list(
                zip(
                    frame["id"].astype("int64").tolist(),
                    frame["timestamp"].astype("int64").tolist(),
                    frame["price"].astype(float).tolist(),
                    frame["amount"].astype(float).tolist(),
                    frame["side"].astype(str).tolist(),
                    strict=True,
                )
            )
            check = compare_trades(rows, self.emulator.market.trades("BTCUSDT", S, work.end_ms), S, work.end_ms)
        else:
            ts, values = ft.read_candles(datadir)
            check = compare_candles(ts, values, self._truth(work.end_ms), S, work.end_ms)
        return Sample(run["seconds"], run["max_rss_mib"], requests, check, startup)

    def ours(self, work: Work, path: str, prefix: str) -> Sample:
        conn = self.bench.connection
        grain = ["--grain", work.dagster] if path.startswith("dagster") and work.dagster else []
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.peer_child",
            "--path",
            path,
            "--mode",
            "trades" if work.trades else "ohlcv",
            "--start-ms",
            str(S),
            "--end-ms",
            str(work.end_ms),
            *grain,
            *service_args(self.bench.emulator.base_url, conn, prefix),
        ]
        self.bench.emulator.control.clear_requests()
        logfile = self._log()
        run = _launch(cmd, logfile)
        requests = self._requests()
        child = json.loads(logfile.read_text().strip().splitlines()[-1])
        startup = child["work_started_at"] - run["started_at"]
        if path == "dagster-floor":
            return Sample(run["seconds"], run["max_rss_mib"], requests, None, startup, child)
        if work.trades:
            table = f"{prefix}_trades"
            got = self.bench.client.query(
                f'SELECT cast(ts AS long), trade_id, price, amount, side FROM "{table}" ORDER BY ts, trade_id'
            )
            rows = [(int(i), int(t) // 1000, float(p), float(a), str(s)) for t, i, p, a, s in got]
            check = compare_trades(rows, self.emulator.market.trades("BTCUSDT", S, work.end_ms), S, work.end_ms)
        else:
            frame = stored_candles(self.bench, f"{prefix}_ohlcv", SYMBOL, S - 400 * DAY, work.end_ms + 400 * DAY)
            ts = frame["ts"].dt.as_unit("ms").astype("int64").to_numpy()
            values = frame[["open", "high", "low", "close", "volume"]].to_numpy(dtype=float)
            check = compare_candles(ts, values, self._truth(work.end_ms), S, work.end_ms)
        if not exact(check):
            raise AssertionError(f"ours ({path}), {work.title}: {describe(check)}")
        return Sample(run["seconds"], run["max_rss_mib"], requests, check, startup, child)

    def setup_without_day(self, prefix: str) -> None:
        """A store of the 92 days but day 46 (rows and coverage), as two library backfills."""
        from ccxt_questdb_assets import CcxtQuestDBProvider

        conn = self.bench.connection
        provider = CcxtQuestDBProvider.from_config(
            {
                "exchange": "binance",
                "symbols": [SYMBOL],
                "timeframe": "1m",
                "questdb": {
                    "host": conn.host,
                    "port": conn.port,
                    "http_port": conn.http_port,
                    "table_prefix": prefix,
                },
                "base_url": self.bench.emulator.base_url,
                "rate_limiter": {"scope": "local", "max_concurrency": 1, "min_interval_s": 0.001},
            }
        )
        try:
            provider.ensure_range_sync(S / 1000, DELETED / 1000, node_id=NODE)
            provider.ensure_range_sync((DELETED + DAY) / 1000, HOLE.end_ms / 1000, node_id=NODE)
        finally:
            provider.close_sync()

    def add(self, work: Work, side: str, sample: Sample) -> None:
        self.samples.setdefault((work.key, side), []).append(sample)
        log(
            f"peer: {work.title}: {side} {sample.seconds:.2f} s ({sample.startup:.2f} startup + "
            f"{sample.work:.2f} work), peak RSS {sample.rss_mib:.0f} MiB, "
            f"{sum(sample.requests.values())} requests, "
            f"{describe(sample.check) if sample.check else 'nothing stored (Dagster alone)'}"
        )

    # -- one round: every workload on every side, each side on its own fresh stores
    def round(self, i: int) -> None:
        order = SIDES if i % 2 == 0 else tuple(reversed(SIDES))
        d = {name: self.tmp / f"r{i}-{name}" for name in ("chain", "hole", "trades", "year")}
        prefix = {
            (side, name): self.bench.table_prefix(f"peer{i}{side[0]}{name}")
            for side in ("library", "dagster")
            for name in ("chain", "hole", "trades", "year")
        }

        def run(work: Work, store: str) -> None:
            for side in order:
                if side == "freqtrade":
                    self.add(work, side, self.freqtrade(work, d[store]))
                elif side == "library" or (side == "dagster" and work.dagster):
                    self.add(work, side, self.ours(work, side, prefix[(side, store)]))
                elif side == "floor" and work.dagster:
                    self.add(work, side, self.ours(work, "dagster-floor", prefix[("dagster", store)]))

        run(COLD, "chain")
        shutil.copytree(d["chain"], d["hole"])  # freqtrade's cold 92 days, for the deleted day
        run(WARM, "chain")
        run(MORE, "chain")
        removed = ft.delete_day(d["hole"], DELETED)
        assert removed == 1440, removed
        for side in ("library", "dagster"):
            self.setup_without_day(prefix[(side, "hole")])
        run(HOLE, "hole")
        run(TRADES, "trades")
        run(YEAR, "year")

    def warm_up(self) -> None:
        """One discarded day on every side: bytecode written, files and connections warm. And every
        bar of the workloads asked from the emulator once, so that it answers each side from the
        rows it keeps (``emulator.rendered_pages``), not the first side to ask from new work."""
        one = Work("warmup", "warm-up", S + DAY)
        self.freqtrade(one, self.tmp / "warmup")
        for side in ("library", "dagster", "dagster-floor"):
            self.ours(one, side, self.bench.table_prefix(f"peerw{side[0]}"))
        pages = _ask_every_bar(self.bench.emulator.base_url, S, YEAR.end_ms)
        log(f"peer: the emulator wrote the rows of {pages} pages of 1m bars before the rounds")


def _ask_every_bar(base_url: str, start_ms: int, end_ms: int) -> int:
    """Page through the 1m klines of ``[start_ms, end_ms)`` once (1,000 bars a request); pages asked."""
    import urllib.request

    since, pages = start_ms, 0
    while since < end_ms:
        query = f"symbol=BTCUSDT&interval=1m&startTime={since}&endTime={end_ms - 1}&limit=1000"
        with urllib.request.urlopen(f"{base_url}/api/v3/klines?{query}", timeout=60) as answer:
            rows = json.loads(answer.read())
        pages += 1
        if not rows:
            break
        since = int(rows[-1][0]) + 60_000
    return pages


@target(
    "peer",
    number=9,
    title="freqtrade vs this project (library and Dagster), whole processes, issue 15's six workloads",
    needs=("questdb", "emulator"),
)
def peer_target(bench: Bench) -> None:
    runs = bench.runs(1, 3)
    peer = Peer(bench)
    try:
        log(f"peer: freqtrade {ft.VERSION} at {peer.exe}; {runs} round(s) of the six workloads")
        peer.warm_up()
        for i in range(runs):
            peer.round(i)
    finally:
        peer.close()
    _record(bench, peer.samples, runs)


def _record_floor(
    bench: Bench, work: Work, ours: list[Sample], theirs: list[Sample], floor: list[Sample], runs: int
) -> None:
    """What Dagster alone costs for the Dagster path's run (information): against freqtrade, the
    least the path's ratio could be; ours against it, what this project adds to Dagster's part."""
    grain = f"{work.dagster} partitions"
    for figure, value, baseline in (
        (f"{work.title}: Dagster alone ({grain}, nothing stored)/freqtrade", floor, theirs),
        (f"{work.title}: ours through Dagster/Dagster alone ({grain})", ours, floor),
    ):
        _record_seconds(
            bench,
            "9 peer (dagster)",
            figure,
            value,
            baseline,
            limit=None,
            runs=runs,
            note=f"Dagster alone: startup {_med(floor, 'startup'):.2f} + run {_med(floor, 'work'):.2f} s, "
            f"peak RSS {_med(floor, 'rss_mib'):.0f} MiB",
        )


def _record_seconds(
    bench: Bench,
    name: str,
    figure: str,
    ours: list[Sample],
    baseline: list[Sample],
    *,
    limit: float | None,
    runs: int,
    note: str,
    samples: dict[str, list[float]] | None = None,
) -> None:
    """Record the median whole-process seconds of ``ours`` against those of ``baseline``."""
    bench.record(
        name,
        figure,
        value=_med(ours, "seconds"),
        baseline=_med(baseline, "seconds"),
        unit="s",
        op="<=",
        limit=limit,
        runs=runs,
        samples=samples,
        note=note,
    )


def _med(samples: list[Sample], attr: str) -> float:
    return median([getattr(s, attr) for s in samples])


def _requests(samples: list[Sample]) -> str:
    counts = samples[-1].requests
    short = {"/api/v3/klines": "klines", "/api/v3/aggTrades": "aggTrades"}
    parts = [f"{n} {short.get(p, p)}" for p, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    return ", ".join(parts) or "no request"


def _record(bench: Bench, samples: dict[tuple[str, str], list[Sample]], runs: int) -> None:
    rss: dict[str, list[tuple[float, str]]] = {"library": [], "dagster": []}
    for work in WORKS:
        theirs = samples.get((work.key, "freqtrade"))
        if not theirs:
            continue
        for path in ("library", "dagster"):
            ours = samples.get((work.key, path))
            if not ours:
                continue
            ratio_rss = _med(ours, "rss_mib") / _med(theirs, "rss_mib")
            rss[path].append((ratio_rss, work.title))
            _record_seconds(
                bench,
                f"9 peer ({path})",
                f"{work.title}{' (month partitions)' if path == 'dagster' and work.dagster == 'month' else ''}: "
                "ours/freqtrade, whole processes",
                ours,
                theirs,
                limit=LIMIT,
                runs=runs,
                samples={
                    "ours": [s.seconds for s in ours],
                    "freqtrade": [s.seconds for s in theirs],
                    "ours_startup": [s.startup for s in ours],
                    "freqtrade_startup": [s.startup for s in theirs],
                    "ours_rss_mib": [s.rss_mib for s in ours],
                    "freqtrade_rss_mib": [s.rss_mib for s in theirs],
                },
                note=f"startup + work: ours {_med(ours, 'startup'):.2f} + {_med(ours, 'work'):.2f} s, freqtrade "
                f"{_med(theirs, 'startup'):.2f} + {_med(theirs, 'work'):.2f} s. Ours {describe(ours[-1].check)}, "
                f"{_requests(ours)}, peak RSS {_med(ours, 'rss_mib'):.0f} MiB; freqtrade {describe(theirs[-1].check)}, "
                f"{_requests(theirs)}, peak RSS {_med(theirs, 'rss_mib'):.0f} MiB",
            )
            floor = samples.get((work.key, "floor"))
            if path == "dagster" and floor:
                _record_floor(bench, work, ours, theirs, floor, runs)
    for path, ratios in rss.items():
        if not ratios:
            continue
        worst = max(ratios)
        bench.record(
            f"9 peer ({path})",
            "peak RSS ours/freqtrade, the workload where it is highest",
            value=worst[0],
            baseline=1.0,
            unit="x",
            op="<=",
            limit=None,
            runs=runs,
            note=f"{worst[1]}; over the workloads {min(r for r, _ in ratios):.2f} to {worst[0]:.2f} "
            f"(median {statistics.median(r for r, _ in ratios):.2f})",
        )
