from datetime import UTC, datetime, timedelta, timezone

import pytest

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.node_ids import NodeId, make_node_id
from ccxt_questdb_assets.core.timeframes import Timeframe, parse_duration_ms
from ccxt_questdb_assets.core.windows import TimeWindow, to_epoch_ms

MIN = 60_000


@pytest.mark.parametrize(
    "name,ms", [("1m", MIN), ("15m", 15 * MIN), ("4h", 4 * 60 * MIN), ("1d", 86_400_000), ("1w", 604_800_000)]
)
def test_timeframe_parse(name, ms):
    assert Timeframe.parse(name).ms == ms


@pytest.mark.parametrize("bad", ["", "1M", "0m", "m", "1x", "1.5m", 60, None])
def test_timeframe_rejects_with_hint(bad):
    with pytest.raises(ConfigError, match="timeframe"):
        Timeframe.parse(bad)


def test_week_grid_opens_on_monday():
    tf = Timeframe.parse("1w")
    ts = to_epoch_ms(datetime(2024, 5, 16, 13, 0, tzinfo=UTC))  # a Thursday
    monday = datetime.fromtimestamp(tf.floor(ts) / 1000, tz=UTC)
    assert monday == datetime(2024, 5, 13, tzinfo=UTC)
    assert monday.weekday() == 0


def test_floor_and_ceil():
    tf = Timeframe.parse("5m")
    assert tf.floor(7 * MIN + 1) == 5 * MIN
    assert tf.ceil(7 * MIN + 1) == 10 * MIN
    assert tf.ceil(10 * MIN) == 10 * MIN
    assert tf.bars_between(0, 60 * MIN) == 12


@pytest.mark.parametrize("value,ms", [(60, MIN), ("60s", MIN), ("1m", MIN), ("1h", 60 * MIN), (0.5, 500)])
def test_duration(value, ms):
    assert parse_duration_ms(value) == ms


@pytest.mark.parametrize("bad", ["abc", -1, 0, True, "1M", 0.0001])
def test_duration_rejects(bad):
    with pytest.raises(ConfigError, match="interval"):
        parse_duration_ms(bad)


def test_times_accept_seconds_and_aware_datetimes_only():
    aware = datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=9)))
    assert to_epoch_ms(aware) == to_epoch_ms(datetime(2023, 12, 31, 15, tzinfo=UTC))
    assert to_epoch_ms(1_700_000_000) == 1_700_000_000_000
    with pytest.raises(ConfigError, match="naive"):
        to_epoch_ms(datetime(2024, 1, 1))
    with pytest.raises(ConfigError):
        to_epoch_ms(float("nan"))


def test_window_rejects_reversed_bounds():
    with pytest.raises(ConfigError, match="before its start"):
        TimeWindow(10, 5)


def test_node_ids_round_trip():
    assert make_node_id(exchange_id="binance", symbol="BTC/USDT") == "ohlcv:binance:BTC/USDT:1m"
    assert make_node_id(exchange_id="binance", symbol="BTC/USDT", mode="trades") == "trades:binance:BTC/USDT"
    for text in ["ohlcv:binance:BTC/USDT:5m", "trades:okx:ETH/USDT"]:
        assert str(NodeId.parse(text)) == text


@pytest.mark.parametrize(
    "bad", ["ohlcv:binance:BTC/USDT", "trades:binance:BTC/USDT:1m", "foo:binance:BTC", "ohlcv:bin:ance:BTC:1m", ""]
)
def test_node_id_rejects(bad):
    with pytest.raises(ConfigError, match="node id|timeframe"):
        NodeId.parse(bad)


def test_node_id_parts_may_not_contain_separator():
    with pytest.raises(ConfigError, match="may not contain"):
        make_node_id(exchange_id="binance", symbol="BTC:USDT")
