"""Restarts are noticed (incarnations), transient errors are retried, and the
retry schedule waits for failure detection (issue 15, "Failover"), in memory."""

from __future__ import annotations

from operone_zmq.core.client import JobResult
from operone_zmq.core.origin import RETRY_BASE, Origin, OriginTable
from operone_zmq.errors import NoRoute, NotIdempotent, ToolNotFound, WorkerLost
from operone_zmq.protocol.bodies import Hello, JobRequest, Ping, Ready, ToolInfo, Welcome
from operone_zmq.routing.lsa import LSA
from operone_zmq.testing import CoreMesh


def pair(auto_echo: bool = False) -> CoreMesh:
    m = CoreMesh(auto_echo=auto_echo)
    m.add("a")
    m.add("b")
    m.dial("a", "b")
    m.run()
    m.advance(1)
    return m


def finish_all(m: CoreMesh, node: str) -> None:
    """The node's workers finish every job they run."""
    for w in m.workers[node].values():
        for jid in list(w.running):
            w.done(jid, {"done": jid}, m.clock())
    m._collect_worker(node)
    m.run()


def test_a_restarted_target_fails_its_old_attempts_at_once_and_the_retry_joins() -> None:
    """b is killed and restarted under 5 running jobs: a sees b's new
    incarnation within a heartbeat or two, re-places the idempotent jobs at
    once (not at their 30 s deadline), and the retries join the jobs the
    surviving worker still runs: each job ran once and ended with its result."""
    m = pair()
    m.add_worker("b", ["work"])
    m.advance(7)  # past b's start-up grace
    ids = [m.submit("a", "work", on="b", retries=2, timeout=30) for _ in range(5)]
    m.run()
    assert len(m.started["b"]) == 5
    m.restart("b")
    m.advance(6)  # a notices (its PING gets "no session", HELLO again) and retries
    a = m.nodes["a"]
    assert a.counters["peer_restarts"] == 1
    assert a.counters["attempts_restarted"] == 5
    b = m.nodes["b"]
    assert b.counters["orphans_joined"] == 5, b.counters
    finish_all(m, "b")
    r = m.replies("a")
    assert all(isinstance(r[j], JobResult) for j in ids), r
    assert all(r[j].attempts == 2 for j in ids)
    assert len(m.started["b"]) == 5  # nothing ran twice


def test_a_restart_ends_a_non_idempotent_attempt_at_once() -> None:
    """A job that is not idempotent is not re-run: NotIdempotent as soon as
    the restart is seen, not JobTimeout at its deadline."""
    m = pair()
    m.add_worker("b", ["work"])
    m.advance(7)
    jid = m.submit("a", "work", on="b", retries=2, timeout=30, idempotent=False)
    m.run()
    m.restart("b")
    m.advance(3)
    err = m.replies("a")[jid]
    assert isinstance(err, NotIdempotent) and err.details["cause"] == "worker_lost"


def test_a_result_finished_while_nobody_asked_is_picked_up_by_the_retry() -> None:
    """The surviving worker finishes an orphan before the retry arrives: the
    new broker keeps the result and answers the retry from it."""
    m = pair()
    m.add_worker("b", ["work"])
    m.advance(7)
    jid = m.submit("a", "work", on="b", retries=2, timeout=30)
    m.run()
    m.restart("b")
    m.advance(3)  # the worker registered again (listing its job); a not retried yet
    assert jid in m.nodes["b"]._local._orphans
    finish_all(m, "b")
    m.advance(6)
    assert m.nodes["b"].counters["orphans_answered"] == 1
    res = m.replies("a")[jid]
    assert isinstance(res, JobResult) and res.value == {"done": jid}
    assert len(m.started["b"]) == 1


def test_a_starting_node_answers_a_missing_tool_as_transient() -> None:
    """Right after its start a node whose workers have not registered answers
    NoRoute (retryable), not tool_not_found; the origin retries after the
    detection time and the job runs once the worker is there."""
    m = pair(auto_echo=True)
    m.add_worker("b", ["work"])
    m.advance(7)
    m.restart("b")
    m.workers["b"].clear()
    m.advance(4)  # a sees the restart; b has no worker yet
    jid = m.submit("a", "work", on="b", retries=3, timeout=30)
    m.run()
    assert m.nodes["b"].errors.get("no_route") == 1
    m.add_worker("b", ["work"])
    m.advance(4)
    assert isinstance(m.replies("a")[jid], JobResult)


