"""Hostile input: property-based (hypothesis, derandomized) and through a real backfill.

Configs, node ids, timeframes, partition keys, table names and exchange answers either give a
typed error (a ``CcxtQuestDBError`` naming the problem) or clean values; never another
exception, never a secret in a message, never a partial write. Malformed pages served by the
emulator (its ``rows`` fault) go through real ccxt into a real backfill: the page is refused
whole and nothing of it is stored or covered.
"""

from __future__ import annotations

import math
import re
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_history_backfill import AGG, KLINES, utc_ms
from test_reliability_faults import SYMBOL, Series, audit, series_provider, truth_frame

from ccxt_questdb_assets import CcxtQuestDBProvider
from ccxt_questdb_assets.core.errors import CcxtQuestDBError, ConfigError, ExchangeDataError
from ccxt_questdb_assets.core.node_ids import NodeId, make_node_id
from ccxt_questdb_assets.core.timeframes import Timeframe, parse_duration_ms
from ccxt_questdb_assets.core.validation import candles_frame, trades_frame
from ccxt_questdb_assets.defs.partitions import slices_of, split_key
from ccxt_questdb_assets.history.config import QUESTDB_TABLE_KEYS, TOP_LEVEL_KEYS
from ccxt_questdb_assets.storage.connection import CONNECTION_KEYS
from ccxt_questdb_assets.storage.identifiers import validate_table_name
from ccxt_questdb_assets.storage.schema import TableNames

SECRET = "hunter2-s3cret"
HOSTILE = settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
INJECTIONS = [
    "x; DROP TABLE y",
    "t'--",
    'a"b',
    "crypto; --",
    "ümlaut",
    "日本",
    "a b",
    "",
    " ",
    "1abc",
    "x" * 101,
    "_" * 100,
    "t\x00",
    "t\n",
    "DROP",
    "select",
    "a-b",
    "a.b",
    "ohlcv`",
]

text_values = st.one_of(st.sampled_from(INJECTIONS), st.text(max_size=40))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    text_values,
)
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(text_values, scalars, max_size=2))


def raises_typed_or(fn, *args, **kwargs):
    """``fn``'s result, or None when it raised a typed error; any other exception fails the test."""
    try:
        return fn(*args, **kwargs)
    except CcxtQuestDBError as exc:
        assert SECRET not in str(exc), "a secret reached an error message"
        assert str(exc).strip(), "a typed error without a message"
        return None


# ---------------------------------------------------------------------------- configs

# every key from_config documents (so a new key is attacked too), and keys it must refuse
CONFIG_KEYS = [*TOP_LEVEL_KEYS, "password", "tabel", "__class__"]
QUESTDB_KEYS = [*sorted(CONNECTION_KEYS), *QUESTDB_TABLE_KEYS]


@HOSTILE
@given(
    top=st.dictionaries(st.sampled_from(CONFIG_KEYS), values, max_size=3),
    qdb=st.dictionaries(st.sampled_from(QUESTDB_KEYS), values, max_size=2),
)
def test_hostile_configs_give_config_errors_or_a_provider(top, qdb):
    cfg = {
        "exchange": "binance",
        "symbols": ["BTC/USDT"],
        "timeframe": "1m",
        "questdb": {"dsn": f"postgresql://admin:{SECRET}@127.0.0.1:1/qdb", **qdb},
        **top,
    }
    provider = raises_typed_or(CcxtQuestDBProvider.from_config, cfg, validate_markets=False)
    if provider is not None:
        for name in (provider.config.tables.data, provider.config.tables.coverage):
            assert TABLE_RE.match(name), name
        assert provider.config.mode in ("ohlcv", "trades")
        assert provider.config.backfill.window_size >= 1


def test_hostile_symbols_and_timeframes_are_refused_against_the_markets(emulator):
    """The markets check (real ccxt, the emulator's exchangeInfo) names the bad value."""
    for patch, bad in [
        ({"symbols": ["BTC/USDT; DROP TABLE x"]}, "DROP TABLE"),
        ({"symbols": ["ÄÖÜ/USDT"]}, "ÄÖÜ"),
        ({"timeframe": "1m; --"}, "1m; --"),
        ({"timeframe": "7m"}, "7m"),
        ({"symbols": ["x" * 500]}, "xxxx"),
    ]:
        cfg = {
            "exchange": "binance",
            "symbols": ["BTC/USDT"],
            "timeframe": "1m",
            "base_url": emulator.base_url,
            "rate_limiter": {"scope": "local"},
            **patch,
        }
        with pytest.raises(ConfigError, match=re.escape(bad)):
            CcxtQuestDBProvider.from_config(cfg)


