#!/usr/bin/env bash
# Escalator's single set-up command:  bash deploy/setup.sh
#
# Idempotent; safe to re-run. On Debian 12 as root (or with sudo):
#   - Debian packages, only when missing: postgresql (server for the tests),
#     chromium (dashboard browser tests), openjdk-17-jre-headless and maven
#     (the local Kafka broker); apt-get update runs once, only if something is missing;
#   - a Python environment: $PYTHON if set; else the virtual environment you are in; else the
#     project's own .venv (created here when missing). Then pip install -e '.[dev]' into it;
#   - resolves the Apache Kafka jars from Maven Central into ~/.cache/escalator
#     (python -m deploy.kafka_local fetch).
# Environment: PYTHON (a python to install into), ESCALATOR_SKIP_APT=1 to skip Debian packages.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
in_venv() { python3 -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)' 2>/dev/null; }
if [ -n "${PYTHON:-}" ]; then
    PY="$PYTHON"; ENV_NOTE=""
elif [ -n "${VIRTUAL_ENV:-}" ] && in_venv; then
    PY=python3; ENV_NOTE=""
else
    PY="$PWD/.venv/bin/python"; ENV_NOTE="activate it with:  . .venv/bin/activate"
fi
LOG_DIR="$(mktemp -d -t escalator-setup.XXXXXX)"
trap 'rm -rf "$LOG_DIR"' EXIT
started=$(date +%s)

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
run_logged() { # name cmd...  (quiet unless it fails)
    local name="$1"; shift
    if ! "$@" >"$LOG_DIR/$name.log" 2>&1; then
        tail -n 40 "$LOG_DIR/$name.log" >&2
        die "$name failed: $*"
    fi
}

# ------------------------------------------------------------------ Debian packages
have_pg_server() {
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || command -v postgres >/dev/null 2>&1
}
java_major() {
    local java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
    command -v "$java" >/dev/null 2>&1 || { echo 0; return; }
    "$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1
}

missing=()
have_pg_server || missing+=(postgresql)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ "$(java_major)" -ge 17 ] 2>/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
# mypyc compiles the SLA core at install: a C compiler and Python's headers
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
base_py="${PYTHON:-python3}"
"$base_py" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null ||
    missing+=(python3-dev)
if [ "$PY" = "$PWD/.venv/bin/python" ] && [ ! -x "$PY" ]; then
    python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
fi

if [ "${#missing[@]}" -gt 0 ] && [ "${ESCALATOR_SKIP_APT:-0}" != 1 ]; then
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: ${missing[*]}"
        SUDO=(sudo)
    fi
    command -v apt-get >/dev/null 2>&1 || die "no apt-get; install by hand: ${missing[*]}"
    say "installing Debian packages: ${missing[*]}"
    if [[ " ${missing[*]} " == *" postgresql "* ]]; then
        # The tests start their own throwaway servers: no system cluster on 5432.
        "${SUDO[@]}" mkdir -p /etc/postgresql-common/createcluster.d
        echo 'create_main_cluster = false' |
            "${SUDO[@]}" tee /etc/postgresql-common/createcluster.d/escalator.conf >/dev/null
    fi
    export DEBIAN_FRONTEND=noninteractive
    run_logged apt-update "${SUDO[@]}" apt-get update -qq
    run_logged apt-install "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
elif [ "${#missing[@]}" -gt 0 ]; then
    say "ESCALATOR_SKIP_APT=1: not installing ${missing[*]}"
else
    say "Debian packages present (postgresql, chromium, java $(java_major), maven)"
fi

# -------------------------------------------------------------------------- Python
if [ "$PY" = "$PWD/.venv/bin/python" ] && [ ! -x "$PY" ]; then
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "python3 is $(python3 -V 2>&1); Escalator needs Python 3.11+ (set PYTHON=...)"
    say "creating the project's virtual environment .venv"
    run_logged venv python3 -m venv .venv
fi
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "$PY is $("$PY" -V 2>&1); Escalator needs Python 3.11+"
say "pip install -e '.[dev]' into $("$PY" -c 'import sys; print(sys.prefix)')"
if ! "$PY" -m pip install -q --disable-pip-version-check --root-user-action=ignore \
        -e '.[dev]' >"$LOG_DIR/pip.log" 2>&1; then
    tail -n 40 "$LOG_DIR/pip.log" >&2
    grep -q externally-managed "$LOG_DIR/pip.log" &&
        say "this python is managed by Debian: use a venv (python3 -m venv .venv && . .venv/bin/activate) and re-run"
    die "pip install failed"
fi

# ---------------------------------------------------------------------------- Kafka
"$PY" -m deploy.kafka_local fetch | sed 's/^/[setup] /'

say "done in $(( $(date +%s) - started )) s"
[ -z "$ENV_NOTE" ] || say "$ENV_NOTE"
