#!/usr/bin/env bash
# The main job on the embedded default: starts a local QuestDB (fetched through mvn, verified),
# the bundled exchange emulator and dagster dev, launches a week of Dagster partitions for two
# symbols through it, prints what the runs stored, and stops all but QuestDB (ccxt-questdb demo).
# Arguments go to the command (--days 1). Set CCXT_QUESTDB_*_PORT to move the local server off the
# default ports 9000/8812/9009/9003.
source "$(dirname "$0")/lib/bootstrap.sh"
need_debian_packages mvn:maven java:default-jre-headless
sync_env
exec "${UV[@]}" run --frozen --no-sync ccxt-questdb demo "$@"
