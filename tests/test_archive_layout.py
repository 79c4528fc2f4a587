"""The archive's layout and CSV parsing: which files hold a window, what only REST can serve, and
files read into the frames REST pages become (both timestamp units, headers, refusals)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import UTC, datetime

import numpy as np
import pytest

from ccxt_questdb_assets.archive.layout import ArchiveKind, ArchiveMarket, ArchiveSeries, plan
from ccxt_questdb_assets.archive.parse import agg_trade_frame, csv_member, kline_frame
from ccxt_questdb_assets.core.errors import ConfigError, ExchangeDataError
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.core.windows import TimeWindow

SPOT_1M = ArchiveSeries(ArchiveMarket.SPOT, "BTCUSDT", ArchiveKind.KLINES, "1m")
DAY = 86_400_000


def ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)


def test_paths_follow_the_archive_layout():
    assert SPOT_1M.day_file(datetime(2024, 4, 2).date()).path == (
        "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-04-02.zip"
    )
    assert SPOT_1M.month_file(datetime(2024, 2, 1).date()).path == (
        "data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-02.zip"
    )
    trades = ArchiveSeries(ArchiveMarket.USDM, "BTCUSDT", ArchiveKind.AGG_TRADES)
    day = trades.day_file(datetime(2024, 4, 2).date())
    assert day.path == "data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-04-02.zip"
    assert day.checksum_path == day.path + ".CHECKSUM"
    assert day.span == TimeWindow(ms(2024, 4, 2), ms(2024, 4, 3))


def test_a_window_is_whole_published_months_then_days_then_rest():
    window = TimeWindow(ms(2024, 1, 15, 5), ms(2024, 4, 3, 7))
    layout = plan(SPOT_1M, window, now_ms=ms(2024, 4, 6))
    names = [f.name for f in layout.files]
    assert names[0] == "BTCUSDT-1m-2024-01-16.zip" and names[15] == "BTCUSDT-1m-2024-01-31.zip"
    assert names[16] == "BTCUSDT-1m-2024-02.zip"  # February ended more than 7 days ago
    assert names[17] == "BTCUSDT-1m-2024-03-01.zip"  # March did not: its days
    assert names[-1] == "BTCUSDT-1m-2024-04-02.zip"
    assert len(names) == 16 + 1 + 31 + 2
    # the cut parts of the first and last day go to REST; together they tile the window
    assert layout.rest == (TimeWindow(window.start_ms, ms(2024, 1, 16)), TimeWindow(ms(2024, 4, 3), window.end_ms))
    spans = sorted([f.span for f in layout.files] + list(layout.rest))
    assert spans[0].start_ms == window.start_ms and spans[-1].end_ms == window.end_ms
    assert all(a.end_ms == b.start_ms for a, b in zip(spans, spans[1:], strict=False))


def test_days_not_yet_published_go_to_rest():
    window = TimeWindow(ms(2024, 4, 1), ms(2024, 4, 6, 12))
    layout = plan(SPOT_1M, window, now_ms=ms(2024, 4, 6, 12))  # daily lag 24 h: up to 2024-04-05 00:00
    assert [f.name for f in layout.files][-1] == "BTCUSDT-1m-2024-04-04.zip"
    assert layout.rest == (TimeWindow(ms(2024, 4, 5), window.end_ms),)
    assert plan(SPOT_1M, TimeWindow(ms(2024, 4, 6), ms(2024, 4, 6, 1)), now_ms=ms(2024, 4, 6, 2)).files == ()


def test_a_month_missing_from_the_archive_is_read_as_its_days():
    month = SPOT_1M.month_file(datetime(2024, 2, 1).date())
    days = SPOT_1M.days_of(month)
    assert (
        len(days) == 29 and days[0].span.start_ms == month.span.start_ms and days[-1].span.end_ms == month.span.end_ms
    )


def test_only_exchanges_with_an_archive():
    assert ArchiveMarket.of("binanceusdm") is ArchiveMarket.USDM
    with pytest.raises(ConfigError, match="'okx' has no public archive"):
        ArchiveMarket.of("okx")


def kline_csv(times: list[int], header: bool = False) -> bytes:
    lines = ["open_time,open,high,low,close,volume,close_time,quote_volume,count,tbv,tbqv,ignore"] if header else []
    for t in times:
        lines.append(f"{t},100.5,101.0,99.5,100.0,2.5,{t + 59_999},250.0,10,1.0,100.0,0")
    return ("\n".join(lines) + "\n").encode()


def zipped(csv: bytes) -> bytes:
    """``csv`` as the archive ships it: the one file of a zip."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("f.csv", csv)
    return buf.getvalue()


