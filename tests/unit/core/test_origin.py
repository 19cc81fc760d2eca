"""OriginTable: placement, attempts, retries and cancel of our clients' jobs."""

from __future__ import annotations

from typing import Any

from coreparts import Parts

from operone_zmq.errors import WorkerLost
from operone_zmq.protocol import TAG, Header, MsgType, decode, encode_header
from operone_zmq.protocol.bodies import ErrorBody, JobRequest, ResultBody


def _submit(p: Parts, jid: str, tool: str = "echo", **kw: Any) -> None:
    body = JobRequest(tool, {}, **kw).pack()
    h = Header(int(MsgType.JOB), jid, "cli", "", 8, 0, 2, None)
    frames = [b"\x00c", TAG, encode_header(h), body]
    p.origin.submit(2, b"\x00c", h, frames, body, p.clock())


def _error_codes(p: Parts) -> list[str]:
    codes = []
    for sock, frames in p.take():
        msg = decode(frames, 1)
        if sock == 2 and msg.header.type == MsgType.ERROR:
            codes.append(ErrorBody.unpack(msg.body).code)
    return codes


def test_no_node_offers_the_tool() -> None:
    p = Parts()
    _submit(p, "j1", "nope")
    assert _error_codes(p) == ["tool_not_found"]
    assert len(p.origin) == 0
    assert p.origin.in_flight() == {}


def test_placed_here_counts_in_flight_until_the_result() -> None:
    p = Parts()
    p.ready(b"w1", ["echo"])
    p.take()
    _submit(p, "j1")
    assert "j1" in p.origin
    assert p.origin.in_flight() == {"n1": 1}
    h = Header(int(MsgType.RESULT), "j1", "n1", "cli", 8, 0, 2, None)
    p.origin.reply("j1", int(MsgType.RESULT),
                   [TAG, encode_header(h), ResultBody(1, "n1", 0.1).pack()], p.clock(), "n1")
    assert len(p.origin) == 0 and p.origin.in_flight() == {}
    assert p.ctx.counters["jobs_completed"] == 1


def test_duplicate_id_is_refused() -> None:
    p = Parts()
    p.ready(b"w1", ["echo"])
    _submit(p, "j1")
    p.take()
    _submit(p, "j1")
    assert _error_codes(p) == ["bad_request"]


def test_a_retryable_failure_is_placed_again_after_the_backoff() -> None:
    p = Parts()
    p.ready(b"w1", ["echo"])
    _submit(p, "j1", retries=1)
    p.take()
    p.origin.attempt_failed("j1", WorkerLost("gone", job_id="j1"))
    assert p.ctx.counters["retries"] == 1
    assert _error_codes(p) == []
    due = p.origin.next_deadline(float("inf"))
    assert due > p.clock()
    p.clock.advance(due - p.clock())
    p.origin.tick(p.clock())
    assert p.origin.in_flight() == {"n1": 1}


def test_a_job_that_may_have_started_is_not_run_again_unless_idempotent() -> None:
    p = Parts()
    p.ready(b"w1", ["echo"])
    _submit(p, "j1", retries=2, idempotent=False)
    p.take()
    p.origin.attempt_failed("j1", WorkerLost("gone", job_id="j1"))
    assert _error_codes(p) == ["not_idempotent"]


def test_cancel_only_by_its_client() -> None:
    p = Parts()
    p.ready(b"w1", ["echo"])
    _submit(p, "j1")
    p.take()
    assert not p.origin.cancel("j1", client=b"\x00other")
    assert p.origin.cancel("j1", "enough", client=b"\x00c")
    assert _error_codes(p) == ["cancelled"]
    assert not p.origin.cancel("j1")
