"""The job's timeout is one deadline across all its attempts (issue 13: a
``--timeout 1`` with two retries took 4.4 s)."""

from __future__ import annotations

from coreparts import Parts

from operone_zmq.core.broker import WORKERS, BrokerLimits
from operone_zmq.protocol import TAG, Header, MsgType, decode, encode_header
from operone_zmq.protocol.bodies import Disconnect, ErrorBody, JobRequest

CLIENT = b"\x00cli"


def _submit(p: Parts, jid: str, **kw: object) -> None:
    h = Header(int(MsgType.JOB), jid, "alice", "", 8, 0, 2, None)
    p.core.on_frontend(2, [CLIENT, TAG, encode_header(h),
                           JobRequest("echo", {}, **kw).pack()], p.clock())  # type: ignore[arg-type]


def _to_worker(p: Parts) -> list[JobRequest]:
    return [JobRequest.unpack(decode(f, 1).body) for s, f in p.take()
            if s == WORKERS and decode(f, 1).header.type == MsgType.JOB]


def _answers(p: Parts) -> list[str]:
    return [ErrorBody.unpack(decode(f, 1).body).code for s, f in p.take()
            if s == 2 and decode(f, 1).header.type == MsgType.ERROR]


def _worker_dies(p: Parts) -> None:
    """The worker running the job disconnects (its job is lost)."""
    (rid,) = [w.rid for w in p.local.pool.workers.values() if w.running]
    h = Header(int(MsgType.DISCONNECT), "d1", rid.decode(), "", 8, 0, 0, None)
    p.core.on_worker([rid, TAG, encode_header(h), Disconnect("bye").pack()], p.clock())


def _run_retries(p: Parts) -> None:
    due = p.origin.next_deadline(float("inf"))
    p.clock.advance(max(0.0, due - p.clock()))
    p.core.tick(p.clock())


def test_a_retry_gets_what_is_left_of_the_deadline() -> None:
    # Workers stay registered across the clock jumps (no heartbeats here).
    p = Parts(BrokerLimits(heartbeat_interval=100.0))
    p.ready(b"w1", ["echo"], slots=1)
    p.ready(b"w2", ["echo"], slots=1)
    p.take()
    _submit(p, "j1", timeout=10.0, retries=2)
    assert [r.timeout for r in _to_worker(p)] == [10.0]
    p.clock.advance(6.0)
    _worker_dies(p)
    _run_retries(p)  # after the back-off (a heartbeat period when only this node is left)
    (retry,) = _to_worker(p)
    assert retry.timeout is not None and 0.0 < retry.timeout <= 4.0


def test_a_timed_out_job_is_not_retried_and_answers_within_its_timeout() -> None:
    p = Parts()
    p.ready(b"w1", ["echo"], slots=1)
    p.take()
    _submit(p, "j1", timeout=1.0, retries=2)
    start = p.clock()
    p.clock.advance(1.0)
    p.core.tick(p.clock())
    assert _answers(p) == ["timeout"]
    assert len(p.origin) == 0
    assert p.clock() - start == 1.0
    assert p.ctx.counters["retries"] == 0


def test_no_retry_once_the_deadline_passed_during_the_backoff() -> None:
    p = Parts()
    p.ready(b"w1", ["echo"], slots=1)
    p.take()
    _submit(p, "j1", timeout=1.0, retries=2)
    p.ready(b"w2", ["echo"], slots=1)
    p.take()
    p.clock.advance(0.999)
    _worker_dies(p)
    _run_retries(p)
    assert _answers(p) == ["timeout"]
    assert _to_worker(p) == []
