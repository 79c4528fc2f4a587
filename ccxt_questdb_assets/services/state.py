"""Where the project keeps local service state (cached QuestDB jars, the default data dir).

``CCXT_QUESTDB_HOME`` if set, else ``./.ccxt-questdb`` under the current directory (git-ignored).
A per-project directory keeps each checkout's QuestDB separate and easy to delete.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["ENV_HOME", "DEFAULT_HOME_NAME", "state_dir"]

ENV_HOME = "CCXT_QUESTDB_HOME"
DEFAULT_HOME_NAME = ".ccxt-questdb"


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """The absolute state directory (not created)."""
    env = os.environ if env is None else env
    raw = env.get(ENV_HOME, "").strip()
    base = Path(raw).expanduser() if raw else Path.cwd() / DEFAULT_HOME_NAME
    return base.absolute()
