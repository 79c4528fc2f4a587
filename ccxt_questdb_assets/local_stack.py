"""The local services of the embedded default: a QuestDB and the bundled exchange emulator, wired to
the default project config through environment variables.

Used by ``ccxt-questdb demo`` and ``ccxt-questdb dev`` (through :mod:`ccxt_questdb_assets.dev_stack`)
and by ``ccxt-questdb soak``. QuestDB is started unless its data dir's server already runs (it is a
detached server: it outlives the command unless ``stop_started_questdb`` and this command started
it); the emulator is a child process, stopped on leaving. With ``CCXT_QUESTDB_PROJECT`` set (a real
project), nothing is started: the project says where QuestDB and the exchanges are.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.defs.project_config import ENV_PROJECT
from ccxt_questdb_assets.services.ports import port_is_free
from ccxt_questdb_assets.services.questdb_daemon import server_status, start_detached, stop_detached
from ccxt_questdb_assets.services.questdb_settings import ServerSettings

__all__ = ["DEFAULT_EMULATOR_PORT", "ENV_EXCHANGE_URL", "local_stack"]

#: The emulator's port for ``demo`` and ``dev``: the same port gives both the same definitions
#: (the default project's base_url), so runs of one re-execute in the other as the same job version.
DEFAULT_EMULATOR_PORT = 8765
ENV_EXCHANGE_URL = "CCXT_QUESTDB_EXCHANGE_URL"
#: QuestDB stops in about a second; after this it is killed (its WAL keeps committed rows).
QUESTDB_STOP_TIMEOUT_S = 3.0


@contextmanager
def _questdb(stop_if_started: bool) -> Iterator[dict[str, str]]:
    settings = ServerSettings.from_env()
    if not server_status(settings.data_dir).running:
        print(f"starting QuestDB in {settings.data_dir} ...", flush=True)
    status = start_detached(settings)  # refuses a server of this data dir running on other ports
    started = not status.already_running
    print(
        f"QuestDB {status.version or ''} {'started' if started else 'already running'} (pid {status.pid}); "
        f"web console http://{settings.client_host}:{settings.ports.http}",
        flush=True,
    )
    try:
        yield {
            "CCXT_QUESTDB_HOST": settings.client_host,
            "CCXT_QUESTDB_PG_PORT": str(settings.ports.pg),
            "CCXT_QUESTDB_HTTP_PORT": str(settings.ports.http),
        }
    finally:
        if started and stop_if_started:
            stop_detached(settings.data_dir, timeout=QUESTDB_STOP_TIMEOUT_S)


@contextmanager
def _emulator(port: int) -> Iterator[dict[str, str]]:
    from ccxt_questdb_assets.emulator.server import EmulatorServer

    if port and not port_is_free(port):
        raise ConfigError(
            f"port {port} for the exchange emulator is in use (another ccxt-questdb demo or dev?): "
            "stop that, or pass --emulator-port with a free port"
        )
    emulator = EmulatorServer(port=port)
    try:  # stop() also covers a start() interrupted after the process was spawned
        emulator.start()
        dialects = "binance, binanceusdm, okx, bybit, coinbase, kraken"
        print(f"exchange emulator ({dialects} dialects) at {emulator.base_url}", flush=True)
        yield {ENV_EXCHANGE_URL: emulator.base_url}
    finally:
        emulator.stop()


@contextmanager
def local_stack(*, emulator_port: int = 0, stop_started_questdb: bool = False) -> Iterator[dict[str, str]]:
    """Start what the default project needs and export where it is (into ``os.environ``); yields the
    exported variables, empty when ``CCXT_QUESTDB_PROJECT`` names a project. Leaving stops the
    emulator, and QuestDB when ``stop_started_questdb`` and it was started here."""
    if os.environ.get(ENV_PROJECT):
        print(f"using the project {os.environ[ENV_PROJECT]}: no local services started", flush=True)
        yield {}
        return
    with ExitStack() as services:
        exported = services.enter_context(_questdb(stop_started_questdb))
        exported.update(services.enter_context(_emulator(emulator_port)))
        os.environ.update(exported)
        yield exported
