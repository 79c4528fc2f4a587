"""The Dagster ``Definitions`` a deployment loads (``deploy/workspace.yaml``).

The project file is required: without ``$CCXT_QUESTDB_PROJECT`` loading fails with an error naming
the variable, rather than falling back to the embedded default (a localhost exchange emulator and
``crypto_*`` tables), which a deployment never wants.
"""

from __future__ import annotations

from ccxt_questdb_assets.defs.build import build_definitions
from ccxt_questdb_assets.defs.project_config import ProjectConfig

defs = build_definitions(ProjectConfig.load(require_file=True))
