"""Fixtures for integration tests: real broker and worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import LocalNode


@pytest.fixture
def node(tmp_path: Path) -> Iterator[LocalNode]:
    """A node with a broker and two worker processes, fs tools rooted in tmp."""
    root = tmp_path / "files"
    root.mkdir()
    n = LocalNode(tmp_path, "n1", tools_fs_root=str(root),
                  tools_shell_allow=["uname"])  # the default allows nothing
    try:
        n.start_broker()
        n.start_worker()
        n.start_worker()
        n.wait_workers(2)
        yield n
    finally:
        n.stop()
