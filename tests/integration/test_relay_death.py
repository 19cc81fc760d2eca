"""A relay broker dies in the middle of a stream of jobs (issue 9 item 4), real processes.

A diamond of four real brokers on loopback: a-{b,c}-d, the relays b and c
dial both a and d (so a and d reach b only through their ROUTERs, and learn
of its death from a send, not from a socket monitor); the worker is on d,
the client on a, and a routes to d through b (equal costs: the
lexicographically smaller path).  b is
SIGKILLed while jobs run and while more are sent.  A spare path exists, so
every job must end with its result: the attempts whose path crossed b are
re-sent on a-c-d (d answers those it ran from its result cache), the sends
that hit b's closed connection take the link down at once, and answers d
sent into b are re-routed.  Before, most ended in JobTimeout.
"""

from __future__ import annotations

import concurrent.futures
import signal
import sys
import time
from pathlib import Path

import pytest
from helpers import MeshOfNodes, free_base_port, wait_for

from operone_zmq.errors import JobError

pytestmark = pytest.mark.integration

#: Jobs before and after the kill.
JOBS = 20
#: Per-job timeout (s): far longer than a re-send takes, far shorter than a
#: stall until the deadline would need to pass unnoticed.
TIMEOUT = 15.0


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_killing_the_relay_mid_stream_loses_no_job(tmp_path: Path) -> None:
    mesh = MeshOfNodes(tmp_path, ["a", "b", "c", "d"])
    try:
        # Heartbeats at the default 1 s: liveness alone would need 3 s.
        for node in mesh.nodes.values():
            node.env["OPERONE_BROKER_HEARTBEAT_INTERVAL"] = "1.0"
        mesh.start([("b", "a"), ("c", "a"), ("b", "d"), ("c", "d")])
        mesh["d"].start_worker()
        mesh["d"].wait_workers(1)
        mesh.wait_converged()
        relay = next(p for p in mesh["b"].procs if p.alive())
        with mesh["a"].client() as c:
            wait_for(lambda: c.route("d").get("path") == ["a", "b", "d"], 10,
                     "a to route to d through b")
            first = [c.submit("sleep", {"seconds": 1.0}, on="d", timeout=TIMEOUT)
                     for _ in range(JOBS)]
            time.sleep(0.5)  # they run on d now; their answers will come through b
            relay.signal(signal.SIGKILL)
            relay.p.wait(5)
            second = [c.submit("sleep", {"seconds": 0.2}, on="d", timeout=TIMEOUT)
                      for _ in range(JOBS)]
            failures: list[str] = []
            for f in concurrent.futures.as_completed(first + second, timeout=3 * TIMEOUT):
                try:
                    f.result()
                except JobError as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
            assert failures == [], failures
            assert c.route("d")["path"] == ["a", "c", "d"]
    finally:
        mesh.stop()


def test_partition_events_are_logged_at_warning_with_the_nodes(tmp_path: Path) -> None:
    """The shell logs partition:* at warning, naming the nodes and since when."""
    import structlog

    from operone_zmq import Broker, CurveKeys
    from operone_zmq.security import TrustStore, generate_keypair

    kp = generate_keypair(tmp_path / "keys", "node")
    assert kp.secret is not None
    b = Broker("a", keys=CurveKeys(kp.public, kp.secret), trust=TrustStore(tmp_path / "t"),
               base_port=free_base_port(), worker_endpoint=f"ipc://{tmp_path}/a.ipc")
    b.core.events.append(("partition:detected", {
        "partitions": 2, "unreachable": ["b", "c"], "new": ["b", "c"],
        "down_since": {"b": 1.0, "c": 1.0}, "components": [["a"], ["b", "c"]],
        "local_component": ["a"], "separated": ["b", "c"]}))
    seen: list[object] = []
    b.on("partition:detected", seen.append)
    with structlog.testing.capture_logs() as logs:
        b._emit_events()
    (entry,) = [x for x in logs if x["event"] == "partition_detected"]
    assert entry["log_level"] == "warning"
    assert entry["unreachable"] == ["b", "c"] and entry["down_since"] == {"b": 1.0, "c": 1.0}
    assert "components" not in entry
    assert len(seen) == 1


#: Stop-and-restart rounds of the neighbour (each one a re-dial of the old
#: sockets while the neighbour's connections die); odd rounds SIGKILL it.
ROUNDS = 4


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_dialled_neighbour_killed_again_and_again_never_deafens_the_broker(
        tmp_path: Path) -> None:
    """a dials b; b is stopped (or SIGKILLed) and started again, ROUNDS
    times.  a closes the old sockets to dial again each time; it must keep
    answering its clients throughout (before: about one stop in five left a's
    libzmq I/O thread blocked on a monitor event, a deaf to every client)."""
    mesh = MeshOfNodes(tmp_path, ["a", "b"])
    try:
        mesh.start([("a", "b")])
        mesh["b"].start_worker()
        mesh.wait_converged()
        with mesh["a"].client() as c:
            for r in range(ROUNDS):
                if r % 2:
                    for p in mesh["b"].procs:
                        p.signal(signal.SIGKILL)
                mesh["b"].stop()  # SIGTERM: b says BYE and closes its sockets
                deadline = time.monotonic() + 2.5  # the re-dial happens in here
                while time.monotonic() < deadline:
                    t0 = time.monotonic()
                    c.query("stats", timeout=3.0)
                    assert time.monotonic() - t0 < 3.0
                    time.sleep(0.05)
                mesh["b"].start_broker()
                mesh["b"].start_worker()
                wait_for(lambda: c.route("b").get("path") == ["a", "b"], 20,
                         f"a to route to b again (round {r})")
            # A new client too (its handshake goes through a's I/O thread).
            with mesh["a"].client() as fresh:
                assert fresh.stats()["node"] == "a"
    finally:
        mesh.stop()
