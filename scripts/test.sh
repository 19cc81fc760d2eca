#!/usr/bin/env bash
# Set up and run every check: lint (ruff), types (mypy --strict), tests (pytest).
#
#   ./scripts/test.sh                 # everything
#   ./scripts/test.sh tests/unit -x   # extra arguments go to pytest
#
# Creates .venv (or uses $OPERONE_VENV) and installs the project with its test
# and dev dependencies.  As root on Debian/Ubuntu it also installs what the
# real-component tests use: openssh-server (SSH tests), iproute2 (network
# namespaces) and chromium (the dashboard in a browser); without them those
# tests are skipped with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${OPERONE_VENV:-.venv}

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    need=()
    [ -x /usr/sbin/sshd ] || need+=(openssh-server)
    command -v ip >/dev/null 2>&1 || need+=(iproute2)
    [ -x /usr/bin/chromium ] || need+=(chromium chromium-driver)  # the dashboard's browser test
    if [ ${#need[@]} -gt 0 ]; then
        echo "== installing ${need[*]}"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") \
            >/dev/null 2>&1 || echo "warning: could not install ${need[*]}; those tests will skip"
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    "$PY" -m venv "$VENV"
fi
echo "== installing operone-zmq and its dev dependencies"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev]"

echo "== ruff"
"$VENV/bin/ruff" check operone_zmq tests scripts workers brokers
echo "== mypy --strict"
"$VENV/bin/mypy" operone_zmq
echo "== pytest"
exec "$VENV/bin/python" -m pytest "$@"
