"""Where ``ccxt-questdb demo`` and ``ccxt-questdb dev`` keep their Dagster instance.

The instance's configuration is the checkout's top-level ``dagster.yaml``; its state (SQLite
storage, compute logs) lives in ``./dagster_home`` (git-ignored), where the commands make
``dagster_home/dagster.yaml`` a link to ``../dagster.yaml``, so an edit of the top-level file
takes effect on the next start. A ``$DAGSTER_HOME`` of your own is used as it is when it holds a
``dagster.yaml``; otherwise it gets the same link.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ccxt_questdb_assets.core.errors import ConfigError

__all__ = [
    "DEFAULT_HOME_NAME",
    "ENV_DAGSTER_HOME",
    "PROJECT_DAGSTER_YAML",
    "prepare_dagster_home",
    "project_dagster_yaml",
]

ENV_DAGSTER_HOME = "DAGSTER_HOME"
DEFAULT_HOME_NAME = "dagster_home"
#: The checkout's instance config: beside the package, at the top of the repository.
PROJECT_DAGSTER_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"


def project_dagster_yaml() -> Path:
    """The checkout's ``dagster.yaml``, or ConfigError saying how to do without it."""
    if not PROJECT_DAGSTER_YAML.is_file():
        raise ConfigError(
            f"the project's Dagster instance config {PROJECT_DAGSTER_YAML} is missing (is the package "
            f"installed outside its checkout?); set {ENV_DAGSTER_HOME} to a directory holding your own "
            "dagster.yaml"
        )
    return PROJECT_DAGSTER_YAML


def prepare_dagster_home(env: Mapping[str, str] | None = None) -> Path:
    """``$DAGSTER_HOME``, else ``./dagster_home``: created, with a ``dagster.yaml`` (its own, or a
    link to the project's). Returns the absolute directory."""
    env = os.environ if env is None else env
    raw = env.get(ENV_DAGSTER_HOME, "").strip()
    home = (Path(raw).expanduser() if raw else Path.cwd() / DEFAULT_HOME_NAME).absolute()
    config = home / "dagster.yaml"
    if config.is_file():  # a file of its own, or a link that still resolves
        return home
    target = project_dagster_yaml()
    home.mkdir(parents=True, exist_ok=True)
    if config.is_symlink():  # a link left dangling (the checkout moved)
        config.unlink()
    config.symlink_to(os.path.relpath(target, home))
    return home
