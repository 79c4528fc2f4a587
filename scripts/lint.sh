#!/usr/bin/env bash
# Style and types, as CI checks them: ruff (lint, and format without changing anything) over the
# tree, mypy (strict) over the pure core and the history engine. `ruff format .` fixes the format.
source "$(dirname "$0")/lib/bootstrap.sh"
sync_env dev
"${UV[@]}" run --frozen --no-sync ruff check .
"${UV[@]}" run --frozen --no-sync ruff format --check .
"${UV[@]}" run --frozen --no-sync mypy ccxt_questdb_assets/core ccxt_questdb_assets/history
