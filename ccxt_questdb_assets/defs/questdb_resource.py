"""QuestDBResource: where QuestDB is, as typed Dagster config; one client per process.

The password is a field like the others but is meant to be set with ``EnvVar`` (Dagster then
shows the variable's name, never its value); left unset, the library reads
``CCXT_QUESTDB_PASSWORD`` and falls back to QuestDB's default.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from dagster import ConfigurableResource
from pydantic import Field

from ccxt_questdb_assets.core.redaction import REDACTED
from ccxt_questdb_assets.storage.connection import ENV_PASSWORD, QuestDBConnection

if TYPE_CHECKING:
    from ccxt_questdb_assets.storage.client import QuestDBClient

_clients: dict[QuestDBConnection, QuestDBClient] = {}
_clients_lock = threading.Lock()

#: The fields a resource shares, by name, with its ``QuestDBConnection`` (whose ``pg_tls`` is ``tls``).
_CONNECTION_FIELDS = ("host", "port", "http_port", "database", "user")


class QuestDBResource(ConfigurableResource):
    """A QuestDB server reached over PG wire (reads) and ILP/HTTP (bulk writes)."""

    host: str = Field(default="127.0.0.1", description="QuestDB host.")
    port: int = Field(default=8812, description="PG wire port.")
    http_port: int = Field(default=9000, description="HTTP port (ILP writes, REST).")
    database: str = Field(default="qdb", description="PG wire database name.")
    user: str = Field(default="admin", description="PG wire and HTTP user.")
    password: str | None = Field(
        default=None, description=f"Use EnvVar('{ENV_PASSWORD}'); unset: that variable, else QuestDB's default."
    )
    tls: bool = Field(default=False, description="TLS for PG wire and HTTP.")
    visibility_timeout_s: float = Field(default=60.0, description="How long a write waits for WAL apply.")

    def __repr_args__(self) -> Any:
        # repr/str of a resource with a resolved password (inside a run, or given literally) hide it
        for name, value in super().__repr_args__():
            yield name, (REDACTED if name == "password" and value else value)

    def connection(self) -> QuestDBConnection:
        settings: dict[str, Any] = {name: getattr(self, name) for name in _CONNECTION_FIELDS}
        settings["tls"] = self.tls
        password = self.password if self.password is not None else os.environ.get(ENV_PASSWORD)
        if password:
            settings["password"] = password
        return QuestDBConnection.from_mapping(settings)

    def client(self) -> QuestDBClient:
        """The process-wide client of this server (thread-safe, reconnects after a restart)."""
        from ccxt_questdb_assets.storage.client import QuestDBClient  # its drivers load with the first client

        conn = self.connection()
        with _clients_lock:
            client = _clients.get(conn)
            if client is None:
                client = _clients[conn] = QuestDBClient(conn, visibility_timeout_s=self.visibility_timeout_s)
            return client

    @classmethod
    def from_connection(cls, conn: QuestDBConnection, **overrides: Any) -> QuestDBResource:
        """The resource for an already parsed connection (its password is left to ``overrides``)."""
        return cls(**{name: getattr(conn, name) for name in _CONNECTION_FIELDS}, tls=conn.pg_tls, **overrides)
