"""QuestDBIOManager with real Dagster runs and a real QuestDB: DataFrame outputs, refusals, ranges."""

import uuid

import numpy as np
import pandas as pd
import pytest
from dagster import AssetIn, DagsterInstance, asset, materialize
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from ccxt_questdb_assets.core.errors import ConfigError, InvalidFrameError
from ccxt_questdb_assets.defs.build import build_resources
from ccxt_questdb_assets.defs.io_manager import QuestDBIOManager, series_metadata
from ccxt_questdb_assets.defs.partitions import market_partitions, slices_of
from ccxt_questdb_assets.defs.project_config import ProjectConfig
from ccxt_questdb_assets.defs.questdb_resource import QuestDBResource
from ccxt_questdb_assets.storage.series_table import SeriesTable

DAY_MS = 86_400_000
T0 = pd.Timestamp("2024-01-02", tz="UTC")


def candles(day: pd.Timestamp, n: int = 1440) -> pd.DataFrame:
    ts = pd.date_range(day, periods=n, freq="1min", tz="UTC")
    base = np.arange(n, dtype=float) + 100
    return pd.DataFrame(
        {"ts": ts, "open": base, "high": base + 2, "low": base - 1, "close": base + 1, "volume": base / 10}
    )


@pytest.fixture
def setup(questdb, tmp_path):
    conn = questdb.connection
    resource = QuestDBResource(host=conn.host, port=conn.port, http_port=conn.http_port)
    table = SeriesTable("io_" + uuid.uuid4().hex[:10], "ohlcv", "testex", "1m")
    parts = market_partitions("testex", "2024-01-01")
    with DagsterInstance.ephemeral(tempdir=str(tmp_path)) as instance:
        instance.add_dynamic_partitions("testex_symbols", ["AAA/USDT", "BBB/USDT"])
        yield resource, table, parts, instance


def build(table, parts, body):
    @asset(name="frames", partitions_def=parts, metadata=series_metadata(table), io_manager_key="io")
    def frames(context) -> pd.DataFrame:
        return body(context)

    return frames


