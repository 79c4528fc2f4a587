"""What a soak run is judged on: process resources sampled over time, and stored data against the
emulator's ground truth.

* :class:`ResourceSampler` reads ``VmRSS`` and the open file descriptors of this process from
  ``/proc/self`` every few seconds in a daemon thread.
* :func:`flatness` calls memory and descriptors flat when, after warm-up (the first quarter of the
  run, longer if the first tick takes longer), the median of the last third is within ``rss_ratio``
  of the first third's median (RSS) and at most ``fd_slack`` descriptors above it.
* :func:`check_series` compares every window coverage claims with the ground truth (candles value
  for value, trades id for id) and counts rows sharing a dedup key and closed candles still open.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import numpy as np

from ccxt_questdb_assets.core.node_ids import NodeId
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.emulator.market import SyntheticMarket
from ccxt_questdb_assets.storage.client import QuestDBClient
from ccxt_questdb_assets.storage.coverage_store import CoverageStore
from ccxt_questdb_assets.storage.identifiers import quote_ident
from ccxt_questdb_assets.storage.schema import CANDLES, TRADES
from ccxt_questdb_assets.storage.series import SeriesStore
from ccxt_questdb_assets.storage.series_kind import CANDLE_KIND, TRADE_KIND

__all__ = ["Flatness", "ResourceSampler", "SeriesCheck", "Sample", "check_series", "flatness", "read_self"]


@dataclass(frozen=True, slots=True)
class Sample:
    t_s: float  # seconds since the sampler started
    rss_kb: int
    fds: int


def read_self() -> tuple[int, int]:
    """``(VmRSS in kB, open file descriptors)`` of this process."""
    rss = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
                break
    return rss, len(os.listdir("/proc/self/fd"))


class ResourceSampler:
    """Samples this process every ``every_s`` seconds until stopped (a context manager)."""

    def __init__(self, every_s: float = 2.0) -> None:
        self.every_s = every_s
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soak-sampler", daemon=True)
        self._t0 = time.monotonic()

    def _loop(self) -> None:
        while True:
            rss, fds = read_self()
            self.samples.append(Sample(round(time.monotonic() - self._t0, 2), rss, fds))
            if self._stop.wait(self.every_s):
                return

    def elapsed_s(self) -> float:
        return time.monotonic() - self._t0

    def __enter__(self) -> ResourceSampler:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@dataclass(frozen=True)
class Flatness:
    rss_early_kb: float
    rss_late_kb: float
    fds_early: float
    fds_late: float
    rss_ratio: float
    fd_slack: int
    samples: int
    warmup_s: float = 0.0

    @property
    def rss_flat(self) -> bool:
        return self.rss_late_kb <= self.rss_ratio * self.rss_early_kb

    @property
    def fds_flat(self) -> bool:
        return self.fds_late <= self.fds_early + self.fd_slack

    @property
    def flat(self) -> bool:
        return self.samples >= 8 and self.rss_flat and self.fds_flat

    def describe(self) -> str:
        return (
            f"RSS median {self.rss_early_kb / 1024:.1f} MiB (after warm-up) -> {self.rss_late_kb / 1024:.1f} MiB "
            f"(at the end), limit x{self.rss_ratio:g}: {'flat' if self.rss_flat else 'GROWING'}; "
            f"fds {self.fds_early:g} -> {self.fds_late:g}, limit +{self.fd_slack}: "
            f"{'flat' if self.fds_flat else 'GROWING'} ({self.samples} samples, {self.warmup_s:g} s warm-up)"
        )


def flatness(
    samples: list[Sample], *, warmup_s: float | None = None, rss_ratio: float = 1.2, fd_slack: int = 8
) -> Flatness:
    """Medians of the first and the last third of the run after warm-up (default: its first quarter).

    With the default warm-up these thirds are the run's second and last quarters.
    """
    if not samples:
        return Flatness(0, 0, 0, 0, rss_ratio, fd_slack, 0)
    start, end = samples[0].t_s, samples[-1].t_s
    steady_from = max(start + (end - start) / 4, warmup_s if warmup_s is not None else start)
    third = (end - steady_from) / 3

    def median_of(lo: float, hi: float) -> tuple[float, float]:
        part = [s for s in samples if lo <= s.t_s <= hi] or [samples[-1]]
        return statistics.median(s.rss_kb for s in part), statistics.median(s.fds for s in part)

    rss_early, fds_early = median_of(steady_from, steady_from + third)
    rss_late, fds_late = median_of(end - third, end)
    return Flatness(
        rss_early_kb=rss_early,
        rss_late_kb=rss_late,
        fds_early=fds_early,
        fds_late=fds_late,
        rss_ratio=rss_ratio,
        fd_slack=fd_slack,
        samples=len(samples),
        warmup_s=round(steady_from - start, 1),
    )


@dataclass
class SeriesCheck:
    """One symbol's stored candles and trades against the ground truth."""

    symbol: str
    covered_candle_ms: int = 0
    covered_trade_ms: int = 0
    candles_compared: int = 0
    trades_compared: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return not self.problems


