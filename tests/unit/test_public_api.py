"""The public API is deliberate: pinned here."""

from __future__ import annotations

import re
from pathlib import Path

import operone_zmq


def test_all_matches_the_lazy_exports() -> None:
    """__all__ lists exactly the lazily exported names, and each resolves."""
    src = Path(operone_zmq.__file__).read_text()
    exported = re.findall(r'^    "(\w+)": "operone_zmq', src, re.M)
    assert operone_zmq.__all__ == ["__version__", "compiled_modules", *exported]
    for name in operone_zmq.__all__:
        assert getattr(operone_zmq, name) is not None


def test_peer_network_is_the_broker() -> None:
    """The original's name for the broker still works."""
    assert operone_zmq.PeerNetwork is operone_zmq.Broker