def test_dataframe_outputs_round_trip_and_load_input_spans_days_and_symbols(setup):
    resource, table, parts, instance = setup

    def body(context):
        out = []
        for sl in slices_of(context.partition_keys):
            for w in sl.windows:
                day = pd.Timestamp(w.start_ms, unit="ms", tz="UTC")
                while day.value // 1_000_000 < w.end_ms:
                    frame = candles(day)
                    frame.insert(1, "symbol", sl.symbol)
                    out.append(frame)
                    day += pd.Timedelta(days=1)
        return pd.concat(out)

    frames = build(table, parts, body)
    seen = {}

    @asset(partitions_def=parts, ins={"frames": AssetIn()}, io_manager_key="mem")
    def consumer(frames: pd.DataFrame) -> None:
        seen["frame"] = frames

    from dagster import mem_io_manager

    io = QuestDBIOManager(questdb=resource)
    for symbol in ("AAA/USDT", "BBB/USDT"):
        result = materialize(
            [frames, consumer],
            instance=instance,
            resources={"io": io, "mem": mem_io_manager},
            tags={
                ASSET_PARTITION_RANGE_START_TAG: f"2024-01-02|{symbol}",
                ASSET_PARTITION_RANGE_END_TAG: f"2024-01-04|{symbol}",
            },
        )
        assert result.success
        events = {e.partition: e.metadata for e in result.asset_materializations_for_node("frames")}
        assert sorted(events) == [f"2024-01-0{d}|{symbol}" for d in (2, 3, 4)]
        for key, md in events.items():  # each partition its own day: rows, span, preview
            assert md["dagster/row_count"].value == md["rows_written"].value == 1440
            assert pd.Timestamp(md["first_ts"].value, unit="s", tz="UTC").isoformat().startswith(key[:10])
            preview = md["preview"].value.splitlines()  # a header, its rule, then the day's first 5 minutes
            assert (
                len(preview) == 2 + 5 and f"{key[:10]} 00:00:00" in preview[2] and f"{key[:10]} 00:04:00" in preview[-1]
            )
            # each price as stored, not rounded for display
            written = candles(pd.Timestamp(key[:10], tz="UTC")).iloc[0]
            shown = [cell.strip() for cell in preview[2].strip("|").split("|")]
            assert [float(v) for v in shown[1:]] == [written[c] for c in ("open", "high", "low", "close", "volume")]
        got = seen["frame"]
        assert len(got) == 3 * 1440 and set(got["symbol"]) == {symbol}
        assert got["ts"].is_monotonic_increasing and got["ts"].iloc[0] == T0
        np.testing.assert_array_equal(got["open"].to_numpy()[:1440], candles(T0)["open"].to_numpy())
    # Writing the same partitions again replaces rows instead of adding them.
    again = materialize([frames], instance=instance, resources={"io": io}, partition_key="2024-01-02|AAA/USDT")
    assert again.asset_materializations_for_node("frames")[0].metadata["dagster/row_count"].value == 1440


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda f: f.assign(ts=f["ts"] + pd.Timedelta(days=1)), "outside the run's partitions"),
        (lambda f: f.drop(columns=["volume"]), "missing columns"),
        (lambda f: f.assign(ts=f["ts"].dt.tz_localize(None)), "naive"),
        (lambda f: f.assign(low=f["high"] + 1), "high below low"),
        (lambda f: f.assign(volume=-1.0), "negative volume"),
        (lambda f: f.assign(open=np.nan), "not a finite number"),
        (lambda f: f.assign(symbol="BBB/USDT"), "not among this run's partitions"),
    ],
)
def test_bad_frames_are_refused_whole(setup, questdb, mutate, match):
    resource, table, parts, instance = setup
    frames = build(table, parts, lambda context: mutate(candles(T0)))
    result = materialize(
        [frames],
        instance=instance,
        resources={"io": QuestDBIOManager(questdb=resource)},
        partition_key="2024-01-02|AAA/USDT",
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    text = str(failure.event_specific_data.error)
    assert InvalidFrameError.__name__ in text and match in text
    count = resource.client().query("SELECT count() FROM tables() WHERE table_name = %s", (table.table,))
    if count[0][0]:
        assert resource.client().query(f'SELECT count() FROM "{table.table}"')[0][0] == 0


def test_project_config_errors_name_the_key_and_the_fix(tmp_path):
    base = {"exchanges": {"binance": {"symbols": ["BTC/USDT"]}}}
    ProjectConfig.from_mapping(base, environ={})
    cases = [
        ({**base, "exchangs": {}}, "exchangs"),
        ({"exchanges": {"binance": {"symbols": ["BTC/USDT"], "timeframs": ["1m"]}}}, "timeframs"),
        ({"exchanges": {"binance": {"symbols": ["BTC/USDT"], "rate_limiter": {}}}}, "rate_limiter"),
        ({"exchanges": {"Bin ance": {"symbols": ["BTC/USDT"]}}}, "Bin ance"),
        ({**base, "start_date": "yesterday"}, "start_date"),
        ({"exchanges": {"binance": {"symbols": ["BTC/USDT"], "resample_to": ["90s"]}}}, "resample_to"),
        ({"exchanges": {"binance": {"symbols": ["BTC/USDT"], "base_url": "${NOPE_NOT_SET}"}}}, "NOPE_NOT_SET"),
        ({"exchanges": {}}, "exchanges"),
        ({"exchanges": {"binance": {"symbols": ["BTC|USDT"]}}}, "BTC|USDT.*partition key"),
    ]
    for raw, match in cases:
        with pytest.raises(ConfigError, match=match):
            ProjectConfig.from_mapping(raw, environ={})
    path = tmp_path / "p.yaml"
    path.write_text("exchanges: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        ProjectConfig.load(path)
    expanded = ProjectConfig.from_mapping(
        {"exchanges": {"binance": {"symbols": ["BTC/USDT"], "base_url": "${EX_URL:-http://127.0.0.1:1}"}}}, environ={}
    )
    assert expanded.exchanges[0].ohlcv.backfill.base_url.startswith("http://127.0.0.1:1")


@pytest.mark.parametrize(
    "section",
    [
        {"rate_limiter": {"scope": "cluster", "redis_dsn": "redis://user:s3cr3t-pw@127.0.0.1:6379/0"}},
        {
            "rate_limiter": {"scope": "cluster"},
            "connectors": {"ccxt_rate_limiter_redis": "redis://:s3cr3t-pw@127.0.0.1:6379/0"},
        },
    ],
)
def test_a_redis_password_in_the_project_file_is_refused_for_the_environment(section):
    """Resource config is shown in the UI and stored with runs: the password must come from the
    environment (an EnvVar); the error names the variable and never the password."""
    project = ProjectConfig.from_mapping({**section, "exchanges": {"binance": {"symbols": ["BTC/USDT"]}}}, environ={})
    with pytest.raises(ConfigError, match="CCXT_QUESTDB_RATE_LIMITER_REDIS") as err:
        build_resources(project)
    assert "s3cr3t-pw" not in str(err.value) and "***" in str(err.value)
    safe = ProjectConfig.from_mapping(
        {
            "rate_limiter": {"scope": "cluster", "redis_dsn": "redis://127.0.0.1:6379/0"},
            "exchanges": {"binance": {"symbols": ["BTC/USDT"]}},
        },
        environ={},
    )
    assert build_resources(safe)["rate_limiter"].redis_dsn == "redis://127.0.0.1:6379/0"
