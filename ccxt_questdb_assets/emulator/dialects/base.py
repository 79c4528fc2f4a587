"""What a dialect is: the REST routes of one exchange, served over the shared synthetic market.

The emulator serves every dialect at once, told apart by path (Binance ``/api/v3/...``, OKX
``/api/v5/...``, Bybit ``/v5/...``, Coinbase ``/api/v3/brokerage/...``, Kraken ``/0/public/...``;
no two share a path). All of them share the market (the ground truth), the clock, the request
log and the fault injector; each has a request budget of its own and answers errors, rate limits
and faults in its own format.

A route handler takes the emulator state and the query and returns a JSON-able payload (or
:class:`RawJSON` text); it raises :class:`DialectError` for an answer in the exchange's error
format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ccxt_questdb_assets.emulator.faults import FaultRule
    from ccxt_questdb_assets.emulator.state import EmulatorState

__all__ = ["Answer", "Dialect", "DialectError", "RawJSON", "Route", "mangle_rows_at"]


class RawJSON(str):
    """A handler answer that is already JSON text (the fast path for big pages)."""


class DialectError(Exception):
    """An error answered in the exchange's own format: HTTP ``status``, JSON ``body``, extra headers."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status, self.body, self.headers = status, body, dict(headers or {})


Handler = Callable[["EmulatorState", Any], Any]


@dataclass(frozen=True)
class Route:
    """One API path: its handler and what a request costs against the dialect's budget (``weight``,
    or ``weight_of(query)`` where the cost depends on the request, e.g. on ``limit``)."""

    handler: Handler
    weight: int = 1
    weight_of: Callable[[Any], int] | None = None

    def cost(self, query: Any) -> int:
        if self.weight_of is None:
            return self.weight
        try:
            return self.weight_of(query)
        except (TypeError, ValueError):  # a malformed parameter: the handler answers the error
            return self.weight


@dataclass(frozen=True)
class Answer:
    """A whole HTTP answer a dialect gives for a fault or a spent budget."""

    status: int
    body: Any  # JSON-able, or str for a non-JSON body
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


class Dialect(Protocol):
    """One exchange's REST dialect (each dialect class subclasses it, inheriting ``headers``)."""

    name: str
    routes: dict[str, Route]
    #: The budget per ``budget_window_s`` seconds (in route weights) before ``rate_limited``.
    default_limit: int
    budget_window_s: int

    def headers(self, used: int) -> dict[str, str]:
        """Headers every answer carries (e.g. the weight used); none unless the dialect says so."""
        return {}

    def rate_limited(self, retry_after_s: int, used: int, limit: int) -> Answer:
        """The answer to a request over the budget."""
        ...

    def fault(self, rule: FaultRule, used: int) -> Answer:
        """The answer to an armed error fault (429, 418, 403, 500, 502, 503, 504)."""
        ...

    def mangle(self, rule: FaultRule, payload: Any) -> Any:
        """The answer with an armed data fault applied to its rows (see :mod:`..faults`): the dialect
        knows where its rows are (a bare list, ``data``, ``result.list``...)."""
        ...


def mangle_rows_at(rule: FaultRule, payload: Any, rows: list[Any] | None, put: Callable[[list[Any]], Any]) -> Any:
    """Apply a data fault to ``rows`` (the answer's row list, None if it has none) and ``put`` them back
    into the answer; the ``rows`` fault replaces the whole answer."""
    from ccxt_questdb_assets.emulator.faults import mangle_rows

    if rule.kind == "rows":
        return rule.rows
    if rows is None:
        return payload
    return put(mangle_rows(rule.kind, rows))
