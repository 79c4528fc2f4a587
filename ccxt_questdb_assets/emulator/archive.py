"""Binance's public archive (data.binance.vision) over the synthetic market, for offline tests.

Serves ``/data/{spot|futures/um}/{daily|monthly}/klines/<SYMBOL>/<interval>/<SYMBOL>-<interval>-<period>.zip``
and ``.../aggTrades/<SYMBOL>/<SYMBOL>-aggTrades-<period>.zip``, each with its ``.zip.CHECKSUM``
(``<sha256>  <name>``), as the archive lays them out:

* a zip holds one CSV named like it; klines are Binance's 12 fields, aggregated trades
  ``id,price,quantity,first id,last id,time,buyer is maker`` (+ ``best match`` on spot);
* futures CSVs start with a header line, spot CSVs do not;
* spot times are microseconds in files of 2025-01-01 and later, milliseconds before;
* a day's file exists ``daily_publish_ms`` after the day ends, a month's ``monthly_publish_ms``
  after the month ends (404 before); files named in ``missing`` answer 404, those in ``corrupt``
  a zip whose bytes disagree with their ``.CHECKSUM``.

The rows are the REST API's: the same market, so a file equals the pages of its span. A file's bytes
never change once it is published, so generated zips (CSV formatting in Python: about 0.2 s for a
month of 1m klines) are kept in a bounded in-memory cache (:func:`archive_state.file_cache`, least recently used
first out), and a zip, its ``.CHECKSUM`` and every later ask of it cost one generation.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

import numpy as np

from ccxt_questdb_assets.emulator.archive_state import DAY_MS, ArchiveState
from ccxt_questdb_assets.emulator.decimals import dec_template, split_units
from ccxt_questdb_assets.emulator.market_rows import Bars, TradesArr
from ccxt_questdb_assets.emulator.market_time import TIMEFRAMES

if TYPE_CHECKING:
    from ccxt_questdb_assets.emulator.state import EmulatorState


#: Spot files switched to microsecond times with this day.
SPOT_MICROSECONDS_FROM = date(2025, 1, 1)
KLINE_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"
)
AGG_HEADER = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"

_PATH = re.compile(
    r"^/data/(?P<market>spot|futures/um)/(?P<period>daily|monthly)/(?P<kind>klines|aggTrades)/"
    r"(?P<symbol>[A-Z0-9]+)/(?:(?P<interval>[0-9]+[smhdw])/)?"
    r"(?P<name>(?P=symbol)-(?:(?P=interval)|aggTrades)-(?P<stamp>[0-9]{4}-[0-9]{2}(?:-[0-9]{2})?)\.zip)"
    r"(?P<checksum>\.CHECKSUM)?$"
)


@dataclass(frozen=True)
class ArchiveRequest:
    """A parsed archive path: which series, which span, the zip or its checksum."""

    spot: bool
    kind: str
    symbol: str
    interval: str | None
    name: str
    start_ms: int
    end_ms: int
    monthly: bool
    checksum: bool

    @classmethod
    def parse(cls, path: str) -> ArchiveRequest | None:
        match = _PATH.match(path)
        if match is None:
            return None
        stamp = match["stamp"]
        monthly = match["period"] == "monthly"
        if monthly != (len(stamp) == 7):
            return None
        try:
            first = date.fromisoformat(stamp + "-01" if monthly else stamp)
        except ValueError:
            return None
        end = date(first.year + first.month // 12, first.month % 12 + 1, 1) if monthly else None
        start_ms = _ms(first)
        return cls(
            spot=match["market"] == "spot",
            kind=match["kind"],
            symbol=match["symbol"],
            interval=match["interval"],
            name=match["name"],
            start_ms=start_ms,
            end_ms=_ms(end) if end else start_ms + DAY_MS,
            monthly=monthly,
            checksum=match["checksum"] is not None,
        )

    def published(self, archive: ArchiveState, now_ms: int) -> bool:
        lag = archive.monthly_publish_ms if self.monthly else archive.daily_publish_ms
        return self.end_ms + lag <= now_ms

    @property
    def microseconds(self) -> bool:
        return self.spot and self.start_ms >= _ms(SPOT_MICROSECONDS_FROM)


def _plain(decimals: int) -> str:
    """A decimal's %-template as the archive's CSV writes it: unquoted, 8 places."""
    return dec_template(decimals).strip('"')


def kline_csv(bars: Bars, request: ArchiveRequest, price_decimals: int, qty_decimals: int) -> str:
    """Binance's 12-field kline lines (times in the file's unit)."""
    unit = 1000 if request.microseconds else 1
    p, q, qv = _plain(price_decimals), _plain(qty_decimals), _plain(price_decimals + qty_decimals)
    row = f"%d,{p},{p},{p},{p},{q},%d,{qv},%d,{q},{qv},0"
    dur = TIMEFRAMES[request.interval or "1m"] or 0
    with np.errstate(divide="ignore", invalid="ignore"):
        tbq = np.where(bars.v > 0, bars.qv * bars.tb // np.maximum(bars.v, 1), 0)
    cols = [
        (bars.t * unit).tolist(),
        *split_units(bars.o, price_decimals),
        *split_units(bars.h, price_decimals),
        *split_units(bars.l, price_decimals),
        *split_units(bars.c, price_decimals),
        *split_units(bars.v, qty_decimals),
        ((bars.t + dur) * unit - 1).tolist(),
        *split_units(bars.qv, price_decimals + qty_decimals),
        bars.n.tolist(),
        *split_units(bars.tb, qty_decimals),
        *split_units(tbq, price_decimals + qty_decimals),
    ]
    lines = [row % r for r in zip(*cols, strict=True)]
    return _with_header(lines, KLINE_HEADER, request)


def agg_trades_csv(trades: TradesArr, request: ArchiveRequest, price_decimals: int, qty_decimals: int) -> str:
    """Aggregated trade lines (spot: ``True``/``False`` and the best-match column; futures: ``true``)."""
    unit = 1000 if request.microseconds else 1
    p, q = _plain(price_decimals), _plain(qty_decimals)
    tail = ",True" if request.spot else ""
    row = f"%d,{p},{q},%d,%d,%d,%s{tail}"
    flags = ("True", "False") if request.spot else ("true", "false")
    ids = trades.id.tolist()
    cols = [
        ids,
        *split_units(trades.price, price_decimals),
        *split_units(trades.qty, qty_decimals),
        ids,
        ids,
        (trades.ts * unit).tolist(),
        np.where(trades.buyer_maker, flags[0], flags[1]).tolist(),
    ]
    lines = [row % r for r in zip(*cols, strict=True)]
    return _with_header(lines, AGG_HEADER, request)


def zipped(name: str, csv: str) -> bytes:
    """One CSV (named like the zip) in a deflated zip file, the same bytes every time it is asked
    (a fixed member date: a zip and its checksum are made by separate requests)."""
    member = zipfile.ZipInfo(name.removesuffix(".zip") + ".csv", date_time=(2020, 1, 1, 0, 0, 0))
    member.compress_type = zipfile.ZIP_DEFLATED
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr(member, csv, compresslevel=1)
    return buf.getvalue()


def _with_header(lines: list[str], header: str, request: ArchiveRequest) -> str:
    if not request.spot:
        lines.insert(0, header)
    return "\n".join(lines) + ("\n" if lines else "")


def _ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


#: The archive's answer for a file it does not have (an S3 bucket's).
NOT_FOUND = (404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")


def answer(state: EmulatorState, path: str) -> tuple[int, bytes, str]:
    """``(status, body, content type)`` of an archive path: the zip, its checksum, or 404."""
    request = ArchiveRequest.parse(path)
    archive = state.archive
    if (
        request is None
        or not state.market.has_symbol(request.symbol)
        or request.name in archive.missing
        or (request.kind == "klines" and request.interval not in TIMEFRAMES)
        or not request.published(archive, state.clock.now_ms())
    ):
        return NOT_FOUND
    key = (request.spot, request.kind, request.interval, request.name)
    cached = archive.cache.get(key)
    if cached is None:
        spec = state.market.spec(request.symbol)
        if request.kind == "klines":
            bars = state.market.bars(request.symbol, request.interval or "1m", request.start_ms, request.end_ms)
            rows = len(bars)
            csv = kline_csv(bars, request, spec.price_decimals, spec.qty_decimals)
        else:
            trades = state.market.trades_array(request.symbol, request.start_ms, request.end_ms)
            rows = len(trades)
            csv = agg_trades_csv(trades, request, spec.price_decimals, spec.qty_decimals)
        if rows == 0:  # nothing traded (before the listing): the archive has no file
            return NOT_FOUND
        zip_bytes = zipped(request.name, csv)
        cached = (zip_bytes, hashlib.sha256(zip_bytes).hexdigest())
        archive.cache.put(key, cached)
    data, digest = cached
    if request.checksum:
        return 200, f"{digest}  {request.name}\n".encode(), "text/plain"
    if request.name in archive.corrupt:
        data = data[:-1] + bytes([data[-1] ^ 0xFF])
    return 200, data, "application/zip"
