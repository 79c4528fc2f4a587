"""Kraken's names for the synthetic markets: asset ids (``XXBT``, ``ZUSD``, ``USDT``...), pair ids
(``XBTUSDT``, ``XXBTZUSD``), altnames and wsnames, and the ``/0/public/Assets`` and
``/0/public/AssetPairs`` entries built from them (see docs/exchanges/kraken.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ccxt_questdb_assets.emulator.state import EmulatorState

__all__ = ["KrakenPair", "asset_entries", "pair_entry", "pairs"]

#: Assets Kraken still names with the legacy X (crypto) / Z (fiat) prefix: code -> (asset id, altname).
LEGACY_ASSETS: dict[str, tuple[str, str]] = {
    "BTC": ("XXBT", "XBT"),
    "ETH": ("XETH", "ETH"),
    "LTC": ("XLTC", "LTC"),
    "XRP": ("XXRP", "XRP"),
    "XLM": ("XXLM", "XLM"),
    "XMR": ("XXMR", "XMR"),
    "ZEC": ("XZEC", "ZEC"),
    "ETC": ("XETC", "ETC"),
    "MLN": ("XMLN", "MLN"),
    "REP": ("XREP", "REP"),
    "DOGE": ("XXDG", "XDG"),
    "USD": ("ZUSD", "USD"),
    "EUR": ("ZEUR", "EUR"),
    "GBP": ("ZGBP", "GBP"),
    "JPY": ("ZJPY", "JPY"),
    "CAD": ("ZCAD", "CAD"),
    "AUD": ("ZAUD", "AUD"),
}
_FIAT = frozenset({"USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF"})
#: Binance-style statuses of markets listed at runtime -> Kraken pair ``status`` (ccxt: active only if online).
PAIR_STATUS = {
    "TRADING": "online",
    "PRE_TRADING": "post_only",
    "BREAK": "maintenance",
    "HALT": "cancel_only",
    "END_OF_DAY": "cancel_only",
    "POST_TRADING": "cancel_only",
    "AUCTION_MATCH": "limit_only",
}
_LEVERAGE = {"BTC": [2, 3, 4, 5], "ETH": [2, 3, 4, 5], "SOL": [2, 3]}
_FEES = [
    [0, 0.40],
    [10000, 0.35],
    [50000, 0.24],
    [100000, 0.22],
    [250000, 0.20],
    [500000, 0.18],
    [1000000, 0.16],
    [2500000, 0.14],
    [5000000, 0.12],
    [10000000, 0.10],
]
_FEES_MAKER = [
    [0, 0.25],
    [10000, 0.20],
    [50000, 0.14],
    [100000, 0.12],
    [250000, 0.10],
    [500000, 0.08],
    [1000000, 0.06],
    [2500000, 0.04],
    [5000000, 0.02],
    [10000000, 0.0],
]


def asset_id(code: str) -> str:
    return LEGACY_ASSETS.get(code, (code, code))[0]


def asset_altname(code: str) -> str:
    return LEGACY_ASSETS.get(code, (code, code))[1]


@dataclass(frozen=True)
class KrakenPair:
    """One synthetic market under Kraken's names."""

    symbol: str  # the market's own id (``BTCUSDT``)
    id: str  # Kraken's pair id, the key of AssetPairs / OHLC / Trades results (``XBTUSDT``)
    altname: str
    wsname: str
    base: str  # Kraken asset ids
    quote: str


def kraken_pair(symbol: str, base: str, quote: str) -> KrakenPair:
    """Legacy pairs of two X/Z assets are keyed ``XXBTZUSD`` (altname ``XBTUSD``); newer ones by altname."""
    b_id, q_id, b_alt, q_alt = asset_id(base), asset_id(quote), asset_altname(base), asset_altname(quote)
    altname = b_alt + q_alt
    legacy = base in LEGACY_ASSETS and quote in LEGACY_ASSETS
    return KrakenPair(symbol, b_id + q_id if legacy else altname, altname, f"{b_alt}/{q_alt}", b_id, q_id)


def pairs(state: EmulatorState) -> dict[str, KrakenPair]:
    """Every listed market by Kraken pair id (markets listed at runtime included)."""
    out: dict[str, KrakenPair] = {}
    for symbol in state.market.symbols:
        spec = state.market.spec(symbol)
        pair = kraken_pair(symbol, spec.base, spec.quote)
        out[pair.id] = pair
    return out


def _dec(units: int, decimals: int) -> str:
    if decimals == 0:
        return str(units)
    q, r = divmod(units, 10**decimals)
    return f"{q}.{r:0{decimals}d}"


def pair_entry(state: EmulatorState, pair: KrakenPair, info: str = "info") -> dict[str, Any]:
    """The AssetPairs entry of ``pair`` (``info`` = info | leverage | fees | margin, as Kraken's parameter)."""
    spec = state.market.spec(pair.symbol)
    pd_, qd = spec.price_decimals, spec.qty_decimals
    leverage = list(_LEVERAGE.get(spec.base, [])) if spec.quote in ("USDT", "USD", "EUR") else []
    fees = {"fees": _FEES, "fees_maker": _FEES_MAKER, "fee_volume_currency": "ZUSD"}
    if info == "leverage":
        return {"leverage_buy": leverage, "leverage_sell": leverage}
    if info == "fees":
        return fees
    if info == "margin":
        return {"margin_call": 80, "margin_stop": 40}
    return {
        "altname": pair.altname,
        "wsname": pair.wsname,
        "aclass_base": "currency",
        "base": pair.base,
        "aclass_quote": "currency",
        "quote": pair.quote,
        "lot": "unit",
        "cost_decimals": max(pd_, 5),
        "pair_decimals": pd_,
        "lot_decimals": qd,
        "lot_multiplier": 1,
        "leverage_buy": leverage,
        "leverage_sell": leverage,
        **fees,
        "margin_call": 80,
        "margin_stop": 40,
        "ordermin": _dec(1, qd),
        "costmin": "0.5",
        "tick_size": _dec(1, pd_),
        "status": PAIR_STATUS.get(state.status.get(pair.symbol, "TRADING"), "online"),
        "long_position_limit": 250 if leverage else 0,
        "short_position_limit": 200 if leverage else 0,
    }


def asset_entries(state: EmulatorState) -> dict[str, dict[str, Any]]:
    """The Assets entries of every asset of a listed pair. ``decimals`` is never below a pair's
    ``lot_decimals`` (ccxt would otherwise coarsen the market's amount precision to it)."""
    lots: dict[str, int] = {}
    for symbol in state.market.symbols:
        spec = state.market.spec(symbol)
        lots[spec.base] = max(lots.get(spec.base, 0), spec.qty_decimals)
        lots.setdefault(spec.quote, 0)
    out: dict[str, dict[str, Any]] = {}
    for code in sorted(lots, key=asset_id):
        fiat = code in _FIAT
        decimals = 4 if fiat else (10 if code in LEGACY_ASSETS else 8)
        entry: dict[str, Any] = {
            "aclass": "currency",
            "altname": asset_altname(code),
            "decimals": max(decimals, lots[code]),
            "display_decimals": 2 if fiat else (4 if code in ("USDT", "USDC") else 5),
        }
        if not fiat:
            entry["collateral_value"] = 1.0 if code in ("BTC", "ETH", "USDT", "USDC") else 0.75
        entry["status"] = "enabled"
        out[asset_id(code)] = entry
    return out
