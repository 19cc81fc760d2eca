"""QUERY jobs and QUERY job: the contract of docs/dashboard.md, through the
broker's face (frames in, frames out)."""

from __future__ import annotations

from typing import Any

from coreparts import WALL, Parts

from operone_zmq.core.jobrecords import MAX_KEPT_RESULT, FinishedJobs, JobRecord
from operone_zmq.protocol import TAG, Header, MsgType, Query, decode, encode_header
from operone_zmq.protocol.bodies import ErrorBody, JobRequest, ResultBody, unpack_value

CLIENT = b"\x00cli"
KEYS = {"id", "tool", "node", "state", "attempts", "started", "finished", "duration",
        "submitter", "error"}


def _submit(p: Parts, jid: str, tool: str = "echo", **kw: Any) -> None:
    h = Header(int(MsgType.JOB), jid, "alice", "", 8, 0, 2, None)
    p.core.on_frontend(2, [CLIENT, TAG, encode_header(h), JobRequest(tool, {}, **kw).pack()],
                       p.clock())


def _query(p: Parts, what: str, args: dict[str, Any] | None = None) -> tuple[str, Any]:
    """("reply", value) or ("error", code) of one QUERY sent through the face."""
    p.take()
    h = Header(int(MsgType.QUERY), "q1", "alice", "", 8, 0, 0, None)
    p.core.on_frontend(0, [CLIENT, TAG, encode_header(h), Query(what, args or {}).pack()],
                       p.clock())
    ((_, frames),) = [o for o in p.take() if o[0] == 0]
    msg = decode(frames, 1)
    if msg.header.type == MsgType.ERROR:
        return "error", ErrorBody.unpack(msg.body).code
    return "reply", unpack_value(msg.body)


def _worker_answers(p: Parts, rid: bytes, jid: str, value: Any = None,
                    error: str | None = None) -> None:
    if error is None:
        h = Header(int(MsgType.RESULT), jid, rid.decode(), "", 8, 0, 2, None)
        body = ResultBody(value, "n1", 0.5).pack()
    else:
        h = Header(int(MsgType.ERROR), jid, rid.decode(), "", 8, 0, 2, None)
        body = ErrorBody(error, "it broke", "ValueError", "n1", {}).pack()
    p.core.on_worker([rid, TAG, encode_header(h), body], p.clock())


def test_jobs_in_flight_queued_and_running_then_done_and_failed() -> None:
    p = Parts()
    p.ready(b"w1", ["echo"], slots=1)
    t0 = WALL + p.clock()
    _submit(p, "j1", timeout=30.0)
    p.clock.advance(1.0)
    _submit(p, "j2")
    kind, jobs = _query(p, "jobs")
    assert kind == "reply"
    assert [(j["id"], j["state"], j["node"]) for j in jobs] == [
        ("j2", "queued", "n1"), ("j1", "running", "n1")]
    assert all(set(j) == KEYS for j in jobs)
    j1 = jobs[1]
    assert j1["tool"] == "echo" and j1["submitter"] == "alice" and j1["attempts"] == 1
    assert j1["started"] == t0 and j1["finished"] is None and j1["duration"] is None
    p.clock.advance(2.0)
    _worker_answers(p, b"w1", "j1", value={"ok": 1})
    _worker_answers(p, b"w1", "j2", error="tool_failed")
    jobs = _query(p, "jobs")[1]
    assert [(j["id"], j["state"]) for j in jobs] == [("j2", "failed"), ("j1", "done")]
    assert jobs[0]["error"] == {"code": "tool_failed", "message": "it broke"}
    assert jobs[1]["duration"] == 3.0 and jobs[1]["error"] is None
    assert _query(p, "jobs", {"state": "done"})[1][0]["id"] == "j1"
    assert _query(p, "jobs", {"node": "elsewhere"})[1] == []
    assert len(_query(p, "jobs", {"limit": 1})[1]) == 1
    detail = _query(p, "job", {"id": "j1"})[1]
    assert detail["result"] == {"ok": 1} and detail["priority"] == "normal"
    assert detail["timeout"] == 30.0
    assert detail["history"] == [{"node": "n1", "started": t0, "finished": t0 + 3.0,
                                  "error": None}]


def test_a_cancelled_job_is_listed_as_cancelled() -> None:
    p = Parts()
    p.ready(b"w1", ["echo"], slots=1)
    _submit(p, "j1")
    assert _query(p, "cancel", {"job": "j1"})[1] == {"job": "j1", "cancelled": True}
    (j,) = _query(p, "jobs")[1]
    assert j["state"] == "cancelled" and j["error"]["code"] == "cancelled"


def test_a_job_run_here_for_another_broker_names_its_origin() -> None:
    p = Parts()
    p.ready(b"w1", ["echo"])
    p.take()
    h = Header(int(MsgType.JOB), "r1", "n2", "n1", 8, 0, 2, None)
    frames = [TAG, encode_header(h), JobRequest("echo", {}).pack()]
    p.remote.deliver(h, frames, p.clock())
    (j,) = _query(p, "jobs")[1]
    assert (j["id"], j["state"], j["submitter"], j["node"]) == ("r1", "running", "n2", "n1")
    _worker_answers(p, b"w1", "r1", value=5)
    (j,) = _query(p, "jobs")[1]
    assert j["state"] == "done"
    assert _query(p, "job", {"id": "r1"})[1]["result"] == 5


def test_bad_args_are_bad_requests_and_an_unknown_id_is_not_an_error() -> None:
    p = Parts()
    for args in ({"state": "bogus"}, {"limit": 0}, {"limit": 501}, {"limit": True},
                 {"node": 5}):
        assert _query(p, "jobs", args) == ("error", "bad_request"), args
    assert _query(p, "job", {}) == ("error", "bad_request")
    assert _query(p, "job", {"id": "nope"}) == ("reply", {"id": "nope", "state": None})
    assert p.core.stats(p.clock())["errors"]["bad_request"] == 6


def test_the_finished_ring_and_kept_results_are_bounded() -> None:
    ring = FinishedJobs(capacity=3)
    for i in range(5):
        r = JobRecord(f"j{i}", "echo", None, float(i))
        r.finish("done", float(i) + 1, result=b"x" * (MAX_KEPT_RESULT + i - 1))
        ring.add(r)
    assert [r.id for r in ring] == ["j4", "j3", "j2"]
    assert ring.get("j0") is None
    assert ring.get("j2") is not None and ring.get("j2").result is None  # type: ignore[union-attr]


def test_an_id_finished_again_moves_to_the_newest_end_of_the_ring() -> None:
    ring = FinishedJobs(capacity=3)
    recs = {i: JobRecord(f"j{i}", "echo", None, float(i)) for i in range(3)}
    for r in recs.values():
        ring.add(r)
    again = JobRecord("j0", "echo", None, 9.0)
    ring.add(again)  # j0 again: now the newest, so j1 is the oldest
    assert [r.id for r in ring] == ["j0", "j2", "j1"] and len(ring) == 3
    ring.add(recs[0])  # the same id again, an old object: still one entry
    ring.add(JobRecord("j3", "echo", None, 3.0))
    assert [r.id for r in ring] == ["j3", "j0", "j2"]
    assert ring.get("j0") is recs[0] and ring.get("j1") is None
    for i in range(4, 40):  # the order stays as long as the ring, never longer
        ring.add(JobRecord(f"j{i}", "echo", None, float(i)))
    assert [r.id for r in ring] == ["j39", "j38", "j37"] and len(ring._order) == 3
