"""LocalJobs: the job table and local dispatch, on the workers of its pool."""

from __future__ import annotations

from coreparts import Parts

from operone_zmq.core.broker import WORKERS, BrokerLimits
from operone_zmq.errors import NoRoute, Overloaded, ToolNotFound
from operone_zmq.protocol import MsgType
from operone_zmq.protocol.bodies import JobRequest


def _accept(p: Parts, jid: str, tool: str = "echo") -> object:
    return p.local.accept(b"\x00c", 2, "cli", jid, JobRequest(tool), p.job_frames(jid, tool),
                          p.clock(), remote=False)


def test_ready_registers_and_is_answered_with_a_heartbeat() -> None:
    parts = Parts()
    parts.ready(b"w1", ["echo"], slots=2, caps=("gpu",))
    assert parts.types(parts.take()) == [MsgType.HEARTBEAT]
    assert parts.local.pool.offers("echo")
    assert parts.local.pool.caps() == ["gpu"]
    assert parts.local.pool.load() == (0, 2)
    assert parts.linkstate.dirty


def test_a_free_slot_runs_the_job_else_it_queues() -> None:
    parts = Parts()
    parts.ready(b"w1", ["echo"], slots=1)
    parts.take()
    assert _accept(parts, "j1") is None
    assert parts.types(parts.take(), WORKERS) == [MsgType.JOB]
    assert _accept(parts, "j2") is None
    assert parts.take() == []
    assert parts.local.queued == 1
    assert len(parts.local) == 2
    assert parts.local.info().load == 1.0


def test_refusals() -> None:
    p = Parts(BrokerLimits(max_queued_jobs=1))
    assert isinstance(_accept(p, "j0", "nope"), ToolNotFound)
    p.ready(b"w1", ["echo"], slots=1)
    assert _accept(p, "j1") is None
    assert _accept(p, "j2") is None
    assert isinstance(_accept(p, "j3"), Overloaded)


def test_losing_the_only_worker_fails_queued_jobs_with_no_route() -> None:
    parts = Parts()
    parts.ready(b"w1", ["echo"], slots=1)
    _accept(parts, "j1")
    _accept(parts, "j2")
    parts.take()
    parts.local.on_unroutable([b"w1", b"", b""])
    assert not parts.local.pool.offers("echo")
    assert len(parts.local) == 0
    codes = parts.ctx.errors
    assert codes == {"worker_lost": 1, "no_route": 1}
    assert NoRoute.code == "no_route"


def test_deadline_cancels_the_running_job() -> None:
    parts = Parts()
    parts.ready(b"w1", ["echo"], slots=1)
    parts.local.accept(b"\x00c", 2, "cli", "j1", JobRequest("echo", timeout=1.0),
                       parts.job_frames("j1", "echo"), parts.clock(), remote=False)
    parts.take()
    assert parts.local.next_deadline() <= parts.clock() + 1.0
    parts.clock.advance(1.5)
    parts.local.tick(parts.clock())
    out = parts.take()
    assert MsgType.CANCEL in parts.types(out, WORKERS)
    assert parts.types(out, 2) == [MsgType.ERROR]
    assert parts.ctx.counters["jobs_timed_out"] == 1
