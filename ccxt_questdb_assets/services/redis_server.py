"""A throwaway ``redis-server`` for tests and the demo.

No persistence (``--save ''``, ``--appendonly no``), its own temp dir, bound to 127.0.0.1 on a free
port. ``stop()`` and ``start()`` again (or ``restart()``) reuse the same port, so a test can take
Redis away mid-run and bring it back at the same URL. ``kill()`` simulates a crash (SIGKILL).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ccxt_questdb_assets.core.errors import ServiceError
from ccxt_questdb_assets.services.ports import free_port, port_is_free
from ccxt_questdb_assets.services.process import ChildProcess, parent_death_preexec

__all__ = ["RedisServer", "find_redis_server", "redis_ping", "ENV_REDIS_SERVER"]

ENV_REDIS_SERVER = "CCXT_QUESTDB_REDIS_SERVER"
INSTALL_HINT = "install it with `apt-get install redis-server` (Debian/Ubuntu)"


def find_redis_server(binary: str | os.PathLike[str] | None = None) -> Path:
    """``binary``, else ``$CCXT_QUESTDB_REDIS_SERVER``, else ``redis-server`` on PATH or in /usr/bin, /usr/sbin."""
    if binary:
        p = Path(binary)
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise ServiceError(f"redis-server {p} is not an executable file; {INSTALL_HINT}")
        return p
    env_bin = os.environ.get(ENV_REDIS_SERVER, "").strip()
    if env_bin:
        return find_redis_server(env_bin)
    found = shutil.which("redis-server") or next(
        (
            c
            for c in ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server")
            if os.access(c, os.X_OK)
        ),
        None,
    )
    if not found:
        raise ServiceError(f"`redis-server` is not installed (not on PATH); {INSTALL_HINT}")
    return Path(found)


def redis_ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a Redis at ``host:port`` answers PING with PONG."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer(ChildProcess):
    """A ``redis-server`` child process.

    ``port`` None picks a free port once; it is kept across stop/start. Use as a context manager or
    call ``start()``/``stop()``; ``restart()`` loses the data (there is no persistence).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        workdir: str | os.PathLike[str] | None = None,
        binary: str | os.PathLike[str] | None = None,
        startup_timeout: float = 10.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="ccxt-questdb-redis-"))
        self._binary = binary
        self.startup_timeout = startup_timeout
        self.extra_args = tuple(extra_args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    def ping(self) -> bool:
        return redis_ping(self.host, self.port)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:]) or "(empty log)"
        except OSError:
            return "(no log)"

    def start(self) -> RedisServer:
        """Start (no-op if running) and wait for PING. ServiceError with the log tail on failure."""
        if self.is_running():
            return self
        binary = find_redis_server(self._binary)
        self.workdir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.startup_timeout
        # Right after a stop the port can linger briefly; redis uses SO_REUSEADDR, so this is short.
        while not port_is_free(self.port, self.host) and time.monotonic() < deadline:
            time.sleep(0.05)
        cmd = [
            str(binary),
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--logfile", str(self.log_path),
            "--protected-mode", "no",
            *self.extra_args,
        ]  # fmt: skip
        try:
            self.process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self.workdir,
                preexec_fn=parent_death_preexec(),  # noqa: PLW1509
            )
        except OSError as exc:
            raise ServiceError(f"cannot run {binary}: {exc}; {INSTALL_HINT}") from exc
        while True:
            code = self.process.poll()
            if code is not None:
                self.process = None
                raise ServiceError(
                    f"redis-server exited with code {code} on port {self.port}. "
                    f"Log ({self.log_path}):\n{self._log_tail()}"
                )
            if self.ping():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(
                    f"redis-server on port {self.port} did not answer PING within {self.startup_timeout:.0f} s. "
                    f"Log ({self.log_path}):\n{self._log_tail()}"
                )
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (clean shutdown), then SIGKILL after ``timeout`` s. Safe to call twice."""
        proc = self._take_running()
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def kill(self) -> None:
        """SIGKILL, as a crash would. Safe to call twice."""
        proc = self._take_running()
        if proc is None:
            return
        proc.kill()
        proc.wait(10)

    def close(self) -> None:
        """Stop and remove the temp dir this object created."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisServer({self.url}, {self._state()})"
