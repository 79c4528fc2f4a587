"""QuestDBConnection: parsing, validation, outputs and redaction (no server needed)."""

from __future__ import annotations

import dataclasses

import pytest
from psycopg.conninfo import conninfo_to_dict

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.storage.connection import CONNECTION_KEYS, QuestDBConnection, redact_dsn

SECRET = "s3cr;et@:/pw"


def test_defaults_are_questdb_defaults() -> None:
    c = QuestDBConnection()
    assert (c.host, c.port, c.database, c.user, c.password) == ("localhost", 8812, "qdb", "admin", "quest")
    assert (c.http_host, c.http_port) == ("localhost", 9000)
    assert c.rest_url == "http://localhost:9000"
    assert c.ilp_conf() == "http::addr=localhost:9000;username=admin;password=quest;"


def test_from_dsn_parses_every_part_and_http_follows_pg_host() -> None:
    c = QuestDBConnection.from_dsn("postgresql://bob:pw@db.example:18812/mydb?sslmode=require&connect_timeout=3")
    assert (c.host, c.port, c.database, c.user, c.password) == ("db.example", 18812, "mydb", "bob", "pw")
    assert (c.http_host, c.http_port) == ("db.example", 9000)
    assert c.pg_tls and not c.tls_verify and c.sslmode == "require"
    assert c.connect_timeout == 3.0


def test_dsn_with_percent_encoded_password_round_trips() -> None:
    c = QuestDBConnection(password=SECRET)
    again = QuestDBConnection.from_dsn(c.to_dsn(include_password=True))
    assert again == c


def test_pg_conninfo_is_usable_by_psycopg() -> None:
    c = QuestDBConnection(host="h", port=1234, database="d", user="u", password=SECRET)
    d = conninfo_to_dict(c.pg_conninfo())
    assert d["host"] == "h" and d["port"] == "1234" and d["dbname"] == "d" and d["user"] == "u"
    assert d["password"] == SECRET and d["sslmode"] == "disable"


def test_ilp_conf_escapes_semicolons_and_supports_options_and_tls() -> None:
    c = QuestDBConnection(http_host="ingest", http_port=19000, password="a;b", http_tls=True, tls_verify=False)
    conf = c.ilp_conf(auto_flush_rows=5000, request_timeout=1000)
    assert conf == (
        "https::addr=ingest:19000;username=admin;password=a;;b;tls_verify=unsafe_off;"
        "auto_flush_rows=5000;request_timeout=1000;"
    )
    assert c.rest_url == "https://ingest:19000"


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        ({"host": "q", "port": "8813"}, {"host": "q", "port": 8813, "http_host": "q", "http_port": 9000}),
        ({"dsn": "postgresql://q:1/qdb", "http": "w:9100"}, {"host": "q", "http_host": "w", "http_port": 9100}),
        ({"dsn": "postgresql://q/qdb", "http": "https://w"}, {"http_host": "w", "http_port": 9000, "http_tls": True}),
        ({"host": "q", "http": ":19000"}, {"http_host": "q", "http_port": 19000}),
        ({"host": "q", "http_port": 19000, "tls": "yes"}, {"pg_tls": True, "http_tls": True}),
        ({"dsn": "postgresql://u:old@q/qdb", "password": "new"}, {"password": "new", "user": "u"}),
    ],
)
def test_from_mapping(mapping: dict, expected: dict) -> None:
    c = QuestDBConnection.from_mapping(mapping)
    for k, v in expected.items():
        assert getattr(c, k) == v, k


def test_from_mapping_unknown_key_names_it_and_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as ei:
        QuestDBConnection.from_mapping({"hostname": "x"})
    msg = str(ei.value)
    assert "'hostname'" in msg
    for key in CONNECTION_KEYS:
        assert key in msg


def test_from_mapping_ignore_lets_caller_keys_through() -> None:
    c = QuestDBConnection.from_mapping({"dsn": "postgresql://q/qdb", "table_prefix": "x"}, ignore=["table_prefix"])
    assert c.host == "q"


def test_from_mapping_rejects_dsn_plus_host() -> None:
    with pytest.raises(ConfigError, match="both dsn and host"):
        QuestDBConnection.from_mapping({"dsn": "postgresql://q/qdb", "host": "other"})


@pytest.mark.parametrize(
    "mapping",
    [
        {"port": 0},
        {"port": "http"},
        {"http_port": 70000},
        {"host": "a b"},
        {"tls": "maybe"},
        {"connect_timeout": -1},
        {"dsn": "mysql://q/qdb"},
        {"dsn": "postgresql://q/qdb?options=x"},
        {"dsn": "postgresql://q/qdb?sslmode=bogus"},
        {"http": "ftp://w:1"},
    ],
)
def test_bad_values_raise_config_error(mapping: dict) -> None:
    with pytest.raises(ConfigError):
        QuestDBConnection.from_mapping(mapping)


def test_from_env() -> None:
    env = {
        "CCXT_QUESTDB_DSN": "postgresql://u:dsnpw@q:8899/qdb",
        "CCXT_QUESTDB_PASSWORD": SECRET,
        "CCXT_QUESTDB_HTTP": "http://w:9900",
        "CCXT_QUESTDB_PG_PORT": "1",  # ignored: the DSN names the PG server
    }
    c = QuestDBConnection.from_env(env)
    assert (c.host, c.port, c.user, c.password, c.http_host, c.http_port) == ("q", 8899, "u", SECRET, "w", 9900)


def test_from_env_without_dsn_uses_parts_and_http_port() -> None:
    c = QuestDBConnection.from_env({"CCXT_QUESTDB_PG_PORT": "18812", "CCXT_QUESTDB_HTTP_PORT": "19000"})
    assert (c.host, c.port, c.http_host, c.http_port) == ("localhost", 18812, "localhost", 19000)
    assert QuestDBConnection.from_env({}) == QuestDBConnection()


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        QuestDBConnection().host = "x"  # type: ignore[misc]


def test_repr_str_and_errors_never_show_the_password() -> None:
    c = QuestDBConnection.from_dsn(f"postgresql://u:{'s3cr%3Bet%40%3A%2Fpw'}@q:8812/qdb")
    assert c.password == SECRET
    for text in (repr(c), str(c), c.to_dsn(), repr([c]), f"{c}", f"{c!r}"):
        assert SECRET not in text and "s3cr" not in text
        assert "***" in text
    assert redact_dsn("postgresql://u:topsecret@q/qdb") == "postgresql://u:***@q/qdb"
    bad = [
        "postgresql://u:topsecret@q:notaport/qdb",
        "mysql://u:topsecret@q/qdb",
        "postgresql://u:topsecret@q/qdb?sslmode=nope",
        "postgresql://u:topsecret@q/qdb?foo=1",
    ]
    for dsn in bad:
        with pytest.raises(ConfigError) as ei:
            QuestDBConnection.from_dsn(dsn)
        assert "topsecret" not in str(ei.value) and "topsecret" not in repr(ei.value)
    with pytest.raises(ConfigError) as ei:
        QuestDBConnection.from_env({"CCXT_QUESTDB_DSN": "postgresql://u:topsecret@q:x/qdb"})
    assert "topsecret" not in str(ei.value)