def check_series(
    client: QuestDBClient,
    market: SyntheticMarket,
    *,
    symbol: str,
    candle_table: str,
    trade_table: str | None,
    exchange: str = "binance",
    timeframe: str = "1m",
    now_ms: int | None = None,
) -> SeriesCheck:
    """Every covered window of ``symbol`` equals the ground truth; no duplicate, no early-closed bar."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    out = SeriesCheck(symbol)
    tf = Timeframe.parse(timeframe)
    node = NodeId("ohlcv", exchange, symbol, tf)
    store = SeriesStore(client, candle_table, CANDLE_KIND)
    for span in CoverageStore(client, f"{candle_table}_coverage").load(str(node)).spans:
        window = span.window
        out.covered_candle_ms += window.end_ms - window.start_ms
        got = store.read(node, window)
        want = np.array(market.candles(symbol, timeframe, window.start_ms, window.end_ms), dtype=float)
        want = want[:, :6].reshape(-1, 6)
        if span.empty:
            if len(want):
                out.problems.append(f"candles {window}: recorded empty, the exchange has {len(want)} bars")
            continue
        ts = got["ts"].dt.as_unit("ms").astype("int64").to_numpy()
        values = got[["open", "high", "low", "close", "volume"]].to_numpy()
        if (
            len(got) != len(want)
            or not np.array_equal(ts, want[:, 0].astype(np.int64))
            or not np.array_equal(values, want[:, 1:6])
        ):
            out.problems.append(f"candles {window}: {len(got)} stored rows differ from the {len(want)} expected")
        out.candles_compared += len(got)
    out.problems += _duplicates(client, candle_table, ("ts", "symbol", "timeframe"), symbol)
    early = client.query(
        f"SELECT count() FROM {quote_ident(candle_table)} WHERE symbol = %s AND closed AND ts > %s",
        (symbol, _us(now_ms - tf.ms)),
    )
    if early and early[0][0]:
        out.problems.append(f"candles: {early[0][0]} bars marked closed that were still open")
    if trade_table is not None:
        _check_trades(client, market, out, symbol, trade_table, exchange)
    return out


def _check_trades(
    client: QuestDBClient, market: SyntheticMarket, out: SeriesCheck, symbol: str, table: str, exchange: str
) -> None:
    node = NodeId("trades", exchange, symbol, None)
    store = SeriesStore(client, table, TRADE_KIND)
    for span in CoverageStore(client, f"{table}_coverage").load(str(node)).spans:
        window = span.window
        out.covered_trade_ms += window.end_ms - window.start_ms
        want = market.trades(symbol, window.start_ms, window.end_ms)
        if span.empty:
            if want:
                out.problems.append(f"trades {window}: recorded empty, the exchange has {len(want)} trades")
            continue
        got = store.read(node, window)
        same = (
            len(got) == len(want)
            and [str(t.id) for t in want] == [str(i) for i in got["trade_id"]]
            and np.array_equal(got["price"].to_numpy(), np.array([t.price for t in want], dtype=float))
            and np.array_equal(got["amount"].to_numpy(), np.array([t.amount for t in want], dtype=float))
        )
        if not same:
            out.problems.append(f"trades {window}: {len(got)} stored trades differ from the {len(want)} expected")
        out.trades_compared += len(got)
    out.problems += _duplicates(client, table, ("ts", "symbol", "trade_id"), symbol)


def _duplicates(client: QuestDBClient, table: str, keys: tuple[str, ...], symbol: str) -> list[str]:
    """Rows sharing a dedup key (the tables' DEDUP UPSERT KEYS should make this impossible)."""
    schema = CANDLES if "timeframe" in keys else TRADES
    client.ensure_table(schema, table)
    cols = ", ".join(keys)
    # The keys themselves, not count() over them: QuestDB 9.3.4 answers 1 for a count() over an empty
    # filtered GROUP BY subquery.
    rows = client.query(
        f"SELECT * FROM (SELECT {cols}, count() n FROM {quote_ident(table)} WHERE symbol = %s) WHERE n > 1 LIMIT 10",
        (symbol,),
    )
    return [f"{table}: keys ({cols}) stored more than once, e.g. {rows[0]}"] if rows else []


def _us(ms: int) -> Any:
    from datetime import datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC)
