"""How to reach a QuestDB server: PG wire (reads, DDL) and HTTP (ILP writes, REST).

``QuestDBConnection`` is an immutable settings object. Build it from a DSN, a mapping (``from_mapping``,
strict keys) or the environment (``from_env``). It never shows its password: ``repr``/``str`` and every
error message are redacted. ``pg_conninfo()`` and ``ilp_conf()`` are the only outputs that carry the
password, because the clients need it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, urlsplit

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.redaction import REDACTED, redact_dsn
from ccxt_questdb_assets.storage.questdb_dsn import dsn_fields

__all__ = [
    "QuestDBConnection",
    "CONNECTION_KEYS",
    "DEFAULT_PG_PORT",
    "DEFAULT_HTTP_PORT",
    "DEFAULT_DATABASE",
    "DEFAULT_USER",
    "DEFAULT_PASSWORD",
    "redact_dsn",
    "parse_http_address",
]

DEFAULT_HOST = "localhost"
DEFAULT_PG_PORT = 8812
DEFAULT_HTTP_PORT = 9000
DEFAULT_DATABASE = "qdb"
DEFAULT_USER = "admin"
DEFAULT_PASSWORD = "quest"

#: Keys ``from_mapping`` accepts.
CONNECTION_KEYS: frozenset[str] = frozenset(
    {
        "dsn",
        "host",
        "port",
        "database",
        "user",
        "password",
        "http",
        "http_host",
        "http_port",
        "tls",
        "pg_tls",
        "http_tls",
        "tls_verify",
        "connect_timeout",
    }
)
# Keys a DSN already sets; giving them next to a DSN is ambiguous.
_DSN_PARTS = ("host", "port", "database", "user")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

ENV_DSN = "CCXT_QUESTDB_DSN"
ENV_HOST = "CCXT_QUESTDB_HOST"
ENV_PG_PORT = "CCXT_QUESTDB_PG_PORT"
ENV_DATABASE = "CCXT_QUESTDB_DATABASE"
ENV_USER = "CCXT_QUESTDB_USER"
ENV_PASSWORD = "CCXT_QUESTDB_PASSWORD"
ENV_HTTP = "CCXT_QUESTDB_HTTP"
ENV_HTTP_PORT = "CCXT_QUESTDB_HTTP_PORT"
ENV_TLS = "CCXT_QUESTDB_TLS"
ENV_TLS_VERIFY = "CCXT_QUESTDB_TLS_VERIFY"


def _as_bool(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def port_number(value: object, name: str) -> int:
    """``value`` as a TCP port number (1..65535), or a ConfigError naming ``name``."""
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a TCP port number (1-65535), got {value!r}")
    try:
        port = int(str(value).strip())
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a TCP port number (1-65535), got {value!r}") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"{name} must be a TCP port number (1-65535), got {port}")
    return port


def _as_host(value: object, name: str) -> str:
    host = str(value).strip()
    if not host or any(c in host for c in " \t\r\n;/@?#"):
        raise ConfigError(f"{name} must be a host name or IP address, got {value!r}")
    return host


def parse_http_address(value: str, name: str = "http") -> tuple[str | None, int | None, bool | None]:
    """``host``, ``port`` and TLS flag from ``host:port``, ``host``, ``:port`` or ``http(s)://host:port``.

    Missing parts come back as None.
    """
    raw = str(value).strip()
    if not raw:
        raise ConfigError(f"{name} must be host:port or http(s)://host:port, got an empty value")
    tls: bool | None = None
    if "://" in raw:
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https"):
            raise ConfigError(f"{name} must use http:// or https://, got {parts.scheme!r}")
        if parts.path not in ("", "/") or parts.query or parts.username or parts.password:
            raise ConfigError(f"{name} must be just scheme://host:port, got {raw!r}")
        tls = parts.scheme == "https"
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"{name} has a bad port: {raw!r}") from None
        host = parts.hostname
        return (_as_host(host, name) if host else None), port, tls
    if raw.startswith("["):  # [::1]:9000
        host_part, _, rest = raw[1:].partition("]")
        port_part = rest[1:] if rest.startswith(":") else None
        return _as_host(host_part, name), (port_number(port_part, name) if port_part else None), tls
    host_part, sep, port_part = raw.rpartition(":")
    if not sep:
        return _as_host(raw, name), None, tls
    return (_as_host(host_part, name) if host_part else None), port_number(port_part, name), tls


def _ilp_escape(value: str) -> str:
    # In a questdb client configuration string a literal ';' is written ';;'.
    return value.replace(";", ";;")


@dataclass(frozen=True)
class QuestDBConnection:
    """Where and how to reach QuestDB.

    ``http_host`` defaults to ``host``. ``pg_tls`` makes PG wire use ``sslmode=verify-full`` (``require``
    when ``tls_verify`` is false); ``http_tls`` makes ILP/REST use HTTPS.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PG_PORT
    database: str = DEFAULT_DATABASE
    user: str = DEFAULT_USER
    password: str = field(default=DEFAULT_PASSWORD, repr=False)
    http_host: str | None = None
    http_port: int = DEFAULT_HTTP_PORT
    pg_tls: bool = False
    http_tls: bool = False
    tls_verify: bool = True
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", _as_host(self.host, "host"))
        object.__setattr__(self, "port", port_number(self.port, "port"))
        object.__setattr__(self, "http_host", _as_host(self.http_host, "http_host") if self.http_host else self.host)
        object.__setattr__(self, "http_port", port_number(self.http_port, "http_port"))
        for name in ("database", "user"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v.strip():
                raise ConfigError(f"{name} must be a non-empty string, got {v!r}")
        if not isinstance(self.password, str):
            raise ConfigError(f"password must be a string, got a {type(self.password).__name__}")
        for name in ("pg_tls", "http_tls", "tls_verify"):
            object.__setattr__(self, name, _as_bool(getattr(self, name), name))
        try:
            timeout = float(self.connect_timeout)
        except (TypeError, ValueError):
            raise ConfigError(f"connect_timeout must be a number of seconds, got {self.connect_timeout!r}") from None
        if not math.isfinite(timeout) or timeout <= 0:
            raise ConfigError(f"connect_timeout must be a positive number of seconds, got {self.connect_timeout!r}")
        object.__setattr__(self, "connect_timeout", timeout)

    # ----- construction -------------------------------------------------------------------------

    @classmethod
    def from_dsn(cls, dsn: str, **overrides: Any) -> QuestDBConnection:
        """From ``postgresql://user:password@host:port/database[?sslmode=...&connect_timeout=...]``.

        ``overrides`` are constructor fields (e.g. ``password``, ``http_port``).
        """
        return cls(**{**dsn_fields(dsn), **overrides})

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], *, ignore: Iterable[str] = ()) -> QuestDBConnection:
        """From a config mapping. Keys: see ``CONNECTION_KEYS``; ``ignore`` lists keys the caller handles.

        ``dsn`` cannot be combined with ``host``/``port``/``database``/``user``; ``password``, HTTP and
        TLS keys may accompany it and override it. ``http`` is ``host:port`` or ``http(s)://host:port``.
        ``tls`` sets both ``pg_tls`` and ``http_tls``.
        """
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"QuestDB connection settings must be a mapping, got {type(mapping).__name__}")
        ignored = set(ignore)
        valid = ", ".join(sorted(CONNECTION_KEYS | ignored))
        data: dict[str, Any] = {}
        for key, value in mapping.items():
            if key in ignored:
                continue
            if key not in CONNECTION_KEYS:
                raise ConfigError(f"unknown QuestDB connection key {key!r}; valid keys: {valid}")
            if value is not None:
                data[key] = value
        kwargs: dict[str, Any] = {}
        if "tls" in data:
            both = _as_bool(data.pop("tls"), "tls")
            kwargs["pg_tls"] = both
            kwargs["http_tls"] = both
        if "http" in data:
            if "http_host" in data or "http_port" in data:
                raise ConfigError("give either http or http_host/http_port, not both")
            h, p, tls = parse_http_address(data.pop("http"), "http")
            if h:
                kwargs["http_host"] = h
            if p:
                kwargs["http_port"] = p
            if tls is not None:
                kwargs["http_tls"] = tls
        dsn = data.pop("dsn", None)
        kwargs.update(data)
        if dsn is not None:
            clash = [k for k in _DSN_PARTS if k in data]
            if clash:
                raise ConfigError(
                    f"QuestDB settings give both dsn and {', '.join(clash)}; put them in the DSN or drop the DSN"
                )
            if not isinstance(dsn, str):
                raise ConfigError(f"dsn must be a string, got {type(dsn).__name__}")
            return cls.from_dsn(dsn, **kwargs)
        return cls(**kwargs)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> QuestDBConnection:
        """From ``CCXT_QUESTDB_*`` variables.

        ``CCXT_QUESTDB_DSN`` (else ``_HOST``, ``_PG_PORT``, ``_DATABASE``, ``_USER``), password from
        ``CCXT_QUESTDB_PASSWORD`` (overrides the DSN's), HTTP from ``CCXT_QUESTDB_HTTP``
        (``host:port`` / URL) else the PG host and ``CCXT_QUESTDB_HTTP_PORT``; ``CCXT_QUESTDB_TLS``,
        ``CCXT_QUESTDB_TLS_VERIFY``. Unset variables take the QuestDB defaults.
        """
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            v = env.get(name)
            return v.strip() if v is not None and v.strip() != "" else None

        data: dict[str, Any] = {}
        dsn = get(ENV_DSN)
        if dsn:
            data["dsn"] = dsn
        else:
            for key, name in (
                ("host", ENV_HOST),
                ("port", ENV_PG_PORT),
                ("database", ENV_DATABASE),
                ("user", ENV_USER),
            ):
                if get(name) is not None:
                    data[key] = get(name)
        if env.get(ENV_PASSWORD) is not None:
            data["password"] = env[ENV_PASSWORD]
        if get(ENV_HTTP):
            data["http"] = get(ENV_HTTP)
        elif get(ENV_HTTP_PORT):
            data["http_port"] = get(ENV_HTTP_PORT)
        if get(ENV_TLS) is not None:
            data["tls"] = get(ENV_TLS)
        if get(ENV_TLS_VERIFY) is not None:
            data["tls_verify"] = get(ENV_TLS_VERIFY)
        try:
            return cls.from_mapping(data)
        except ConfigError as exc:
            raise ConfigError(f"QuestDB settings from the environment: {exc}") from None

    def with_(self, **changes: Any) -> QuestDBConnection:
        """A copy with some fields changed."""
        return replace(self, **changes)

    # ----- outputs ------------------------------------------------------------------------------

    @property
    def sslmode(self) -> str:
        if not self.pg_tls:
            return "disable"
        return "verify-full" if self.tls_verify else "require"

    def to_dsn(self, *, include_password: bool = False) -> str:
        """A ``postgresql://`` DSN; the password is ``***`` unless ``include_password``."""
        pw = quote(self.password, safe="") if include_password else REDACTED
        host = f"[{self.host}]" if ":" in self.host else self.host
        dsn = f"postgresql://{quote(self.user, safe='')}:{pw}@{host}:{self.port}/{quote(self.database, safe='')}"
        return dsn + (f"?sslmode={self.sslmode}" if self.pg_tls else "")

    def pg_conninfo(self) -> str:
        """A libpq conninfo string for ``psycopg.connect`` (contains the password)."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host=self.host,
            port=self.port,
            dbname=self.database,
            user=self.user,
            password=self.password,
            sslmode=self.sslmode,
            connect_timeout=max(1, math.ceil(self.connect_timeout)),
        )

    def pg_connect(self, *, autocommit: bool = True, **kwargs: Any) -> Any:
        """A new ``psycopg.Connection`` (autocommit by default, as QuestDB wants)."""
        import psycopg

        return psycopg.connect(self.pg_conninfo(), autocommit=autocommit, **kwargs)

    @property
    def http_addr(self) -> str:
        host = f"[{self.http_host}]" if self.http_host and ":" in self.http_host else self.http_host
        return f"{host}:{self.http_port}"

    @property
    def rest_url(self) -> str:
        """Base URL of the HTTP server (REST ``/exec``, ``/exp``, ``/ping``)."""
        return f"{'https' if self.http_tls else 'http'}://{self.http_addr}"

    def ilp_conf(self, **options: Any) -> str:
        """A ``questdb.Sender.from_conf`` string for ILP over HTTP (contains the password).

        ``options`` are appended as ``key=value;`` (e.g. ``auto_flush_rows=50000``).
        """
        scheme = "https" if self.http_tls else "http"
        conf = (
            f"{scheme}::addr={self.http_addr};username={_ilp_escape(self.user)};password={_ilp_escape(self.password)};"
        )
        if self.http_tls and not self.tls_verify:
            conf += "tls_verify=unsafe_off;"
        for key, value in options.items():
            if isinstance(value, bool):
                value = "on" if value else "off"
            conf += f"{key}={_ilp_escape(str(value))};"
        return conf

    # ----- display (never the password) ---------------------------------------------------------

    def __repr__(self) -> str:
        return (
            f"QuestDBConnection(host={self.host!r}, port={self.port}, database={self.database!r}, "
            f"user={self.user!r}, password={REDACTED!r}, http_host={self.http_host!r}, "
            f"http_port={self.http_port}, pg_tls={self.pg_tls}, http_tls={self.http_tls}, "
            f"tls_verify={self.tls_verify}, connect_timeout={self.connect_timeout})"
        )

    def __str__(self) -> str:
        return f"{self.to_dsn()} (http {self.rest_url})"