def test_a_tool_only_unreachable_nodes_offer_is_no_route_and_retried() -> None:
    """Placement that finds the tool only on unreachable nodes is transient
    (NoRoute, retried), not tool_not_found with retries left."""
    m = pair(auto_echo=True)
    m.add("c")
    m.dial("b", "c")
    m.add_worker("c", ["work"])
    m.advance(7)
    m.cut("b", "c")
    m.advance(4)  # b-c is down; a still holds c's LSA, which offers "work"
    jid = m.submit("a", "work", retries=3, timeout=30)
    m.run()
    assert jid not in m.replies("a")  # waiting to retry, not answered
    m.heal("b", "c")
    m.advance(6)
    assert isinstance(m.replies("a")[jid], JobResult)


def test_a_tool_nobody_offers_is_still_final() -> None:
    m = pair(auto_echo=True)
    m.advance(7)
    jid = m.submit("a", "nope", retries=3)
    m.run()
    assert isinstance(m.replies("a")[jid], ToolNotFound)


def test_a_retry_back_to_the_node_that_failed_waits_for_detection() -> None:
    """Backoff starts at RETRY_BASE, but a retry that can only go back to the
    node that failed waits the detection time (liveness x interval)."""
    m = pair(auto_echo=True)
    m.add_worker("b", ["work"])
    m.advance(7)
    origin: OriginTable = m.nodes["a"]._origin
    pinned = Origin("x", b"\x00c", 2, "cli", JobRequest("work", on="b", retries=3), b"", 0,
                    m.clock(), 3, attempts=1)
    assert origin.retry_delay(pinned) == 3.0
    free = Origin("y", b"\x00c", 2, "cli", JobRequest("work", retries=3), b"", 0, m.clock(),
                  3, attempts=1)
    assert origin.retry_delay(free) == RETRY_BASE  # b was not tried: go at once
    free.tried.append("b")
    assert origin.retry_delay(free) == 3.0  # only b offers it: wait for detection


def test_wire_fields_are_additive() -> None:
    """incarnation in HELLO/WELCOME/PONG/LSA and running in READY round-trip,
    and bodies without them (a v1 peer) still decode, as 0 / ()."""
    assert Hello.unpack(Hello("a", incarnation=7).pack()).incarnation == 7
    assert Hello.unpack(Hello("a").pack()).incarnation == 0
    assert Welcome.unpack(Welcome("a", incarnation=9).pack()).incarnation == 9
    assert Welcome.unpack(Welcome("a").pack()).incarnation == 0
    p = Ping.unpack(Ping(3, 11, 250).pack())
    assert (p.seq, p.incarnation, p.held) == (3, 11, 250)
    assert Ping.unpack(Ping(3).pack()) == Ping(3)
    r = Ready("w", (ToolInfo("t"),), running=("j1", "j2"))
    assert Ready.unpack(r.pack()).running == ("j1", "j2")
    assert Ready.unpack(Ready("w", (ToolInfo("t"),)).pack()).running == ()
    lsa = LSA("a", 5, (), incarnation=12)
    assert LSA.from_wire(lsa.to_wire()).incarnation == 12
    old = LSA("a", 5, ()).to_wire()
    assert "incarnation" not in old and LSA.from_wire(old).incarnation == 0


def test_worker_lost_on_restart_names_the_cause() -> None:
    m = pair()
    m.add_worker("b", ["work"])
    m.advance(7)
    jid = m.submit("a", "work", on="b", retries=0, timeout=30)
    m.run()
    m.restart("b")
    m.advance(3)
    err = m.replies("a")[jid]
    assert isinstance(err, WorkerLost) and err.details["cause"] == "restarted"
    assert not isinstance(err, NoRoute)


def test_a_client_reads_the_incarnation_from_a_pong() -> None:
    """A broker's PONG to a client says its incarnation (a v1 empty PONG
    reads as 0); two runs of a broker say different ones."""
    m = CoreMesh()
    a = m.add("a")
    c = m.client("a")
    pid, frames = c.ping()
    m.send_client("a", frames)
    m.run()
    pongs = [r for r in m.client_inbox["a"] if r.kind == "pong"]
    assert [(r.id, r.value) for r in pongs] == [(pid, a.incarnation)]
    b = m.restart("a")
    assert b.incarnation != a.incarnation
