#!/usr/bin/env bash
# Set up operone-zmq in .venv and run the demo: a local node (broker + 2 worker
# processes, CurveZMQ on) that runs real tools remotely and prints the results.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${OPERONE_VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e .
exec "$VENV/bin/python" scripts/demo.py "$@"