def klines(csv: bytes, name: str = "f.zip"):
    with csv_member(zipped(csv), name) as member:
        return kline_frame(member, Timeframe.parse("1m"), name)


def agg_trades(csv: bytes, name: str = "t.zip"):
    with csv_member(zipped(csv), name) as member:
        return agg_trade_frame(member, name)


def test_kline_files_in_milliseconds_or_microseconds_with_or_without_a_header():
    t0 = ms(2025, 1, 1)
    minutes = [t0 + i * 60_000 for i in range(3)]
    ms_frame = klines(kline_csv(minutes, header=True))
    us_frame = klines(kline_csv([t * 1000 for t in minutes]))
    assert ms_frame["ts"].tolist() == minutes == us_frame["ts"].tolist()
    assert np.allclose(us_frame[["open", "high", "low", "close", "volume"]].to_numpy()[0], [100.5, 101, 99.5, 100, 2.5])


def test_bad_files_are_refused_naming_the_file_and_the_row():
    t0 = ms(2025, 1, 1)
    with pytest.raises(ExchangeDataError, match=r"f\.zip: row 1 .*not a whole millisecond"):
        klines(kline_csv([t0 * 1000, t0 * 1000 + 60_000_001]))
    with pytest.raises(ExchangeDataError, match=r"archive file f\.zip: row 1 has a timestamp off the 1m grid"):
        klines(kline_csv([t0, t0 + 30_000]))
    with pytest.raises(ExchangeDataError, match="not what the archive's layout says"):
        klines(b"1,2,x\n")
    with pytest.raises(ExchangeDataError, match="not a valid zip file"), csv_member(b"not a zip", "f.zip"):
        pass


def test_agg_trades_become_trades_with_the_takers_side():
    t0 = ms(2025, 1, 1)
    spot = f"7,100.5,0.25,9,9,{t0 * 1000},True,True\n8,100.6,0.5,10,11,{t0 * 1000 + 1000},False,True\n".encode()
    futures = (
        "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n"
        f"7,100.5,0.25,9,9,{t0},true\n8,100.6,0.5,10,11,{t0 + 1},false\n"
    ).encode()
    for csv in (spot, futures):
        frame = agg_trades(csv)
        assert frame["trade_id"].tolist() == ["7", "8"]
        assert frame["side"].tolist() == ["sell", "buy"]
        assert frame["ts"].tolist() == [t0, t0 + 1]
        assert frame["price"].tolist() == [100.5, 100.6] and frame["amount"].tolist() == [0.25, 0.5]
    with pytest.raises(ExchangeDataError, match=r"t\.zip: row 0 has a price that is not a positive number"):
        agg_trades(f"7,-1,0.25,9,9,{t0},true\n".encode())


def test_the_single_csv_is_read_as_it_is_decompressed():
    data = zipped(b"1,2\n")
    with csv_member(data, "a.zip") as member:
        assert member.read() == b"1,2\n"
    assert hashlib.sha256(data).hexdigest()  # what a .CHECKSUM names


def test_a_file_whose_content_fails_its_crc_is_refused_while_parsed():
    t0 = ms(2024, 3, 1)
    data = bytearray(zipped(kline_csv([t0, t0 + 60_000])))  # stored, not compressed: the digits stand in it
    data[data.index(str(t0).encode()) + 3] ^= 1  # one digit of the first open time
    with pytest.raises(ExchangeDataError, match=r"archive file f\.zip is not a valid zip file \(Bad CRC-32"):
        with csv_member(bytes(data), "f.zip") as member:
            kline_frame(member, Timeframe.parse("1m"), "f.zip")
