"""Answers no exchange writes itself: the load balancer's HTML error pages."""

from __future__ import annotations

from ccxt_questdb_assets.emulator.dialects.base import Answer

__all__ = ["gateway_page"]

_HTML = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
)
_REASONS = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out", 404: "Not Found"}


def gateway_page(code: int, headers: dict[str, str] | None = None) -> Answer:
    """The HTML page a front proxy answers with ``code`` (404, 502, 503 or 504)."""
    return Answer(code, _HTML.format(code=code, reason=_REASONS[code]), dict(headers or {}), "text/html")