# ---------------------------------------------------------------------------- ids, timeframes, keys


@HOSTILE
@given(
    exchange=text_values,
    symbol=text_values,
    timeframe=st.one_of(st.none(), text_values, scalars),
    mode=st.one_of(st.sampled_from(["ohlcv", "trades", "OHLCV", " trades "]), scalars),
)
def test_node_ids_round_trip_or_are_refused(exchange, symbol, timeframe, mode):
    node_id = raises_typed_or(make_node_id, exchange_id=exchange, symbol=symbol, timeframe=timeframe, mode=mode)
    if node_id is not None:
        parsed = NodeId.parse(node_id)
        assert str(parsed) == node_id
        assert (parsed.exchange, parsed.symbol) == (exchange, symbol)


@HOSTILE
@given(
    text=st.one_of(
        text_values, st.from_regex(r"(ohlcv|trades):[^:]{0,12}:[^:]{0,12}(:[0-9a-zA-Z]{0,4})?", fullmatch=True)
    )
)
def test_node_id_parsing_is_total(text):
    node = raises_typed_or(NodeId.parse, text)
    if node is not None:
        assert str(NodeId.parse(str(node))) == str(node)


@HOSTILE
@given(value=st.one_of(scalars, st.from_regex(r"\s?[0-9]{0,6}(\.[0-9]{0,3})?[smhdwMy]?\s?", fullmatch=True)))
def test_timeframes_and_durations_are_positive_or_refused(value):
    tf = raises_typed_or(Timeframe.parse, value)
    if tf is not None:
        assert tf.ms > 0 and tf.ms % 1000 == 0 and Timeframe.parse(tf.name) == tf
    ms = raises_typed_or(parse_duration_ms, value)
    if ms is not None:
        assert isinstance(ms, int) and ms > 0


day = st.dates().map(str)
keys = st.one_of(
    st.tuples(day, text_values).map(lambda t: f"{t[0]}|{t[1]}"),
    text_values,
    st.tuples(text_values, text_values).map("|".join),
)


@HOSTILE
@given(keys=st.lists(keys, max_size=6))
def test_partition_keys_split_or_are_refused(keys):
    for key in keys:
        parts = raises_typed_or(split_key, key)
        if parts is not None:
            assert f"{parts[0]}|{parts[1]}" == key
    slices = raises_typed_or(slices_of, keys)
    if slices is not None:
        for sl in slices:
            starts = [w.start_ms for w in sl.windows]
            assert starts == sorted(starts)
            for w in sl.windows:
                assert w.start_ms % 86_400_000 == 0 and w.duration_ms % 86_400_000 == 0 and w.duration_ms > 0
            for a, b in pairwise(sl.windows):
                assert a.end_ms < b.start_ms, "adjacent days were not merged"


@HOSTILE
@given(name=st.one_of(text_values, scalars), mode=st.sampled_from(["ohlcv", "trades"]))
def test_table_names_and_prefixes_admit_identifiers_only(name, mode):
    if raises_typed_or(validate_table_name, name) is not None:
        assert TABLE_RE.match(name)
    for make in (lambda: TableNames.from_prefix(name, mode), lambda: TableNames.for_data_table(name)):
        tables = raises_typed_or(make)
        if tables is not None:
            assert TABLE_RE.match(tables.data) and TABLE_RE.match(tables.coverage), tables


def test_hostile_prefixes_create_no_table(questdb, questdb_conn):
    conn = questdb.connection
    before = {r[0] for r in questdb_conn.execute("SELECT table_name FROM tables()").fetchall()}
    for prefix in INJECTIONS + ["p" * 95]:
        cfg = {
            "exchange": "binance",
            "symbols": ["BTC/USDT"],
            "questdb": {"host": conn.host, "port": conn.port, "http_port": conn.http_port, "table_prefix": prefix},
        }
        provider = raises_typed_or(CcxtQuestDBProvider.from_config, cfg, validate_markets=False)
        assert provider is None or TABLE_RE.match(provider.config.tables.coverage), prefix
    after = {r[0] for r in questdb_conn.execute("SELECT table_name FROM tables()").fetchall()}
    assert after == before or all(TABLE_RE.match(t) for t in after - before)


