"""What a client of a QuestDB server is given: its REST URL, PG wire DSN and ILP configuration,
read off the server's connection (for a server this process runs, or one it is only told of)."""

from __future__ import annotations

from ccxt_questdb_assets.storage.connection import QuestDBConnection

__all__ = ["QuestDBEndpoints"]


class QuestDBEndpoints:
    """``http_url``, ``pg_dsn`` and ``ilp_conf`` of ``connection``, which the server class defines."""

    @property
    def connection(self) -> QuestDBConnection:
        raise NotImplementedError(f"{type(self).__name__} must define its connection")

    @property
    def http_url(self) -> str:
        return self.connection.rest_url

    @property
    def pg_dsn(self) -> str:
        """The PG wire DSN, password included (default admin/quest)."""
        return self.connection.to_dsn(include_password=True)

    @property
    def ilp_conf(self) -> str:
        return self.connection.ilp_conf()
