"""A real ``dagster dev`` (webserver + daemon + code server) for tests, on a free port.

    with dagster_dev(workdir, env={"CCXT_QUESTDB_PROJECT": str(project_yaml)}) as dev:
        dev.graphql("{ version }")
        dev.add_dynamic_partitions("binance_symbols", ["BTC/USDT"])
        ...

The instance is ``workdir/dagster_home`` with a copy of the repository's ``dagster.yaml`` (the
instance ``ccxt-questdb dev`` runs: no onboarding pop-up, runs dequeued every second, slow code
servers given time), ``dagster_yaml_extra`` merged over it. ``dagster dev`` runs in its own process
group with gRPC deadlines raised through the environment (:data:`DEFAULT_ENV`); startup waits until
``/server_info`` answers and every code location has loaded, a failure raises
:class:`DagsterDevError` with the log's tail; leaving the block stops the whole group
(:mod:`ccxt_questdb_assets.dagster_dev_process`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from ccxt_questdb_assets.dagster_dev_process import (
    DEFAULT_ENV,
    DEFAULT_MODULE,
    DagsterDev,
    DagsterDevError,
    start_dagster_dev,
)
from ccxt_questdb_assets.instance_home import project_dagster_yaml
from ccxt_questdb_assets.services.ports import free_port

__all__ = ["DEFAULT_ENV", "DEFAULT_MODULE", "DagsterDev", "DagsterDevError", "dagster_dev", "write_dagster_home"]

#: Grace before the group is killed: tests have no one waiting on a terminal.
STOP_GRACE_S = 15.0


def _merged(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merged(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
    return out


def write_dagster_home(home: Path, extra_yaml: str = "") -> Path:
    """``home`` with the repository's ``dagster.yaml``, ``extra_yaml``'s keys merged over it."""
    home.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(project_dagster_yaml().read_text())
    extra = yaml.safe_load(extra_yaml) if extra_yaml.strip() else {}
    if not isinstance(extra, Mapping):
        raise DagsterDevError(f"dagster_yaml_extra must be a YAML mapping of instance keys, got {extra_yaml!r}")
    (home / "dagster.yaml").write_text(yaml.safe_dump(_merged(config, extra), sort_keys=False))
    return home


@contextmanager
def dagster_dev(
    workdir: Path,
    *,
    env: Mapping[str, str] | None = None,
    module: str = DEFAULT_MODULE,
    startup_timeout_s: float = 240.0,
    dagster_yaml_extra: str = "",
    cwd: Path | None = None,
) -> Iterator[DagsterDev]:
    """Start ``dagster dev -m module`` with ``DAGSTER_HOME=workdir/dagster_home`` and ``env`` on top
    of this process's environment; yield once the code location has loaded; kill the group on exit."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    home = write_dagster_home(workdir / "dagster_home", dagster_yaml_extra)
    dev = start_dagster_dev(
        home,
        port=free_port(),
        log_path=workdir / "dagster_dev.log",
        env=env,
        module=module,
        cwd=cwd or workdir,
        startup_timeout_s=startup_timeout_s,
        stop_grace_s=STOP_GRACE_S,
    )
    try:
        yield dev
    finally:
        dev.stop(STOP_GRACE_S)
