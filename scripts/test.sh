#!/usr/bin/env bash
# Runs the whole test suite against real, locally started services:
# QuestDB (fetched from Maven Central through mvn and checksum-verified), redis-server,
# the bundled exchange emulator, a real Dagster instance and Debian's chromium; the deployment test
# (tests/test_deployment.py) also Debian's postgresql and network namespaces (iproute2, root).
# Extra arguments go to pytest, e.g. `scripts/test.sh -k emulator`.
source "$(dirname "$0")/lib/bootstrap.sh"
need_debian_packages redis-server:redis-server mvn:maven java:default-jre-headless chromium:chromium \
    pg_ctlcluster:postgresql ip:iproute2
sync_env dev
exec "${UV[@]}" run --frozen --no-sync pytest "$@"
