"""Sample answers of a real broker (shapes captured from a two-node mesh a - b)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from operone_zmq.dashboard.model import Answers

Make = Callable[..., Answers]


def answers(b_up: bool = True, *, b_in_topology: bool = True) -> Answers:
    """What broker a of a two-node mesh a - b answers (shapes taken from a real broker)."""
    nodes: list[dict[str, Any]] = [
        {"id": "a", "name": "a", "kind": "broker", "tools": [], "capabilities": [],
         "load": 0.0, "workers": 0, "reachable": True, "local": True}]
    if b_in_topology:
        nodes.append({"id": "b", "name": "b", "kind": "broker", "tools": ["echo", "sleep"],
                      "capabilities": ["gpu"], "load": 0.5, "workers": 1,
                      "reachable": b_up, "local": False})
    edges = [{"source": "a", "target": "b", "latency": 1.0, "bandwidth": 0.0, "loss": 0.0}]
    return Answers(
        stats={"node": "a", "uptime": 12.5, "workers": 0, "slots": 0, "running": 1,
               "queued": 2, "jobs_received": 5, "jobs_completed": 3, "jobs_failed": 1,
               "jobs_timed_out": 0, "jobs_cancelled": 1, "malformed": 0, "lsas_sent": 2,
               "lsas_received": 4, "link_queues": {"b": {"normal": 3, "high": 1}},
               "errors": {"tool_error": 1}},
        peers=[{"node": "b", "name": "b", "address": "127.0.0.1:7710",
                "state": "up" if b_up else "down", "transports": ["dialled:up"],
                "up_for": 10.0 if b_up else 0.0, "rtt_ms": 0.93 if b_up else None,
                "sent": 15, "received": 17, "last_error": "" if b_up else "timed out"}],
        topology={"local": "a", "nodes": nodes, "edges": edges if b_up else []},
        network={"total_nodes": 2 if b_up else 1, "unreachable_nodes": 0 if b_up else 1,
                 "partitions": 1 if b_up else 2},
        qos={"b": {"peer": "b", "latency_ms": 0.934, "jitter_ms": 0.084, "packet_loss": 0.0,
                   "bandwidth_mb_s": 1.5, "queue_depth": 4, "health_score": 100,
                   "queued_by_class": {}}},
        jobs_supported=False,
    )


@pytest.fixture
def make_answers() -> Make:
    """answers(b_up=True, *, b_in_topology=True): broker a's answers."""
    return answers
