# Sourced by scripts/*.sh: makes the locked Python environment and the system packages the
# commands need exist on a fresh machine. Python 3.11+ is the only prerequisite; Debian packages
# (redis-server, chromium) are installed with apt-get when running as root, else named.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

log() { printf '[ccxt-questdb] %s\n' "$*" >&2; }

python_ok() {
    command -v "$1" >/dev/null 2>&1 &&
        "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null
}

PYTHON="${PYTHON:-python3}"
if ! python_ok "$PYTHON"; then
    log "Python 3.11 or newer is required (tried '$PYTHON'); set PYTHON=/path/to/python3.11"
    exit 1
fi

# uv installs exactly the versions in uv.lock.
if command -v uv >/dev/null 2>&1; then
    UV=(uv)
elif "$PYTHON" -m uv --version >/dev/null 2>&1; then
    UV=("$PYTHON" -m uv)
else
    log "installing uv (the lock-file installer) with pip"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check uv
    UV=("$PYTHON" -m uv)
fi

# sync_env [extra ...]: the locked environment. --inexact: the demo's sync keeps the test extras
# installed. Bytecode is compiled here because Dagster starts a Python process per run and step, and
# where PYTHONDONTWRITEBYTECODE is set each would otherwise import everything from source (about
# twice as slow): --compile-bytecode covers the installed packages, compileall the project itself,
# which uv installs editable.
sync_env() {
    local args=(sync --frozen --inexact --compile-bytecode --quiet --python "$PYTHON")
    for extra in "$@"; do args+=(--extra "$extra"); done
    "${UV[@]}" "${args[@]}"
    "${UV[@]}" run --frozen --no-sync python -m compileall -q ccxt_questdb_assets
}

# need_debian_packages BINARY:PACKAGE ... : install what is missing, or say how.
need_debian_packages() {
    local missing=()
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing Debian packages: ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        log "missing system packages: ${missing[*]} (install them, e.g. 'sudo apt-get install -y ${missing[*]}')"
        exit 1
    fi
}
