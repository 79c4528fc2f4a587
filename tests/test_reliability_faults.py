"""Reliability against a faulty exchange: every fault the emulator can inject, alone and mixed.

Through the real library (``CcxtQuestDBProvider`` -> ``ensure_range``), real ccxt against the
emulator and the real QuestDB, for candles and trades. Every run ends in one of two ways:

* exact data: the stored rows equal the emulator's ground truth, unique by their key;
* a typed error (a ``CcxtQuestDBError``), after which every covered span holds exactly the
  truth's rows (coverage never claims data that is not stored, nor a false empty span) and a
  rerun without faults completes exact.

Faults are placed at chosen request positions with the emulator's ``after`` (see
docs/emulator.md), so each one lands mid-backfill, never on the first page.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pytest
from test_history_backfill import AGG, KLINES, make_provider, utc_ms

from ccxt_questdb_assets import CcxtQuestDBProvider
from ccxt_questdb_assets.core.errors import CcxtQuestDBError, TransientExchangeError
from ccxt_questdb_assets.core.windows import TimeWindow
from ccxt_questdb_assets.testing.fixtures_services import wait_for_wal

SYMBOL = "BTC/USDT"
MAX_RETRIES = 3
TIMEOUT_MS = 1000


@dataclass(frozen=True)
class Series:
    """One series under test: its mode, node id, window, page size and the path its pages use."""

    mode: str
    node_id: str
    start_ms: int
    end_ms: int
    window_size: int
    path: str


# 1440 candles in pages of 200 (8 pages); 720 trades in pages of 100 (1 by time, then by id).
OHLCV = Series("ohlcv", f"ohlcv:binance:{SYMBOL}:1m", utc_ms(2024, 3, 5), utc_ms(2024, 3, 6), 200, KLINES)
TRADES = Series("trades", f"trades:binance:{SYMBOL}", utc_ms(2024, 3, 5, 10), utc_ms(2024, 3, 5, 12), 100, AGG)
SERIES = {"ohlcv": OHLCV, "trades": TRADES}
# Longer runs for the mix: 2880 candles (15 pages), 1440 trades (about 15 pages).
MIX_SERIES = {
    "ohlcv": replace(OHLCV, end_ms=utc_ms(2024, 3, 7)),
    "trades": replace(TRADES, end_ms=utc_ms(2024, 3, 5, 14)),
}


def series_provider(questdb, emulator, series: Series) -> CcxtQuestDBProvider:
    """A provider on a fresh table with short timeouts and fast retries."""
    return make_provider(
        questdb,
        emulator,
        mode=series.mode,
        symbols=(SYMBOL,),
        window_size=series.window_size,
        timeout_ms=TIMEOUT_MS,
        max_retries=MAX_RETRIES,
    )


def truth_frame(emulator, series: Series, start_ms: int, end_ms: int) -> pd.DataFrame:
    """The emulator's rows over [start, end): candles by ts, trades by (ts, id)."""
    sym = SYMBOL.replace("/", "")
    if series.mode == "ohlcv":
        rows = emulator.market.candles(sym, "1m", start_ms, end_ms)
        return pd.DataFrame([r[:6] for r in rows], columns=["ts", "open", "high", "low", "close", "volume"]).astype(
            {"ts": "int64"}
        )
    trades = emulator.market.trades(sym, start_ms, end_ms)
    frame = pd.DataFrame(
        [(t.timestamp, str(t.id), t.price, t.amount, t.side) for t in trades],
        columns=["ts", "trade_id", "price", "amount", "side"],
    )
    return frame.astype({"ts": "int64"}).sort_values(["ts", "trade_id"], kind="stable").reset_index(drop=True)


def stored_frame(conn, provider: CcxtQuestDBProvider) -> pd.DataFrame:
    """Every row of the provider's data table (none if the table was never created)."""
    table = provider.backend.tables.data
    if conn.execute("SELECT count() FROM tables() WHERE table_name = %s", (table,)).fetchone()[0] == 0:
        return pd.DataFrame(columns=["ts"])
    wait_for_wal(conn, table)
    if provider.config.mode == "ohlcv":
        sql = f"SELECT cast(ts AS long) / 1000, open, high, low, close, volume, closed FROM {table} ORDER BY ts"
        cols = ["ts", "open", "high", "low", "close", "volume", "closed"]
    else:
        sql = f"SELECT cast(ts AS long) / 1000, trade_id, price, amount, side FROM {table} ORDER BY ts, trade_id"
        cols = ["ts", "trade_id", "price", "amount", "side"]
    frame = pd.DataFrame(conn.execute(sql).fetchall(), columns=cols).astype({"ts": "int64"})
    if provider.config.mode == "trades":
        frame = frame.sort_values(["ts", "trade_id"], kind="stable").reset_index(drop=True)
    return frame


