"""A private PostgreSQL server for tests: Debian's ``postgresql`` package, a throwaway cluster.

    with PostgresServer(host="10.1.2.1", password=secret) as pg:
        pg.port, pg.user, pg.database   # a database of that name, owned by that user

``initdb`` makes a cluster in a fresh temp dir (password authentication, scram-sha-256, from any
address), ``postgres`` serves it on ``host:port`` as a child of this process, with durability off
(``fsync``, ``synchronous_commit``: a test's data need not survive a power cut). PostgreSQL refuses
to run as root: under root the cluster belongs to the ``postgres`` user the package creates and
the server runs as that user. ``stop()`` asks for a fast shutdown, then SIGKILLs, and removes the
directory. A missing package or a server that does not come up raises :class:`ServiceError` with
the reason and the server log's tail; the password never appears in it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ccxt_questdb_assets.core.errors import ServiceError
from ccxt_questdb_assets.services.ports import free_port

__all__ = ["PostgresServer", "find_postgres_bindir"]

INSTALL_HINT = "apt-get install postgresql"


def find_postgres_bindir() -> Path:
    """The directory of ``initdb`` and ``postgres``: Debian's newest ``/usr/lib/postgresql/N/bin``,
    else the one holding ``initdb`` on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise ServiceError(f"PostgreSQL's initdb was not found ({INSTALL_HINT})")


class PostgresServer:
    """A PostgreSQL cluster in a temp dir, its server a child of this process."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        user: str = "dagster",
        password: str,
        database: str = "dagster",
        startup_timeout_s: float = 60.0,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.user = user
        self.database = database
        self._password = password
        self.startup_timeout_s = startup_timeout_s
        self.bindir = find_postgres_bindir()
        self.workdir = Path(tempfile.mkdtemp(prefix="ccxt-questdb-pg-"))
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None
        # PostgreSQL refuses root: the cluster is then the postgres user's.
        self._account = pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    def _as_owner(self) -> dict[str, object]:
        if self._account is None:
            return {}
        return {"user": self._account.pw_uid, "group": self._account.pw_gid, "extra_groups": []}

    def _log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:].replace(self._password, "***")
        except OSError:
            return "(no log)"

    def start(self) -> PostgresServer:
        if self._account is None and os.geteuid() == 0:
            raise ServiceError(f"no postgres user to run PostgreSQL as ({INSTALL_HINT})")
        if self._account is not None:
            os.chown(self.workdir, self._account.pw_uid, self._account.pw_gid)
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self._password + "\n")
        if self._account is not None:
            os.chown(pwfile, self._account.pw_uid, self._account.pw_gid)
        pwfile.chmod(0o600)
        try:
            init = subprocess.run(
                [
                    str(self.bindir / "initdb"),
                    "-D", str(self.data_dir),
                    "-U", self.user,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "-E", "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                capture_output=True,
                text=True,
                timeout=120,
                **self._as_owner(),  # type: ignore[arg-type]
            )  # fmt: skip
        except OSError as exc:
            raise ServiceError(f"cannot run initdb in {self.bindir}: {exc} ({INSTALL_HINT})") from exc
        finally:
            pwfile.unlink(missing_ok=True)
        if init.returncode != 0:
            raise ServiceError(f"initdb failed ({init.returncode}): {(init.stderr or init.stdout)[-2000:]}")
        with (self.data_dir / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 0.0.0.0/0 scram-sha-256\n")
        cmd = [
            str(self.bindir / "postgres"),
            "-D", str(self.data_dir),
            "-c", f"listen_addresses={self.host}",
            "-p", str(self.port),
            "-c", f"unix_socket_directories={self.workdir}",
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            "-c", "max_connections=200",
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._as_owner(),  # type: ignore[arg-type]
            )
        self._wait_ready()
        self._create_database()
        return self

    def connect(self, dbname: str | None = None):  # noqa: ANN201  (a psycopg connection)
        """An autocommit connection to ``dbname`` (the server's database by default)."""
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self._password,
            dbname=dbname or self.database,
            connect_timeout=2,
            autocommit=True,
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        last = ""
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ServiceError(
                    f"postgres exited with code {self.process.returncode} during startup:\n{self._log_tail()}"
                )
            try:
                with self.connect("postgres") as conn:
                    conn.execute("select 1")
                return
            except Exception as exc:  # noqa: BLE001
                last = str(exc).replace(self._password, "***")
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(
                    f"postgres on {self.host}:{self.port} not ready within {self.startup_timeout_s:.0f} s "
                    f"({last}):\n{self._log_tail()}"
                )
            time.sleep(0.1)

    def _create_database(self) -> None:
        if self.database == "postgres":
            return
        with self.connect("postgres") as conn:
            conn.execute(f'CREATE DATABASE "{self.database}" OWNER "{self.user}"')

    def stop(self, timeout_s: float = 15.0) -> None:
        """Fast shutdown (SIGINT), SIGKILL after ``timeout_s``; the cluster's directory is removed."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"PostgresServer({self.user}@{self.host}:{self.port}/{self.database})"
