"""The Dagster ``Definitions`` of ``dagster dev -w workspace.yaml``, the demo and the tests.

The project file is ``$CCXT_QUESTDB_PROJECT``, else the embedded default (the local exchange
emulator). A deployment loads ``ccxt_questdb_assets.defs.deployment`` instead, which requires the file.
"""

from __future__ import annotations

from ccxt_questdb_assets.defs.build import build_definitions
from ccxt_questdb_assets.defs.project_config import ProjectConfig

defs = build_definitions(ProjectConfig.load())