def covered_windows(conn, provider: CcxtQuestDBProvider, node_id: str) -> tuple[list[TimeWindow], list[TimeWindow]]:
    """(all covered windows, empty ones) as recorded in the coverage table."""
    table = provider.backend.tables.coverage
    if conn.execute("SELECT count() FROM tables() WHERE table_name = %s", (table,)).fetchone()[0]:
        wait_for_wal(conn, table)
    coverage = asyncio.run(provider.backend.load_coverage(provider.fetcher.node(node_id)))
    return coverage.covered(provider.fetcher.clock()), coverage.empty_windows()


def assert_same_rows(got: pd.DataFrame, want: pd.DataFrame, what: str) -> None:
    assert len(got) == len(want), f"{what}: {len(got)} rows stored, {len(want)} in the exchange's truth"
    np.testing.assert_array_equal(got["ts"].to_numpy(), want["ts"].to_numpy(), err_msg=what)
    for col in want.columns[1:]:
        if not pd.api.types.is_numeric_dtype(want[col]):
            assert got[col].astype(str).tolist() == want[col].astype(str).tolist(), f"{what}: column {col}"
        else:
            np.testing.assert_array_equal(
                got[col].to_numpy(dtype=float), want[col].to_numpy(dtype=float), err_msg=f"{what}: column {col}"
            )


def audit(conn, emulator, provider: CcxtQuestDBProvider, series: Series) -> tuple[pd.DataFrame, list[TimeWindow]]:
    """The invariants that hold after any run, failed or not: rows unique and true, every covered
    span holding exactly the truth's rows, no empty span where the exchange has data.
    Returns the stored rows and the covered windows."""
    stored = stored_frame(conn, provider)
    key = ["ts"] if series.mode == "ohlcv" else ["trade_id"]
    assert not stored.duplicated(subset=key).any(), f"{int(stored.duplicated(subset=key).sum())} duplicate rows"
    if len(stored):
        truth_all = truth_frame(emulator, series, int(stored["ts"].min()), int(stored["ts"].max()) + 60_000)
        merged = stored.merge(truth_all, on=key, how="left", suffixes=("", "_truth"), indicator=True)
        assert (merged["_merge"] == "both").all(), (
            f"stored rows the exchange does not have: {merged[merged['_merge'] != 'both'].head()}"
        )
        if series.mode == "ohlcv":
            assert stored["closed"].all(), "a bar of a past day is stored as not closed"
    covered, empties = covered_windows(conn, provider, series.node_id)
    for window in covered:
        want = truth_frame(emulator, series, window.start_ms, window.end_ms)
        got = stored[(stored["ts"] >= window.start_ms) & (stored["ts"] < window.end_ms)].reset_index(drop=True)
        assert_same_rows(got[want.columns], want, f"covered span {window}")
    for window in empties:
        assert truth_frame(emulator, series, window.start_ms, window.end_ms).empty, (
            f"span {window} is recorded empty but the exchange has data there"
        )
    return stored, covered


def assert_exact(conn, emulator, provider: CcxtQuestDBProvider, series: Series) -> int:
    """The whole window is covered and the table holds exactly the truth over it."""
    stored, covered = audit(conn, emulator, provider, series)
    window = TimeWindow(series.start_ms, series.end_ms)
    assert any(w.start_ms <= window.start_ms and window.end_ms <= w.end_ms for w in covered), (
        f"window {window} not covered: {[str(w) for w in covered]}"
    )
    want = truth_frame(emulator, series, series.start_ms, series.end_ms)
    assert_same_rows(stored[want.columns], want, "whole window")
    return len(stored)


def run(provider: CcxtQuestDBProvider, series: Series):
    return provider.ensure_range_sync(series.start_ms / 1000, series.end_ms / 1000, node_id=series.node_id)


def faults_seen(control, series: Series) -> list[str]:
    return [r["fault"] for r in control.requests(path=series.path) if r["fault"]]


# kind, count, extra inject arguments. drop_connection twice: aiohttp retries an idempotent
# request once by itself. delay beyond the client's timeout_ms. empty_page twice and three times:
# a repeat of the request no longer suffices, the probe from the window's end must catch it.
SINGLE_FAULTS = [
    ("429", 1, {"retry_after": 1}),
    ("418", 1, {"retry_after": 1}),
    ("500", 1, {}),
    ("502", 1, {}),
    ("503", 1, {}),
    ("504", 1, {}),
    ("delay", 1, {"delay_s": 3.0}),
    ("truncated_json", 1, {}),
    ("drop_connection", 2, {}),
    ("empty_page", 1, {}),
    ("empty_page", 2, {}),
    ("empty_page", 3, {}),
    ("duplicate_rows", 1, {}),
    ("out_of_order_rows", 1, {}),
]


