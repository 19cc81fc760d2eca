#!/usr/bin/env bash
# Set up and run every check: lint (ruff), types (mypy --strict), tests (pytest).
#
#   ./scripts/test.sh                 # everything
#   ./scripts/test.sh tests/unit -x   # extra arguments go to pytest
#   ./scripts/test.sh --matrix        # only the unit tests, on Python 3.11, 3.12
#                                     # and 3.13 (tox; extra arguments go to pytest),
#                                     # then on the compiled build (tox env compiled:
#                                     # a mypyc wheel, needs a C compiler; with the
#                                     # integration tests of the compiled paths)
#
# Creates .venv (or uses $OPERONE_VENV) and installs the project with its test
# and dev dependencies.  As root on Debian/Ubuntu it also installs what the
# real-component tests use: openssh-server (SSH tests), iproute2 (network
# namespaces), iptables (cuts in the partition tests), chromium (the
# dashboard in a browser) and gcc (the compiled build of --matrix); without
# them those tests are skipped with a reason (the compiled build fails).
#
# --matrix finds each interpreter as python3.X on PATH (when it runs: a pyenv
# shim of a version that is not selected does not), else under pyenv
# ($PYENV_ROOT or ~/.pyenv: versions/3.X.N, the newest), else in /usr/bin or
# /usr/local/bin, and hands them to tox with --discover; a missing one is an
# error, not a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

MATRIX=0
if [ "${1:-}" = "--matrix" ]; then
    MATRIX=1
    shift
fi
# The interpreters of the matrix (tox envs py311, py312, py313).
MATRIX_VERSIONS=(3.11 3.12 3.13)

PY=${PYTHON:-python3}
VENV=${OPERONE_VENV:-.venv}

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    need=()
    [ -x /usr/sbin/sshd ] || need+=(openssh-server)
    command -v ip >/dev/null 2>&1 || need+=(iproute2)
    command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || need+=(iptables)
    [ -x /usr/bin/chromium ] || need+=(chromium chromium-driver)  # the dashboard's browser test
    command -v cc >/dev/null 2>&1 || need+=(gcc)  # the compiled build (--matrix, tox env compiled)
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

# find_python 3.12: the path of a python3.12 that runs, or nothing (status 1).
find_python() {
    local v=$1 root cand dir
    local cands=()
    cand=$(command -v "python$v" 2>/dev/null || true)
    [ -z "$cand" ] || cands+=("$cand")
    root=${PYENV_ROOT:-$HOME/.pyenv}
    if [ -d "$root/versions" ]; then
        while IFS= read -r dir; do
            cands+=("$root/versions/$dir/bin/python$v")
        done < <(ls "$root/versions" | grep -E "^${v//./\\.}\\.[0-9]+\$" | sort -V -r)
    fi
    cands+=("/usr/local/bin/python$v" "/usr/bin/python$v")
    for cand in "${cands[@]}"; do
        if [ -x "$cand" ] && "$cand" -c 'import sys' >/dev/null 2>&1; then
            echo "$cand"
            return 0
        fi
    done
    return 1
}

if [ "$MATRIX" = 1 ]; then
    found=()
    envs=()
    for v in "${MATRIX_VERSIONS[@]}"; do
        if ! py=$(find_python "$v"); then
            echo "error: no python$v found (on PATH, under pyenv, in /usr/bin);" \
                 "install it, e.g. 'pyenv install $v'" >&2
            exit 1
        fi
        echo "== python$v: $py"
        found+=("$py")
        envs+=("py${v//./}")
    done
    echo "== tox: the unit tests on ${MATRIX_VERSIONS[*]}"
    "$VENV/bin/tox" run --skip-missing-interpreters false --discover "${found[@]}" \
        -e "$(IFS=,; echo "${envs[*]}")" -- tests/unit "$@"
    # The compiled build (an OPERONE_ZMQ_COMPILE=1 wheel) on the first
    # Python: the test paths tox.ini's env compiled names, then the extra
    # arguments.
    echo "== tox: the compiled build (mypyc) on ${MATRIX_VERSIONS[0]}"
    exec "$VENV/bin/tox" run --skip-missing-interpreters false --discover "${found[0]}" \
        -e compiled -- "$@"
fi

echo "== ruff"
"$VENV/bin/ruff" check operone_zmq tests scripts workers brokers
echo "== mypy --strict"
"$VENV/bin/mypy" operone_zmq
echo "== pytest"
exec "$VENV/bin/python" -m pytest "$@"
