"""A QuestDB DSN (``postgresql://user:password@host:port/database?sslmode=...``) read into the
fields of ``QuestDBConnection``; errors show the DSN with its password hidden."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.redaction import redact_dsn

DSN_SCHEMES = ("postgresql", "postgres")
DSN_QUERY_KEYS = ("sslmode", "connect_timeout")


def dsn_fields(dsn: str) -> dict[str, Any]:
    """The connection fields ``dsn`` sets (host, port, database, user, password, TLS, timeout)."""
    shown = redact_dsn(dsn)
    try:
        parts = urlsplit(dsn.strip())
        port = parts.port
    except (ValueError, AttributeError):
        raise ConfigError(
            f"cannot parse QuestDB DSN {shown!r}; expected postgresql://user:password@host:8812/qdb"
        ) from None
    if parts.scheme not in DSN_SCHEMES:
        raise ConfigError(f"QuestDB DSN {shown!r} must start with postgresql:// (PG wire); got scheme {parts.scheme!r}")
    kwargs: dict[str, Any] = {}
    if parts.hostname:
        kwargs["host"] = parts.hostname
    if port is not None:
        kwargs["port"] = port
    db = unquote(parts.path.lstrip("/"))
    if "/" in db:
        raise ConfigError(f"QuestDB DSN {shown!r} has a bad database name {db!r}")
    if db:
        kwargs["database"] = db
    if parts.username:
        kwargs["user"] = unquote(parts.username)
    if parts.password is not None:
        kwargs["password"] = unquote(parts.password)
    if parts.query:
        for item in parts.query.split("&"):
            if not item:
                continue
            key, _, value = item.partition("=")
            key, value = unquote(key), unquote(value)
            if key == "sslmode":
                if value in ("disable", "allow", "prefer"):
                    kwargs["pg_tls"] = False
                elif value in ("require", "verify-ca", "verify-full"):
                    kwargs["pg_tls"] = True
                    kwargs["tls_verify"] = value != "require"
                else:
                    raise ConfigError(f"QuestDB DSN {shown!r}: unknown sslmode {value!r}")
            elif key == "connect_timeout":
                kwargs["connect_timeout"] = value
            else:
                raise ConfigError(
                    f"QuestDB DSN {shown!r}: unknown parameter {key!r}; valid: {', '.join(DSN_QUERY_KEYS)}"
                )
    return kwargs
