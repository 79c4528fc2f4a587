"""100,000 OHLCV rows through the real server: ILP over HTTP in, PG wire out, DEDUP on rewrite."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pandas as pd
import pytest
from questdb import Sender

from ccxt_questdb_assets.testing.fixtures_services import wait_for_wal

N_ROWS = 100_000
KEY_COLS = ["ts", "exchange", "symbol", "timeframe"]
VALUE_COLS = ["open", "high", "low", "close", "volume"]


def _candles() -> pd.DataFrame:
    """2 exchanges x 5 symbols x 10,000 one-minute bars spanning two months, random prices."""
    rng = np.random.default_rng(20240101)
    exchanges, symbols, per_series = (
        ["binance", "kraken"],
        ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "ADA/USDT"],
        10_000,
    )
    ts = pd.date_range("2024-01-31 00:00", periods=per_series, freq="min", tz="UTC")  # crosses into February
    frames = []
    for ex in exchanges:
        for sym in symbols:
            base = rng.uniform(0.1, 60_000)
            open_ = base * (1 + rng.normal(0, 0.01, per_series))
            close = base * (1 + rng.normal(0, 0.01, per_series))
            frames.append(
                pd.DataFrame(
                    {
                        "ts": ts,
                        "exchange": ex,
                        "symbol": sym,
                        "timeframe": "1m",
                        "open": open_,
                        "high": np.maximum(open_, close) * (1 + rng.uniform(0, 0.005, per_series)),
                        "low": np.minimum(open_, close) * (1 - rng.uniform(0, 0.005, per_series)),
                        "close": close,
                        "volume": rng.exponential(100.0, per_series),
                    }
                )
            )
    df = pd.concat(frames, ignore_index=True)
    assert len(df) == N_ROWS
    return df


def _send(conf: str, table: str, df: pd.DataFrame) -> None:
    frame = df.copy()
    for col in ("exchange", "symbol", "timeframe"):
        frame[col] = frame[col].astype("category")  # SYMBOL columns
    with Sender.from_conf(conf) as sender:
        sender.dataframe(frame, table_name=table, symbols=["exchange", "symbol", "timeframe"], at="ts")
        sender.flush()


def _read(conn, table: str) -> pd.DataFrame:
    cols = KEY_COLS + VALUE_COLS
    with conn.cursor(binary=True) as cur:
        cur.execute(f'SELECT {", ".join(cols)} FROM "{table}" ORDER BY ts, exchange, symbol, timeframe')
        rows = cur.fetchall()
    df = pd.DataFrame(rows, columns=cols)
    # QuestDB TIMESTAMP is UTC without a zone on the wire.
    df["ts"] = pd.to_datetime(df["ts"]).dt.tz_localize("UTC")
    for col in ("exchange", "symbol", "timeframe"):
        df[col] = df[col].astype("str")
    return df


def _expected(df: pd.DataFrame) -> pd.DataFrame:
    out = df.sort_values(KEY_COLS, kind="stable").reset_index(drop=True)
    for col in ("exchange", "symbol", "timeframe"):
        out[col] = out[col].astype("str")
    return out


@pytest.mark.slow
def test_ohlcv_roundtrip_is_exact_and_rewrite_is_deduplicated(questdb, questdb_conn) -> None:
    table = f"ohlcv_roundtrip_{uuid.uuid4().hex[:8]}"
    questdb_conn.execute(
        f"""
        CREATE TABLE IF NOT EXISTS "{table}" (
            ts TIMESTAMP,
            exchange SYMBOL,
            symbol SYMBOL,
            timeframe SYMBOL,
            open DOUBLE,
            high DOUBLE,
            low DOUBLE,
            close DOUBLE,
            volume DOUBLE
        ) TIMESTAMP(ts) PARTITION BY MONTH WAL
        DEDUP UPSERT KEYS(ts, exchange, symbol, timeframe)
        """
    )
    try:
        df = _candles()
        expected = _expected(df)

        t0 = time.monotonic()
        _send(questdb.ilp_conf, table, df)
        wait_for_wal(questdb_conn, table, timeout=60)
        t1 = time.monotonic()
        got = _read(questdb_conn, table)
        t2 = time.monotonic()
        print(f"write+apply {N_ROWS} rows: {t1 - t0:.2f} s; read back: {t2 - t1:.2f} s")
        pd.testing.assert_frame_equal(got, expected, check_exact=True, check_dtype=False)
        assert got["ts"].dt.tz is not None and str(got["ts"].dtype).startswith("datetime64")

        partitions = questdb_conn.execute(f"SELECT name FROM table_partitions('{table}') ORDER BY name").fetchall()
        assert [p[0] for p in partitions] == ["2024-01", "2024-02"]

        # Same rows again (an at-least-once retry): DEDUP keeps exactly one row per key.
        _send(questdb.ilp_conf, table, df)
        wait_for_wal(questdb_conn, table, timeout=60)
        assert questdb_conn.execute(f'SELECT count() FROM "{table}"').fetchone() == (N_ROWS,)
        pd.testing.assert_frame_equal(_read(questdb_conn, table), expected, check_exact=True, check_dtype=False)
    finally:
        questdb_conn.execute(f'DROP TABLE IF EXISTS "{table}"')
