"""Integers beyond 64 bits cross the wire (msgpack extension 1, docs/protocol.md section 5.2).

The README's ``c.map("math.fib", ...)`` example, run as written against a
real broker and worker process: fib(n) passes 2**64 at n = 94.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import LocalNode, local_node

pytestmark = pytest.mark.integration

EXAMPLE_TOOLS = str(Path(__file__).resolve().parents[2] / "workers" / "example_tools.py")


def _fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def test_readme_fib_example_runs_as_written(tmp_path: Path) -> None:
    """README: ``values = c.map("math.fib", [{"n": i} for i in range(1000)], concurrency=100)``."""
    with local_node(tmp_path) as node:
        node.start_broker()
        node.start_worker(None, "--tools", EXAMPLE_TOOLS)
        node.wait_workers(1)
        with node.client() as c:
            assert c.run("math.fib", {"n": 100}) == 354224848179261915075
            values = c.map("math.fib", [{"n": i} for i in range(1000)], concurrency=100)
            assert values == [_fib(i) for i in range(1000)]
            assert values[94] > 2**64 > values[93]


def test_big_integers_go_both_ways(tmp_path: Path) -> None:
    """Client -> worker (arguments) and worker -> client (result), both signs, nested."""
    node: LocalNode
    with local_node(tmp_path) as node:
        node.start_broker()
        node.start_worker()
        node.wait_workers(1)
        args = {"big": 2**64, "neg": -(2**63) - 1, "nested": [{"x": -(10**40)}], "small": 7}
        with node.client() as c:
            assert c.run("echo", args) == args
