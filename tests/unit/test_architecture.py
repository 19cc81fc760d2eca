"""Architecture rule: the no-I/O packages import neither ZeroMQ nor asyncio.

Each package (and every module inside it) is imported in a fresh interpreter,
so modules that earlier tests imported cannot hide or cause a violation.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

#: Packages (and single modules) that must stay free of I/O frameworks.
NO_IO = [
    "operone_zmq.protocol",
    "operone_zmq.core",
    "operone_zmq.routing",
    "operone_zmq.qos",
    "operone_zmq.jobs",
    "operone_zmq.tools",
    "operone_zmq.errors",
    "operone_zmq.testing",
]

#: Top-level modules none of them may pull in.
FORBIDDEN = ("zmq", "asyncio")

REPO = Path(__file__).resolve().parents[2]

# Imports the package, then every submodule of it (``import operone_zmq.core``
# alone would not load core.broker), and prints what was imported and which
# forbidden modules are loaded.
_PROBE = """
import importlib, json, pkgutil, sys
name, forbidden = sys.argv[1], sys.argv[2:]
mod = importlib.import_module(name)
names = [name]
if hasattr(mod, "__path__"):
    for info in pkgutil.walk_packages(mod.__path__, name + "."):
        importlib.import_module(info.name)
        names.append(info.name)
print(json.dumps({"modules": names, "loaded": [m for m in forbidden if m in sys.modules]}))
"""


@pytest.fixture(scope="module")
def probes() -> dict[str, tuple[int, str, str]]:
    """Run every probe at once (one fresh interpreter each): package ->
    (exit status, stdout, stderr)."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-P", "-c", _PROBE, name, *FORBIDDEN],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        )
        for name in NO_IO
    }
    results: dict[str, tuple[int, str, str]] = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        results[name] = (proc.returncode, out, err)
    return results


def test_a_bare_interpreter_loads_neither() -> None:
    # Otherwise every failure below would be the interpreter's, not ours.
    proc = subprocess.run(
        [sys.executable, "-P", "-c",
         "import sys; print(*[m for m in sys.argv[1:] if m in sys.modules])", *FORBIDDEN],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=True,
    )
    assert proc.stdout.split() == []


@pytest.mark.parametrize("name", NO_IO)
def test_no_io_package_imports_neither_zmq_nor_asyncio(
    name: str, probes: dict[str, tuple[int, str, str]]
) -> None:
    status, out, err = probes[name]
    assert status == 0, f"importing {name} failed:\n{err}"
    result: dict[str, list[str]] = json.loads(out.strip().splitlines()[-1])
    assert result["modules"][0] == name
    assert result["loaded"] == [], (
        f"importing {name} (modules {result['modules']}) loads {result['loaded']}"
    )
