"""OKX's instruments for the synthetic markets (spot ``BTC-USDT``, linear swaps ``BTC-USDT-SWAP``)
and the wire rows of their candles and trades, as OKX writes them (every number a string)."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ccxt_questdb_assets.emulator.market import (
    Bars,
    SymbolSpec,
    TradesArr,
)

if TYPE_CHECKING:
    from ccxt_questdb_assets.emulator.state import EmulatorState

__all__ = [
    "Instrument",
    "candle_rows",
    "find_instrument",
    "instrument_info",
    "instruments",
    "okx_decimal",
    "trade_rows",
]


#: Decimal places of the contract value (``ctVal`` = 10**-k base units) of a linear SWAP, by base asset:
#: OKX's BTC-USDT-SWAP is 0.01 BTC, ETH-USDT-SWAP 0.1 ETH, SOL-USDT-SWAP 1 SOL; other bases 1.
_CT_VAL_DECIMALS = {"BTC": 2, "ETH": 1}
_SWAP_LEVER = {"BTC": "100", "ETH": "100"}


class Instrument(NamedTuple):
    """One OKX instrument over a synthetic market: its id, the market's symbol, SPOT or SWAP."""

    inst_id: str
    symbol: str  # the synthetic market's exchange id, e.g. BTCUSDT
    swap: bool


def okx_decimal(units: int, decimals: int) -> str:
    """Integer ``units`` of 10**-decimals as OKX writes numbers: ``"30000.1"``, ``"30000"``, ``"0.00012"``."""
    if decimals <= 0:
        return str(units * 10**-decimals)
    q, r = divmod(int(units), 10**decimals)
    if r == 0:
        return str(q)
    return f"{q}.{str(r).rjust(decimals, '0').rstrip('0')}"


def _column(units: np.ndarray, decimals: int) -> list[str]:
    return [okx_decimal(u, decimals) for u in units.tolist()]


def contract_decimals(spec: SymbolSpec) -> int:
    """Decimals of a SWAP size in contracts: base quantity / ctVal (exact, ``qty_decimals - k``)."""
    return spec.qty_decimals - _CT_VAL_DECIMALS.get(spec.base, 0)


def instruments(state: EmulatorState) -> list[Instrument]:
    """Every instrument served: each synthetic market as SPOT ``BASE-QUOTE`` and linear SWAP ``BASE-QUOTE-SWAP``."""
    out = []
    for symbol in state.market.symbols:
        spec = state.market.spec(symbol)
        out.append(Instrument(f"{spec.base}-{spec.quote}", symbol, False))
        out.append(Instrument(f"{spec.base}-{spec.quote}-SWAP", symbol, True))
    return out


def find_instrument(state: EmulatorState, inst_id: str) -> Instrument | None:
    for inst in instruments(state):
        if inst.inst_id == inst_id:
            return inst
    return None


def _state(state: EmulatorState, symbol: str, listing_ms: int) -> str:
    if listing_ms > state.clock.now_ms():
        return "preopen"
    return "live" if state.status.get(symbol, "TRADING") == "TRADING" else "suspend"


