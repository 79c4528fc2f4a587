#!/usr/bin/env bash
# One role of the deployment over several hosts (docs/operations.md), in the foreground: what the
# systemd units of deploy/systemd run, with the variables of their environment file.
#
#   deploy/serve.sh migrate       create or update the instance's tables in Postgres (once, first)
#   deploy/serve.sh code-server   the project's code server: on the control host (sensors, schedules,
#                                 backfills) and on every run host (runs)
#   deploy/serve.sh daemon        dagster-daemon: run queue, placement, monitoring, retries,
#                                 schedules, sensors, backfills (one, on the control host)
#   deploy/serve.sh webserver     the UI and GraphQL (control host)
#
# The instance is deploy/dagster.yaml, linked as $DAGSTER_HOME/dagster.yaml unless that directory
# has a dagster.yaml of its own. Every setting and secret comes from the environment; a missing one
# is named before anything starts.
set -euo pipefail

DEPLOY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$DEPLOY")"
ROLE="${1:-}"
LOCATION=ccxt_questdb_assets
MODULE=ccxt_questdb_assets.defs.deployment  # refuses to load without CCXT_QUESTDB_PROJECT

say() { printf '[ccxt-questdb %s] %s\n' "${ROLE:-serve}" "$*" >&2; }

require() {
    local missing=()
    for name in "$@"; do
        [ -n "${!name:-}" ] || missing+=("$name")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "missing environment variable(s) for '$ROLE': ${missing[*]} (see docs/operations.md)"
        exit 2
    fi
}

INSTANCE_VARS=(DAGSTER_HOME DAGSTER_PG_HOST DAGSTER_PG_PORT DAGSTER_PG_USER DAGSTER_PG_PASSWORD DAGSTER_PG_DB)
WORKSPACE_VARS=(CCXT_QUESTDB_CODE_SERVER_HOST CCXT_QUESTDB_CODE_SERVER_PORT)

case "$ROLE" in
    migrate | daemon | webserver) require "${INSTANCE_VARS[@]}" ;;
    code-server)
        require "${INSTANCE_VARS[@]}" CCXT_QUESTDB_PROJECT
        # No silent default: without its project file a code server would load the embedded one
        # (a local emulator and QuestDB), and its runs would write somewhere else.
        if [ ! -f "$CCXT_QUESTDB_PROJECT" ]; then
            say "CCXT_QUESTDB_PROJECT names $CCXT_QUESTDB_PROJECT, which is not a file"
            exit 2
        fi
        ;;
    *)
        say "usage: deploy/serve.sh migrate|code-server|daemon|webserver"
        exit 2
        ;;
esac
case "$ROLE" in daemon | webserver) require "${WORKSPACE_VARS[@]}" ;; esac

# The Python environment holding the project with its deploy extra (uv sync --extra deploy).
VENV="${CCXT_QUESTDB_VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/dagster" ]; then
    say "no dagster in $VENV/bin: install the project with its deploy extra there, or set CCXT_QUESTDB_VENV"
    exit 2
fi

mkdir -p "$DAGSTER_HOME"
if [ ! -e "$DAGSTER_HOME/dagster.yaml" ]; then  # absent, or a link whose checkout moved
    ln -sfn "$DEPLOY/dagster.yaml" "$DAGSTER_HOME/dagster.yaml" 2>/dev/null || true  # another role may link it first
fi

# Starting a run waits for its process to import the project on the run host, which on a busy host
# takes longer than Dagster's 60 s default for a code server call.
export DAGSTER_GRPC_TIMEOUT_SECONDS="${DAGSTER_GRPC_TIMEOUT_SECONDS:-300}"
export PYTHONUNBUFFERED=1

case "$ROLE" in
    migrate)
        exec "$VENV/bin/dagster" instance migrate
        ;;
    code-server)
        exec "$VENV/bin/dagster" code-server start -m "$MODULE" --location-name "$LOCATION" \
            -h "${CCXT_QUESTDB_CODE_SERVER_BIND:-0.0.0.0}" -p "${CCXT_QUESTDB_CODE_SERVER_PORT:-4000}"
        ;;
    daemon)
        [ -n "${CCXT_QUESTDB_RUN_HOSTS:-}" ] ||
            say "CCXT_QUESTDB_RUN_HOSTS is empty: runs execute on the control host's code server"
        exec "$VENV/bin/dagster-daemon" run -w "$DEPLOY/workspace.yaml"
        ;;
    webserver)
        exec "$VENV/bin/dagster-webserver" -w "$DEPLOY/workspace.yaml" \
            -h "${CCXT_QUESTDB_WEBSERVER_HOST:-127.0.0.1}" -p "${CCXT_QUESTDB_WEBSERVER_PORT:-3000}"
        ;;
esac
