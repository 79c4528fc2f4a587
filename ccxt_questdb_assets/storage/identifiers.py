"""Table names: validated, then quoted. Identifiers cannot be bound as SQL parameters, so
this is the only place user text meets SQL, and it admits a closed alphabet only."""

from __future__ import annotations

import re

from ccxt_questdb_assets.core.errors import ConfigError

_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


def validate_table_name(name: object, *, what: str = "table") -> str:
    if not isinstance(name, str) or not _TABLE_RE.match(name):
        raise ConfigError(
            f"{what} {name!r} is not a valid table name: use 1 to 100 letters, digits and "
            "underscores, starting with a letter or underscore (e.g. 'crypto_ohlcv')"
        )
    return name


def quote_ident(name: str) -> str:
    """Quote an identifier that ``validate_table_name`` (or our own schema) admitted."""
    return '"' + validate_table_name(name) + '"'
