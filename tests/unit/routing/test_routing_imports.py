"""Architecture guard: the routing package does no I/O and keeps its public API."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import operone_zmq.routing as routing

ROUTING_DIR = Path(routing.__file__).parent

#: Modules the no-I/O packages must not import at module level.
FORBIDDEN = {"zmq", "asyncio", "socket", "threading", "time"}


def _module_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(ROUTING_DIR.glob("*.py")), ids=lambda p: p.name)
def test_no_io_modules_imported_at_module_level(path: Path) -> None:
    """No routing module imports zmq, asyncio, socket, threading or time at module level."""
    assert _module_level_imports(path) & FORBIDDEN == set()


def test_importing_routing_pulls_in_no_io_modules() -> None:
    """A fresh interpreter importing the package loads neither zmq nor asyncio nor socket."""
    code = (
        "import sys, operone_zmq.routing, operone_zmq.routing.sim; "
        "print(','.join(sorted(m for m in ('zmq', 'asyncio', 'socket', 'threading') "
        "if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""


def test_public_api_is_pinned() -> None:
    """The package re-exports exactly these names."""
    assert sorted(routing.__all__) == [
        "Edge",
        "Event",
        "EventEmitter",
        "Flooder",
        "Graph",
        "InstallResult",
        "LSA",
        "LinkInfo",
        "LinkStateDB",
        "NetworkStats",
        "NetworkTopology",
        "PathInfo",
        "PeerInfo",
        "Route",
        "RouteInfo",
        "RoutingTable",
        "TopologyGraph",
        "flood_targets",
        "initial_seq",
        "shortest_paths",
    ]
    for name in routing.__all__:
        assert getattr(routing, name) is not None
