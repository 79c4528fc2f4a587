"""Fault injection: a test arms a fault for the next N matching API requests.

Kinds (``kind`` strings):

* ``"429"``, ``"418"``: rate limit / IP ban with ``Retry-After`` and Binance's -1003 JSON body.
* ``"403"``: HTTP 403 with a -1003 JSON body (the notes: -1003 on a non-429 status).
* ``"500"``: Binance JSON error body (-1000, unknown error).
* ``"502"``, ``"503"``: HTML error page from the "load balancer".
* ``"504"``: gateway timeout with an HTML body.
* ``"delay"``: sleep ``delay_s`` seconds, then answer normally (to exceed client timeouts).
* ``"truncated_json"``: the normal 200 answer cut in the middle.
* ``"drop_connection"``: close the socket without any response.
* ``"empty_page"``: 200 ``[]`` although data exists.
* ``"duplicate_rows"``: the normal list with its middle row and last row repeated next to themselves.
* ``"out_of_order_rows"``: the normal list shuffled deterministically (never left sorted).
* ``"rows"``: 200 with the rule's ``rows`` (any JSON value) in place of the answer, to serve a
  given malformed page.

``after=N`` lets the first N matching requests pass before the fault starts (every armed rule
counts every matching request), so a test can arm faults at chosen positions of a long backfill.

Error faults (429/418/403/5xx/drop) are answered before the handler and cost no weight;
data faults (delay, truncated_json, empty_page, duplicate_rows, out_of_order_rows, rows) run the
handler and are charged like a normal request. ``path=None`` matches every API path,
otherwise the request path must be equal.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["DATA_FAULTS", "ERROR_FAULTS", "FAULT_KINDS", "FaultInjector", "FaultRule", "mangle_rows"]

ERROR_FAULTS = frozenset({"429", "418", "403", "500", "502", "503", "504", "drop_connection"})
DATA_FAULTS = frozenset({"delay", "truncated_json", "empty_page", "duplicate_rows", "out_of_order_rows", "rows"})
FAULT_KINDS = ERROR_FAULTS | DATA_FAULTS


@dataclass
class FaultRule:
    kind: str
    remaining: int = 1
    path: str | None = None
    retry_after: int | None = None  # seconds, for 429/418 (default 1)
    delay_s: float | None = None  # for "delay" (default 2.0)
    after: int = 0  # matching requests let through before the fault starts
    rows: Any = None  # the answer served by "rows"

    @classmethod
    def armed(cls, body: Mapping[str, Any]) -> FaultRule:
        """The rule a ``POST /_emulator/faults`` body asks for (the arguments of
        ``EmulatorControl.inject``); ValueError or TypeError naming what is wrong."""
        count, after = int(body.get("count", 1)), int(body.get("after") or 0)
        kind, rows = str(body.get("kind")), body.get("rows")
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; valid: {', '.join(sorted(FAULT_KINDS))}")
        if count < 1:
            raise ValueError(f"fault count must be >= 1, got {count!r}")
        if after < 0:
            raise ValueError(f"fault after must be >= 0, got {after!r}")
        if kind == "rows" and rows is None:
            raise ValueError("fault 'rows' needs the rows to serve (any JSON value but null)")
        retry_after, delay_s = body.get("retry_after"), body.get("delay_s")
        return cls(
            kind,
            count,
            body.get("path"),
            None if retry_after is None else int(retry_after),
            None if delay_s is None else float(delay_s),
            after,
            rows,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultInjector:
    """Armed faults, matched in the order they were added."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> FaultRule:
        """Arm ``rule`` after the rules already armed."""
        with self._lock:
            self._rules.append(rule)
        return rule

    def take(self, path: str) -> FaultRule | None:
        """The first armed rule matching ``path`` and past its ``after`` (its count decremented), or
        None; rules still waiting count this request."""
        fired = None
        with self._lock:
            for rule in list(self._rules):
                if rule.path is not None and rule.path != path:
                    continue
                if rule.after > 0:
                    rule.after -= 1
                elif fired is None:
                    fired = rule
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
        return fired

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_dict() for r in self._rules]

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()


def mangle_rows(kind: str, rows: list[Any]) -> list[Any]:
    """Apply a row-level data fault to a list answer."""
    if kind == "empty_page":
        return []
    if kind == "duplicate_rows" and rows:
        mid = len(rows) // 2
        out = rows[: mid + 1] + [rows[mid]] + rows[mid + 1 :]
        return out + [out[-1]]
    if kind == "out_of_order_rows" and len(rows) > 1:
        out = list(rows)
        rnd = random.Random(len(rows))
        for _ in range(20):
            rnd.shuffle(out)
            if out != rows:
                return out
        return rows[::-1]
    return rows