def instrument_info(state: EmulatorState, inst: Instrument) -> dict[str, Any]:
    """The ``/public/instruments`` row of ``inst`` (OKX's fields, alphabetical as OKX sends them)."""
    spec = state.market.spec(inst.symbol)
    family = f"{spec.base}-{spec.quote}"
    lot = okx_decimal(1, contract_decimals(spec) if inst.swap else spec.qty_decimals)
    row: dict[str, Any] = {
        "alias": "",
        "auctionEndTime": "",
        "baseCcy": spec.base,
        "category": "1",
        "contTdSwTime": "",
        "ctMult": "",
        "ctType": "",
        "ctVal": "",
        "ctValCcy": "",
        "expTime": "",
        "futureSettlement": False,
        "instFamily": "",
        "instId": inst.inst_id,
        "instIdCode": zlib.crc32(inst.inst_id.encode()) % 10_000_000,
        "instType": "SPOT",
        "lever": "10",
        "listTime": str(spec.listing_ms),
        "lotSz": lot,
        "maxIcebergSz": "9999999999.0000000000000000",
        "maxLmtAmt": "20000000",
        "maxLmtSz": "9999999999",
        "maxMktAmt": "1000000",
        "maxMktSz": "1000000",
        "maxStopSz": "1000000",
        "maxTriggerSz": "9999999999.0000000000000000",
        "maxTwapSz": "9999999999.0000000000000000",
        "minSz": lot,
        "openType": "",
        "optType": "",
        "preMktSwTime": "",
        "quoteCcy": spec.quote,
        "ruleType": "normal",
        "settleCcy": "",
        "state": _state(state, inst.symbol, spec.listing_ms),
        "stk": "",
        "tickSz": okx_decimal(1, spec.price_decimals),
        "tradeQuoteCcyList": [spec.quote],
        "uly": "",
    }
    if inst.swap:
        big = "100000000.0000000000000000"
        row.update(
            {
                "baseCcy": "",
                "ctMult": "1",
                "ctType": "linear",
                "ctVal": okx_decimal(1, _CT_VAL_DECIMALS.get(spec.base, 0)),
                "ctValCcy": spec.base,
                "instFamily": family,
                "instType": "SWAP",
                "lever": _SWAP_LEVER.get(spec.base, "50"),
                "maxIcebergSz": big,
                "maxLmtSz": "100000000",
                "maxMktAmt": "",
                "maxMktSz": "12000",
                "maxStopSz": "12000",
                "maxTriggerSz": big,
                "maxTwapSz": big,
                "quoteCcy": "",
                "settleCcy": spec.quote,
                "tradeQuoteCcyList": [],
                "uly": family,
            }
        )
    return row


def candle_rows(spec: SymbolSpec, swap: bool, bars: Bars, open_bar_ms: int | None) -> list[list[str]]:
    """``[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]`` strings, newest first. SPOT: vol in base,
    volCcy in quote; SWAP: vol in contracts, volCcy in base. ``confirm`` is ``"0"`` for the bar opening
    at ``open_bar_ms`` (the one containing now), else ``"1"``."""
    pd_, qd = spec.price_decimals, spec.qty_decimals
    quote_vol = _column(bars.qv, pd_ + qd)
    base_vol = _column(bars.v, qd)
    vol, vol_ccy = (_column(bars.v, contract_decimals(spec)), base_vol) if swap else (base_vol, quote_vol)
    ts = bars.t.tolist()
    confirm = ["0" if t == open_bar_ms else "1" for t in ts]
    cols = [
        [str(t) for t in ts],
        _column(bars.o, pd_),
        _column(bars.h, pd_),
        _column(bars.l, pd_),
        _column(bars.c, pd_),
        vol,
        vol_ccy,
        quote_vol,
        confirm,
    ]
    return [list(r) for r in zip(*cols, strict=True)][::-1]


def trade_rows(spec: SymbolSpec, inst: Instrument, tr: TradesArr) -> list[dict[str, str]]:
    """OKX trade rows, newest first: ``sz`` in base (SPOT) or contracts (SWAP), ``side`` the taker's."""
    sizes = _column(tr.qty, contract_decimals(spec) if inst.swap else spec.qty_decimals)
    prices = _column(tr.price, spec.price_decimals)
    sides = np.where(tr.buyer_maker, "sell", "buy").tolist()
    rows = [
        {"instId": inst.inst_id, "side": side, "sz": sz, "px": px, "source": "0", "tradeId": str(i), "ts": str(t)}
        for side, sz, px, i, t in zip(sides, sizes, prices, tr.id.tolist(), tr.ts.tolist(), strict=True)
    ]
    return rows[::-1]
