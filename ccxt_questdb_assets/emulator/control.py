"""HTTP client for the emulator's ``/_emulator`` control routes (works across processes).

Standard library only, so tests and benchmarks can use it from sync code without an event loop.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

__all__ = ["EmulatorControl"]


class EmulatorControl:
    """Read the request log, arm faults, move the clock and set the weight budget of an emulator."""

    def __init__(self, base_url: str, *, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def _call(
        self, method: str, route: str, body: dict[str, Any] | None = None, query: dict[str, Any] | None = None
    ) -> Any:
        url = f"{self.base_url}/_emulator/{route}"
        query = {k: v for k, v in (query or {}).items() if v is not None}
        if query:
            url += "?" + urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            url, data=data, method=method, headers={"Content-Type": "application/json"} if data else {}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise RuntimeError(f"emulator control {method} {route} failed: HTTP {exc.code} {detail}") from None

    # ---- request log
    def requests(self, path: str | None = None, since_seq: int = 0) -> list[dict[str, Any]]:
        """Logged API requests (oldest first): seq, time_ms, method, path, params, status, weight, fault, client."""
        return self._call("GET", "requests", query={"path": path, "since_seq": since_seq or None})["requests"]

    def count(self, path: str | None = None) -> int:
        return int(self._call("GET", "requests/count", query={"path": path})["count"])

    def clear_requests(self) -> None:
        self._call("DELETE", "requests")

    # ---- faults
    def inject(
        self,
        kind: str,
        count: int = 1,
        path: str | None = None,
        retry_after: int | None = None,
        delay_s: float | None = None,
        *,
        after: int = 0,
        rows: Any = None,
    ) -> dict[str, Any]:
        """Arm fault ``kind`` for ``count`` API requests (to ``path`` only, if given), starting after
        ``after`` matching requests; ``rows`` is the answer a ``"rows"`` fault serves."""
        body = {
            "kind": str(kind),
            "count": count,
            "path": path,
            "retry_after": retry_after,
            "delay_s": delay_s,
            "after": after,
            "rows": rows,
        }
        return self._call("POST", "faults", body)["fault"]

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "faults")["faults"]

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    # ---- clock
    def clock(self) -> dict[str, Any]:
        return self._call("GET", "clock")

    def now_ms(self) -> int:
        return int(self.clock()["now_ms"])

    def freeze_clock(self, now_ms: int) -> None:
        self._call("POST", "clock", {"frozen_ms": int(now_ms)})

    def unfreeze_clock(self) -> None:
        self._call("POST", "clock", {"frozen_ms": None, "offset_ms": 0})

    def set_clock_offset(self, offset_ms: int) -> None:
        self._call("POST", "clock", {"frozen_ms": None, "offset_ms": int(offset_ms)})

    # ---- weight budget
    def config(self, dialect: str | None = None) -> dict[str, Any]:
        """The budget of ``dialect`` (Binance spot's by default) and every dialect's ``limits``."""
        return self._call("GET", "config", query={"dialect": dialect})

    def set_weight_limit(self, limit: int, *, reset_used: bool = True, dialect: str | None = None) -> None:
        body: dict[str, Any] = {"weight_limit": int(limit), "reset_weight": reset_used}
        if dialect is not None:
            body["dialect"] = dialect
        self._call("POST", "config", body)

    def used_weight(self, dialect: str | None = None) -> int:
        return int(self.config(dialect)["used_weight"])

    # ---- public archive
    def archive(self) -> dict[str, Any]:
        """The archive's publication lags and its missing and corrupt file names."""
        return self._call("GET", "archive")

    def set_archive(
        self,
        *,
        missing: list[str] | None = None,
        corrupt: list[str] | None = None,
        daily_publish_ms: int | None = None,
        monthly_publish_ms: int | None = None,
    ) -> dict[str, Any]:
        """Files (by name, ``BTCUSDT-1m-2024-02-10.zip``) that answer 404 or disagree with their
        checksum, and how long after its span a file appears; ``reset()`` restores the defaults."""
        body = {
            "missing": missing,
            "corrupt": corrupt,
            "daily_publish_ms": daily_publish_ms,
            "monthly_publish_ms": monthly_publish_ms,
        }
        return self._call("POST", "archive", {k: v for k, v in body.items() if v is not None})

    # ---- misc
    def market(self) -> list[dict[str, Any]]:
        return self._call("GET", "market")["symbols"]

    def list_market(
        self, base: str, quote: str, *, listing_ms: int | None = None, base_price: float = 10.0, status: str = "TRADING"
    ) -> dict[str, Any]:
        """List a new market ``BASE/QUOTE`` (from the current hour unless ``listing_ms``); ``exchangeInfo``
        shows it at once with ``status`` (not ``TRADING``: ccxt marks it inactive). ``reset()`` delists it."""
        body = {"base": base, "quote": quote, "listing_ms": listing_ms, "base_price": base_price, "status": status}
        return self._call("POST", "market", body)["market"]

    def health(self) -> dict[str, Any]:
        return self._call("GET", "health")

    def reset(self) -> None:
        """Clear log and faults, unfreeze the clock, restore the default weight limit and used weight,
        delist markets listed with :meth:`list_market`."""
        self._call("POST", "reset")
