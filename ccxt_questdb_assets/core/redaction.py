"""Hiding secrets in text meant for logs, metadata and error messages."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

REDACTED = "***"


def redact_dsn(dsn: str | None) -> str | None:
    """``dsn`` with any password replaced by ``***``; host and port are kept as written."""
    if not dsn:
        return dsn
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparseable DSN>"
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return dsn
    user = userinfo.split(":", 1)[0]
    netloc = f"{user}:{REDACTED}@{hostport}"
    return SplitResult(parts.scheme, netloc, parts.path, parts.query, parts.fragment).geturl()
