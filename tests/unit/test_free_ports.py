"""free_base_port: the ranges one process is handed never overlap, even
before any of them is bound (the nodes of a test mesh pick theirs first)."""

from __future__ import annotations

from itertools import pairwise

from operone_zmq.aio.sockets import free_base_port


def test_ranges_picked_before_any_bind_never_overlap() -> None:
    bases = sorted(free_base_port() for _ in range(500))
    assert all(b - a >= 4 for a, b in pairwise(bases)), bases
