"""The emulated public archive speaks the archive's layout: paths, zip with one CSV, checksums,
spot times in microseconds from 2025 without a header, futures with a header, publication lags,
missing and corrupt files, and rows equal to the REST API's."""

from __future__ import annotations

import hashlib
import io
import urllib.error
import urllib.request
import zipfile

import pytest

MIN, DAY = 60_000, 86_400_000
MAR1 = 1_709_251_200_000  # 2024-03-01
FEB1_2025 = 1_738_368_000_000


def get(emulator, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"{emulator.base_url}/{path}", timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def csv_of(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        (name,) = z.namelist()
        return z.read(name).decode().splitlines()


def test_a_day_file_holds_the_rest_apis_klines_and_matches_its_checksum(emulator, emulator_control):
    path = "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-03-01.zip"
    status, data = get(emulator, path)
    assert status == 200
    _, checksum = get(emulator, path + ".CHECKSUM")
    assert checksum.decode() == f"{hashlib.sha256(data).hexdigest()}  BTCUSDT-1m-2024-03-01.zip\n"
    assert get(emulator, path)[1] == data  # the same bytes every time
    lines = csv_of(data)
    want = emulator.market.candles("BTCUSDT", "1m", MAR1, MAR1 + DAY)
    assert len(lines) == len(want) == 1440
    first = lines[0].split(",")
    assert len(first) == 12 and int(first[0]) == MAR1 and int(first[6]) == MAR1 + MIN - 1
    assert [float(v) for v in first[1:6]] == want[0][1:6]


def test_spot_is_in_microseconds_from_2025_and_futures_has_a_header(emulator, emulator_control):
    spot = csv_of(get(emulator, "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2025-02-01.zip")[1])
    assert int(spot[0].split(",")[0]) == FEB1_2025 * 1000
    futures = csv_of(get(emulator, "data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2025-02-01.zip")[1])
    assert futures[0].startswith("open_time,open,high,low,close,volume")
    assert int(futures[1].split(",")[0]) == FEB1_2025
    trades = csv_of(get(emulator, "data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-03-01.zip")[1])
    want = emulator.market.trades("BTCUSDT", MAR1, MAR1 + DAY)
    assert len(trades) == len(want)
    agg_id, _, _, first_id, last_id, ts, maker, best = trades[0].split(",")
    assert (int(agg_id), int(ts), maker, best) == (
        want[0].id,
        want[0].timestamp,
        "True" if want[0].side == "sell" else "False",
        "True",
    )
    assert int(first_id) == int(last_id) == want[0].id


def test_monthly_files_hold_the_month(emulator, emulator_control):
    lines = csv_of(get(emulator, "data/spot/monthly/klines/ETHUSDT/1h/ETHUSDT-1h-2024-02.zip")[1])
    assert len(lines) == 29 * 24


@pytest.mark.parametrize(
    "path",
    [
        "data/spot/daily/klines/NOPEUSDT/1m/NOPEUSDT-1m-2024-03-01.zip",  # no such symbol
        "data/spot/daily/klines/BTCUSDT/7m/BTCUSDT-7m-2024-03-01.zip",  # no such interval
        "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-03.zip",  # a month's name among days
        "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2010-03-01.zip",  # before the listing
    ],
)
def test_what_the_archive_does_not_have_is_404(emulator, emulator_control, path):
    assert get(emulator, path)[0] == 404


def test_publication_lags_missing_and_corrupt_files(emulator, emulator_control):
    day = "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-03-01.zip"
    month = "data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-02.zip"
    emulator_control.freeze_clock(MAR1 + DAY + 5 * 3_600_000)  # 5 h after the day, 29 h after February
    assert get(emulator, day)[0] == 404 and get(emulator, month)[0] == 404
    emulator_control.freeze_clock(MAR1 + DAY + 6 * 3_600_000)
    assert get(emulator, day)[0] == 200 and get(emulator, month)[0] == 404
    emulator_control.freeze_clock(MAR1 + 2 * DAY)
    assert get(emulator, month)[0] == 200
    emulator_control.set_archive(missing=["BTCUSDT-1m-2024-03-01.zip"], corrupt=["BTCUSDT-1m-2024-02.zip"])
    assert get(emulator, day)[0] == 404
    status, data = get(emulator, month)
    assert status == 200
    assert get(emulator, month + ".CHECKSUM")[1].split()[0].decode() != hashlib.sha256(data).hexdigest()
    with pytest.raises(Exception, match="unknown archive setting"):
        emulator_control._call("POST", "archive", {"misssing": []})
    assert [r["dialect"] for r in emulator_control.requests()] == ["archive"] * len(emulator_control.requests())


def test_generated_files_are_kept_in_a_bounded_cache():
    from ccxt_questdb_assets.emulator import archive
    from ccxt_questdb_assets.emulator.archive_state import file_cache
    from ccxt_questdb_assets.emulator.state import EmulatorState

    state = EmulatorState()
    path = "/data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-02.zip"
    status, data, _ = archive.answer(state, path)
    assert status == 200 and len(state.archive.cache) == 1
    _, checksum, _ = archive.answer(state, path + ".CHECKSUM")  # from the cache, the same bytes
    assert checksum.decode() == f"{hashlib.sha256(data).hexdigest()}  BTCUSDT-1m-2024-02.zip\n"
    assert archive.answer(state, path)[1] is data and len(state.archive.cache) == 1
    state.archive.update({"corrupt": ["BTCUSDT-1m-2024-02.zip"]})
    assert archive.answer(state, path)[1] != data  # a corrupt file is corrupted on the way out ...
    state.archive.update({"corrupt": []})
    assert archive.answer(state, path)[1] == data  # ... never in the cache
    state.reset()
    assert len(state.archive.cache) == 0

    cache = file_cache(max_bytes=9)
    cache.put(("a",), (b"1234", "da"))
    cache.put(("b",), (b"5678", "db"))
    assert cache.get(("a",)) == (b"1234", "da")  # a is now the most recently used
    cache.put(("c",), (b"90", "dc"))  # 10 bytes > 9: the least recently used (b) goes
    cache.put(("big",), (b"x" * 10, "dx"))  # larger than the whole cache: not kept
    assert (cache.get(("b",)), cache.get(("big",)), cache.size, len(cache)) == (None, None, 6, 2)
    cache.put(("d",), (b"abcd", "dd"))  # a is now the oldest ask
    assert (cache.get(("a",)), cache.size) == (None, 6)
    assert [cache.get((k,))[1] for k in "cd"] == ["dc", "dd"]
