"""Run the emulator: in this process (a thread) or as a subprocess on a free port.

The server binds port 0 and reports the port it got (stdout first line and ``--ready-file``), so
no port is ever guessed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp import web

from ccxt_questdb_assets.core.errors import ServiceError
from ccxt_questdb_assets.emulator.app import EmulatorState, create_app
from ccxt_questdb_assets.emulator.control import EmulatorControl
from ccxt_questdb_assets.emulator.weights import DEFAULT_WEIGHT_LIMIT

__all__ = ["EmulatorServer", "ThreadedEmulator", "serve_forever", "start_site"]

BACKLOG = 2048


async def start_site(state: EmulatorState, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Start serving ``state`` on ``host:port`` (0 = any free port); return the runner and base URL."""
    runner = web.AppRunner(create_app(state), access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=BACKLOG, reuse_address=True)
    await site.start()
    bound = runner.addresses[0][1]
    shown = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown}:{bound}"


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    Path(tmp).write_text(text)
    os.replace(tmp, path)


async def serve_forever(
    host: str = "127.0.0.1", port: int = 0, *, weight_limit: int = DEFAULT_WEIGHT_LIMIT, ready_file: str | None = None
) -> None:
    """Serve until SIGTERM/SIGINT; print the base URL as the first stdout line."""
    state = EmulatorState(default_weight_limit=weight_limit)
    runner, url = await start_site(state, host, port)
    print(url, flush=True)
    if ready_file:
        _write_atomic(ready_file, url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _wait_healthy(base_url: str, deadline: float) -> None:
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/_emulator/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise ServiceError(f"exchange emulator at {base_url} did not answer /_emulator/health in time: {last}")


class EmulatorServer:
    """The emulator as a subprocess (``python -m ccxt_questdb_assets.emulator serve``).

    Use as a context manager or call :meth:`start` / :meth:`stop`. ``base_url`` and ``control``
    are available once started. Startup failures raise :class:`ServiceError` with the log tail.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        port: int = 0,
        weight_limit: int = DEFAULT_WEIGHT_LIMIT,
        startup_timeout_s: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.weight_limit = weight_limit
        self.startup_timeout_s = startup_timeout_s
        self.base_url: str = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self.log_path: Path | None = None

    @property
    def control(self) -> EmulatorControl:
        if not self.base_url:
            raise ServiceError("exchange emulator is not started")
        return EmulatorControl(self.base_url)

    def _log_tail(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-2000:]
        return ""

    def start(self) -> EmulatorServer:
        self._dir = tempfile.TemporaryDirectory(prefix="ccxt-emulator-")
        ready = os.path.join(self._dir.name, "ready")
        self.log_path = Path(self._dir.name) / "server.log"
        cmd = [
            sys.executable,
            "-m",
            "ccxt_questdb_assets.emulator",
            "serve",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--weight-limit",
            str(self.weight_limit),
            "--ready-file",
            ready,
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.startup_timeout_s
        while not os.path.exists(ready):
            if self.proc.poll() is not None:
                raise ServiceError(
                    f"exchange emulator exited with code {self.proc.returncode} during startup "
                    f"({' '.join(cmd)}):\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(
                    f"exchange emulator did not report its port within {self.startup_timeout_s}s:\n{self._log_tail()}"
                )
            time.sleep(0.02)
        self.base_url = Path(ready).read_text().strip()
        try:
            _wait_healthy(self.base_url, deadline)
        except ServiceError:
            self.stop()
            raise
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout_s)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class ThreadedEmulator:
    """The emulator on an event loop in a daemon thread of this process (``state`` is directly usable).

    Cheaper to start than :class:`EmulatorServer` but shares the GIL with the caller.
    """

    def __init__(self, host: str = "127.0.0.1", *, weight_limit: int = DEFAULT_WEIGHT_LIMIT) -> None:
        self.host = host
        self.state = EmulatorState(default_weight_limit=weight_limit)
        self.base_url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None

    @property
    def control(self) -> EmulatorControl:
        return EmulatorControl(self.base_url)

    def start(self, timeout_s: float = 10.0) -> ThreadedEmulator:
        started = threading.Event()
        errors: list[BaseException] = []

        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                runner, self.base_url = await start_site(self.state, self.host, 0)
            except BaseException as exc:  # reported to the starting thread
                errors.append(exc)
                started.set()
                return
            started.set()
            try:
                await self._stop.wait()
            finally:
                await runner.cleanup()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(main())
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name="exchange-emulator", daemon=True)
        self._thread.start()
        if not started.wait(timeout_s):
            raise ServiceError("threaded exchange emulator did not start in time")
        if errors:
            raise ServiceError(f"threaded exchange emulator failed to start: {errors[0]!r}") from errors[0]
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout_s)
        self._thread = None

    def __enter__(self) -> ThreadedEmulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
