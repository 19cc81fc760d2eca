"""Placement, failover and deduplication at the origin broker, in memory."""

from __future__ import annotations

from collections import Counter

from operone_zmq.core.client import JobResult
from operone_zmq.errors import JobCancelled, NotIdempotent, ToolNotFound
from operone_zmq.testing import CoreMesh


def triangle(auto_echo: bool = True) -> CoreMesh:
    m = CoreMesh(auto_echo=auto_echo)
    for x in "abc":
        m.add(x)
    m.dial("a", "b")
    m.dial("b", "c")
    m.dial("a", "c")
    m.run()
    m.advance(1)
    return m


def test_capability_jobs_run_only_where_advertised() -> None:
    """Jobs needing gpu run on the one node whose worker has it."""
    m = triangle()
    m.add_worker("a", ["render"])
    m.add_worker("b", ["render"], caps=("gpu",))
    m.add_worker("c", ["render"])
    m.advance(0.5)
    ids = [m.submit("a", "render", caps=("gpu",)) for _ in range(20)]
    m.run()
    r = m.replies("a")
    assert all(isinstance(r[i], JobResult) and r[i].executed_on == "b" for i in ids)
    bad = m.submit("a", "render", caps=("tpu",))
    m.run()
    err = m.replies("a")[bad]
    assert isinstance(err, ToolNotFound) and "tpu" in err.message


def test_concurrent_jobs_spread_over_nodes() -> None:
    """300 jobs in flight at once from one origin: no node gets over half."""
    m = triangle(auto_echo=False)
    for x in "abc":
        m.add_worker(x, ["echo"], slots=200)
    m.advance(0.5)
    ids = [m.submit("a", "echo") for _ in range(300)]
    m.run()
    per_node = Counter({x: len(m.started[x]) for x in "abc"})
    assert sum(per_node.values()) == 300
    assert max(per_node.values()) <= 150, per_node
    for x in "abc":
        for w in m.workers[x].values():
            for jid in list(w.running):
                w.done(jid, x, m.clock())
    m.advance(0.5)
    r = m.replies("a")
    assert all(isinstance(r[i], JobResult) for i in ids)


def test_worker_death_fails_over_to_another_node() -> None:
    """The worker running a job dies: the origin re-places it and it
    completes elsewhere, with attempts = 2."""
    m = triangle(auto_echo=False)
    m.add_worker("b", ["work"])
    m.add_worker("c", ["work"])
    m.advance(0.5)
    jid = m.submit("a", "work", retries=2)
    m.run()
    first = "b" if m.started["b"] else "c"
    other = "c" if first == "b" else "b"
    m.workers[first].clear()  # SIGKILL: silence from now on
    m.advance(5)
    assert [s.id for s in m.started[other]] == [jid]
    (w,) = m.workers[other].values()
    w.done(jid, "ok", m.clock())
    m.advance(0.5)
    res = m.replies("a")[jid]
    assert isinstance(res, JobResult)
    assert res.executed_on == other and res.attempts == 2


def test_broker_death_fails_over() -> None:
    """The target broker dies: once it is unreachable the job runs elsewhere."""
    m = triangle(auto_echo=False)
    m.add_worker("b", ["work"])
    m.add_worker("c", ["work"])
    m.advance(0.5)
    jid = m.submit("a", "work", retries=2)
    m.run()
    first = "b" if m.started["b"] else "c"
    other = "c" if first == "b" else "b"
    m.kill(first)
    m.advance(5)
    assert [s.id for s in m.started[other]] == [jid]
    (w,) = m.workers[other].values()
    w.done(jid, "ok", m.clock())
    m.advance(0.5)
    assert m.replies("a")[jid].executed_on == other


def test_non_idempotent_job_is_not_run_twice() -> None:
    """A non-idempotent job whose worker died ends with NotIdempotent."""
    m = triangle(auto_echo=False)
    m.add_worker("b", ["charge"])
    m.add_worker("c", ["charge"])
    m.advance(0.5)
    jid = m.submit("a", "charge", retries=2, idempotent=False)
    m.run()
    first = "b" if m.started["b"] else "c"
    other = "c" if first == "b" else "b"
    m.workers[first].clear()
    m.advance(5)
    err = m.replies("a")[jid]
    assert isinstance(err, NotIdempotent)
    assert "not idempotent" in err.message and not m.started[other]


def test_repeated_attempt_is_answered_from_the_result_cache() -> None:
    """A JOB whose result the target still has is answered, not run again."""
    m = triangle()
    m.add_worker("c", ["echo"])
    m.advance(0.5)
    jid = m.submit("a", "echo", {"v": 1}, on="c")
    m.run()
    assert isinstance(m.replies("a")[jid], JobResult)
    # the same job id again from the same origin (as a failover would send it)
    from operone_zmq.protocol import TAG, Header, JobRequest, MsgType, encode_header

    header = encode_header(Header(int(MsgType.JOB), jid, "a", "c", 8, 0, 2, None))
    m.nodes["a"]._relay.send_to_node("c", 2, [TAG, header, JobRequest("echo", {"v": 1}).pack()],
                               int(MsgType.JOB))
    m.run()
    assert len(m.started["c"]) == 1
    assert m.nodes["c"].counters["results_from_cache"] == 1


def test_cancel_reaches_the_remote_node() -> None:
    """Cancelling a job placed elsewhere stops it there."""
    m = triangle(auto_echo=False)
    m.add_worker("c", ["work"])
    m.advance(0.5)
    jid = m.submit("a", "work", on="c")
    m.run()
    assert m.nodes["a"].cancel_job(jid, "changed my mind")
    m.run()
    assert isinstance(m.replies("a")[jid], JobCancelled)
    (w,) = m.workers["c"].values()
    assert jid not in w.running


def test_local_fallback_when_no_remote_node_qualifies() -> None:
    """With the tool only here, the job runs here."""
    m = triangle()
    m.add_worker("a", ["local.only"])
    m.add_worker("b", ["echo"])
    m.advance(0.5)
    jid = m.submit("a", "local.only")
    m.run()
    assert m.replies("a")[jid].executed_on == "a"
    d = m.nodes["a"].decide("local.only")
    assert d.node == "a" and d.local