# ---------------------------------------------------------------------------- exchange answers

numberish = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**20), 10**20),
    st.none(),
    st.booleans(),
    st.sampled_from(["1.5", "NaN", "inf", "-1", "abc", "", "1e400", "0x10"]),
)
base_candle = st.tuples(
    st.integers(0, 10**6).map(lambda k: 1_700_000_000_000 // 60_000 * 60_000 + k * 60_000),
    st.floats(1, 1e6),
    st.floats(0, 1e3),
).map(lambda t: [t[0], t[1], t[1] * 1.01, t[1] * 0.99, t[1], t[2]])


@st.composite
def candle_pages(draw):
    rows = draw(st.lists(base_candle, max_size=8))
    for _ in range(draw(st.integers(0, 3))):
        if not rows:
            break
        row = list(rows[draw(st.integers(0, len(rows) - 1))])
        how = draw(st.sampled_from(["cell", "short", "long", "scalar", "dict", "dup"]))
        if how == "cell":
            row[draw(st.integers(0, 5))] = draw(numberish)
        elif how == "short":
            row = row[: draw(st.integers(0, 5))]
        elif how == "long":
            row = row + [draw(numberish)]
        rows.append({"scalar": draw(numberish), "dict": dict(enumerate(row))}.get(how, row))
    return rows


@HOSTILE
@given(rows=candle_pages())
def test_candle_pages_are_clean_or_refused(rows):
    frame = raises_typed_or(candles_frame, rows, Timeframe.parse("1m"))
    if frame is None:
        return
    m = frame[["open", "high", "low", "close", "volume"]].to_numpy(dtype=float)
    assert np.isfinite(m).all()
    assert frame["ts"].is_unique and frame["ts"].is_monotonic_increasing
    assert (frame["ts"] % 60_000 == 0).all()
    o, h, low, c, v = m.T
    assert (low > 0).all() and (v >= 0).all() and (h >= np.maximum(o, c)).all() and (low <= np.minimum(o, c)).all()


trade_fields = {
    "timestamp": st.one_of(st.integers(1_600_000_000_000, 1_800_000_000_000), numberish),
    "id": st.one_of(st.integers(0, 10**9).map(str), numberish, st.sampled_from([[], [1], {"a": 1}])),
    "price": st.one_of(st.floats(0.01, 1e6), numberish),
    "amount": st.one_of(st.floats(0, 1e3), numberish),
    "side": st.one_of(st.sampled_from(["buy", "sell", None, "BUY", "", [], ["buy"], {"x": 1}]), numberish),
}
trade = st.fixed_dictionaries({}, optional=trade_fields)


@HOSTILE
@given(trades=st.lists(st.one_of(trade, trade, numberish, st.lists(numberish, max_size=3)), max_size=8))
def test_trade_pages_are_clean_or_refused(trades):
    frame = raises_typed_or(trades_frame, trades)
    if frame is None:
        return
    assert np.isfinite(frame["price"].to_numpy(dtype=float)).all() and (frame["price"] > 0).all()
    assert np.isfinite(frame["amount"].to_numpy(dtype=float)).all() and (frame["amount"] >= 0).all()
    assert not frame.duplicated(subset=["ts", "trade_id"]).any()
    assert frame["side"].isin(["buy", "sell", ""]).all()
    assert all(tid and tid != "None" for tid in frame["trade_id"])


# ---------------------------------------------------------------------------- through a real backfill

CANDLES = Series("ohlcv", f"ohlcv:binance:{SYMBOL}:1m", utc_ms(2024, 4, 2), utc_ms(2024, 4, 2, 10), 200, KLINES)
TRADES = Series("trades", f"trades:binance:{SYMBOL}", utc_ms(2024, 4, 2, 10), utc_ms(2024, 4, 2, 11), 100, AGG)


def binance_klines(emulator, start_ms: int, n: int) -> list[list]:
    """The emulator's next ``n`` 1m klines in Binance's 12-field form (strings for numbers)."""
    rows = emulator.market.candles(SYMBOL.replace("/", ""), "1m", start_ms, start_ms + n * 60_000)
    return [[r[0], *(f"{x:.8f}" for x in r[1:6]), r[0] + 59_999, "0", 1, "0", "0", "0"] for r in rows]


def binance_agg_trades(emulator, start_ms: int, n: int) -> list[dict]:
    trades = emulator.market.trades(SYMBOL.replace("/", ""), start_ms, start_ms + 3_600_000)[:n]
    return [
        {
            "a": t.id,
            "p": f"{t.price:.8f}",
            "q": f"{t.amount:.8f}",
            "f": t.id,
            "l": t.id,
            "T": t.timestamp,
            "m": t.side == "sell",
            "M": True,
        }
        for t in trades
    ]


def spoil(rows: list, index: int, how: str) -> list:
    rows = [list(r) if isinstance(r, list) else dict(r) for r in rows]
    row = rows[index]
    if isinstance(row, dict):
        field, value = {
            "nan_price": ("p", "NaN"),
            "inf_price": ("p", "inf"),
            "negative_qty": ("q", "-1.0"),
            "junk_price": ("p", "abc"),
            "none_time": ("T", None),
            "no_id": ("a", None),
            "zero_price": ("p", "0"),
        }[how]
        row[field] = value
        return rows
    if how == "short":
        rows[index] = row[:4]
    elif how == "off_grid":
        row[0] += 1234
    else:
        col, value = {
            "nan_price": (4, "NaN"),
            "inf_price": (2, "inf"),
            "negative_qty": (5, "-3.0"),
            "junk_price": (1, "abc"),
            "none_time": (0, None),
            "high_below_low": (2, "0.01"),
        }[how]
        row[col] = value
    return rows


@pytest.mark.parametrize(
    "series,how",
    [
        (CANDLES, "nan_price"),
        (CANDLES, "inf_price"),
        (CANDLES, "negative_qty"),
        (CANDLES, "junk_price"),
        (CANDLES, "none_time"),  # ccxt drops the row: told by the answer's own row count
        (CANDLES, "short"),
        (CANDLES, "off_grid"),
        (CANDLES, "high_below_low"),
        (TRADES, "nan_price"),
        (TRADES, "negative_qty"),
        (TRADES, "junk_price"),
        (TRADES, "none_time"),
        (TRADES, "no_id"),
        (TRADES, "zero_price"),
    ],
    ids=lambda v: v.mode if isinstance(v, Series) else v,
)
def test_a_malformed_page_is_refused_whole(questdb, questdb_conn, emulator, emulator_control, series, how):
    """Page 2 of a real backfill is malformed: ExchangeDataError; whatever is stored or covered is
    true (page 1 at most: a page in flight may be stored without its coverage), nothing of page 2
    is stored or covered; a rerun with an honest exchange completes."""
    provider = series_provider(questdb, emulator, series)
    if series.mode == "ohlcv":
        page2_start = series.start_ms + series.window_size * 60_000
        page = binance_klines(emulator, page2_start, series.window_size)
    else:
        first = truth_frame(emulator, series, series.start_ms, series.end_ms)
        page2_start = int(first["ts"].iloc[series.window_size - 1])  # by id from the last trade of page 1
        page = binance_agg_trades(emulator, page2_start, series.window_size + 1)[1:]
    emulator_control.inject("rows", path=series.path, after=1, rows=spoil(page, len(page) // 2, how))
    with pytest.raises(ExchangeDataError) as err:
        provider.ensure_range_sync(series.start_ms / 1000, series.end_ms / 1000, node_id=series.node_id)
    assert "nothing of this page was written" in str(err.value) or "refusing" in str(err.value), err.value
    stored, covered = audit(questdb_conn, emulator, provider, series)
    assert (stored["ts"] <= page2_start).all(), "a row of the refused page was stored"
    assert all(w.end_ms <= page2_start + (0 if series.mode == "ohlcv" else 1) for w in covered), [
        str(w) for w in covered
    ]
    [hit] = [r for r in emulator_control.requests(path=series.path) if r["fault"]]
    assert hit["status"] == 200

    rerun = CcxtQuestDBProvider(provider.config)
    rerun.ensure_range_sync(series.start_ms / 1000, series.end_ms / 1000, node_id=series.node_id)
    stored, covered = audit(questdb_conn, emulator, rerun, series)
    assert len(stored) == len(truth_frame(emulator, series, series.start_ms, series.end_ms))
    assert math.isclose(sum(w.duration_ms for w in covered), series.end_ms - series.start_ms)