@pytest.mark.parametrize("mode", ["ohlcv", "trades"])
@pytest.mark.parametrize("kind,count,extra", SINGLE_FAULTS, ids=[f"{k}x{c}" for k, c, _ in SINGLE_FAULTS])
def test_each_fault_alone_ends_exact(questdb, questdb_conn, emulator, emulator_control, mode, kind, count, extra):
    series = SERIES[mode]
    provider = series_provider(questdb, emulator, series)
    emulator_control.inject(kind, count=count, path=series.path, after=2, **extra)
    report = run(provider, series)
    rows = assert_exact(questdb_conn, emulator, provider, series)
    log = emulator_control.requests(path=series.path)
    assert [r["fault"] for r in log if r["fault"]] == [kind] * count, "the fault did not land where armed"
    assert emulator_control.faults() == []
    assert report.rows_written >= rows
    hit = next(i for i, r in enumerate(log) if r["fault"])
    gap_ms = log[hit + count]["time_ms"] - log[hit + count - 1]["time_ms"]
    if kind in ("429", "418"):  # the retry honoured Retry-After (by the emulator's clock)
        assert gap_ms >= 950, f"retried {gap_ms} ms after a {kind} with Retry-After: 1"
    if kind == "delay":  # the client gave up at its timeout instead of waiting out the delay
        assert gap_ms < extra["delay_s"] * 1000, f"retried {gap_ms} ms after a request delayed {extra['delay_s']} s"


@pytest.mark.parametrize("mode", ["ohlcv", "trades"])
@pytest.mark.parametrize("kind", ["500", "504", "empty_page"])
def test_a_fault_outlasting_the_retries_fails_typed_and_keeps_coverage_true(
    questdb, questdb_conn, emulator, emulator_control, mode, kind
):
    """More faults in a row than retries: a typed error; what is covered is stored; a rerun completes."""
    series = SERIES[mode]
    provider = series_provider(questdb, emulator, series)
    # An empty page is re-asked once and probed each round: 3 requests per round, MAX_RETRIES + 1 rounds.
    count = 3 * (MAX_RETRIES + 1) if kind == "empty_page" else MAX_RETRIES + 1
    emulator_control.inject(kind, count=count, path=series.path, after=3)
    with pytest.raises(TransientExchangeError, match="max_retries=3") as err:
        run(provider, series)
    assert "rerun" in str(err.value) or "attempts" in str(err.value)
    stored, covered = audit(questdb_conn, emulator, provider, series)
    covered_ms = sum(w.duration_ms for w in covered)
    assert 0 < covered_ms < series.end_ms - series.start_ms, "the failed run should have covered its first pages"
    assert len(stored) > 0
    assert emulator_control.faults() == []

    provider2 = CcxtQuestDBProvider(provider.config)  # as a fresh process would: same tables
    report = run(provider2, series)
    assert_exact(questdb_conn, emulator, provider2, series)
    assert report.covered_before_ms == covered_ms


# Fault kinds the mix draws from, with their inject arguments and count range.
MIX = [
    ("429", {"retry_after": 1}, 1),
    ("418", {"retry_after": 1}, 1),
    ("500", {}, 2),
    ("502", {}, 2),
    ("503", {}, 2),
    ("504", {}, 2),
    ("delay", {"delay_s": 1.5}, 1),
    ("truncated_json", {}, 2),
    ("drop_connection", {}, 3),
    ("empty_page", {}, 4),
    ("duplicate_rows", {}, 2),
    ("out_of_order_rows", {}, 2),
]
MIX_OUTCOMES: dict[str, int] = {}


@pytest.mark.parametrize("mode", ["ohlcv", "trades"])
@pytest.mark.parametrize("seed", [11, 23, 47])
def test_random_fault_mix_ends_exact_or_typed(questdb, questdb_conn, emulator, emulator_control, mode, seed):
    """Six faults drawn with a fixed seed, armed at distinct random positions after the first request."""
    series = MIX_SERIES[mode]
    rng = random.Random(f"{seed}-{mode}")
    provider = series_provider(questdb, emulator, series)
    armed = []
    for (kind, extra, most), after in zip(rng.sample(MIX, 6), sorted(rng.sample(range(1, 13), 6)), strict=True):
        count = rng.randint(1, most)
        emulator_control.inject(kind, count=count, path=series.path, after=after, **extra)
        armed.append(f"{kind}x{count}@{after}")
    try:
        run(provider, series)
        outcome = "exact"
    except CcxtQuestDBError as exc:
        outcome = type(exc).__name__
        audit(questdb_conn, emulator, provider, series)
        emulator_control.clear_faults()
        provider = CcxtQuestDBProvider(provider.config)
        run(provider, series)
    assert_exact(questdb_conn, emulator, provider, series)
    MIX_OUTCOMES[outcome] = MIX_OUTCOMES.get(outcome, 0) + 1
    print(f"\nseed {seed} {mode}: {', '.join(armed)} -> {outcome}; faults hit: {faults_seen(emulator_control, series)}")
