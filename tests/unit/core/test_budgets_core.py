"""Budgets per sender in the core parts (issue 11): jobs and body bytes in
flight per client connection and per origin node, and the byte bounds of the
broadcast history and the result cache."""

from __future__ import annotations

from typing import Any

from coreparts import Parts

from operone_zmq.core.access import Grant
from operone_zmq.core.context import BrokerLimits
from operone_zmq.core.remote import MAX_CACHED_RESULT_BYTES
from operone_zmq.protocol import TAG, Header, MsgType, decode, encode_header
from operone_zmq.protocol.bodies import ErrorBody, JobRequest, ResultBody, pack_value


def _submit(p: Parts, jid: str, rid: bytes = b"\x00c", **args: Any) -> None:
    body = JobRequest("echo", args).pack()
    h = Header(int(MsgType.JOB), jid, "cli", "", 8, 0, 2, None)
    p.origin.submit(2, rid, h, [rid, TAG, encode_header(h), body], body, p.clock())


def _answers(p: Parts) -> list[tuple[bytes, str, str]]:
    """(client, job id, RESULT or the ERROR code) sent to clients."""
    out = []
    for sock, frames in p.take():
        if sock > 3:
            continue
        m = decode(frames, 1)
        what = "result" if m.header.type == MsgType.RESULT else ErrorBody.unpack(m.body).code
        out.append((frames[0], m.header.id, what))
    return out


def _finish(p: Parts, jid: str) -> None:
    h = Header(int(MsgType.RESULT), jid, "w1", "", 8, 0, 2, None)
    p.local.on_worker([b"w1", TAG, encode_header(h), ResultBody(1).pack()], p.clock())


def test_jobs_in_flight_per_connection_are_capped_and_given_back() -> None:
    p = Parts(BrokerLimits(max_client_jobs=2))
    p.ready(b"w1", ["echo"], slots=10)
    p.take()
    for j in ("j1", "j2", "j3"):
        _submit(p, j)
    _submit(p, "k1", rid=b"\x00d")  # another connection has its own budget
    assert [a for a in _answers(p)] == [(b"\x00c", "j3", "overloaded")]
    _finish(p, "j1")
    assert _answers(p) == [(b"\x00c", "j1", "result")]
    _submit(p, "j4")
    assert _answers(p) == []  # accepted: j1's place was given back


def test_job_bodies_in_flight_per_connection_are_capped_in_bytes() -> None:
    p = Parts(BrokerLimits(max_client_bytes=3000))
    p.ready(b"w1", ["echo"], slots=10)
    p.take()
    _submit(p, "j1", blob=b"x" * 1400)
    _submit(p, "j2", blob=b"x" * 1400)
    _submit(p, "j3", blob=b"x" * 1400)
    answers = _answers(p)
    assert [(j, c) for _, j, c in answers] == [("j3", "overloaded")]
    _finish(p, "j2")
    _submit(p, "j4", blob=b"x" * 1400)
    assert [(j, c) for _, j, c in _answers(p)] == [("j2", "result")]
    assert p.origin._use == {b"\x00c": [2, p.origin._use[b"\x00c"][1]]}


def test_a_routed_job_over_its_origins_byte_budget_is_overloaded() -> None:
    p = Parts(BrokerLimits(max_origin_bytes=3000))
    p.ready(b"w1", ["echo"], slots=10)
    p.take()

    def deliver(jid: str) -> None:
        h = Header(int(MsgType.JOB), jid, "n2", "n1", 8, 0, 2, None)
        p.remote.deliver(h, [TAG, encode_header(h),
                             JobRequest("echo", {"b": b"x" * 1400}).pack()], p.clock())

    deliver("a")
    deliver("b")
    assert p.remote._use == {"n2": p.remote._use["n2"]}
    p.take()
    deliver("c")  # refused: its error is routed back (no route here: dropped)
    assert ("n2", "c") not in p.remote._sizes
    _finish(p, "a")
    assert ("n2", "a") not in p.remote._sizes and len(p.remote._sizes) == 1


def test_the_result_cache_is_bounded_in_bytes() -> None:
    p = Parts()
    big = [b"", TAG, b"h", b"x" * (MAX_CACHED_RESULT_BYTES // 16 - 100)]
    from operone_zmq.core.ports import Job

    for i in range(40):
        job = Job(f"j{i}", b"", 2, "echo", frozenset(), [], 0.0, 0.0, "n2", remote=True)
        p.remote._cache(job, big)
    assert p.remote._cached_bytes <= MAX_CACHED_RESULT_BYTES
    assert 0 < len(p.remote) < 40
    huge = [b"", TAG, b"h", b"x" * (MAX_CACHED_RESULT_BYTES // 16 + 1)]
    job = Job("huge", b"", 2, "echo", frozenset(), [], 0.0, 0.0, "n2", remote=True)
    p.remote._cache(job, huge)
    assert ("n2", "huge") not in p.remote._results


def test_the_broadcast_history_is_bounded_in_bytes() -> None:
    p = Parts(BrokerLimits(max_kept_broadcast_bytes=16 * 1000))
    for i in range(40):
        h = Header(int(MsgType.BROADCAST), f"b{i}", "n2", "", 1, 0, 2, None)
        p.relay.on_broadcast("n2", h, [TAG, encode_header(h), pack_value(b"x" * 900)],
                             p.clock())
    kept = list(p.relay.broadcasts)
    assert sum(b["size"] for b in kept) <= 16 * 1000
    assert kept[-1]["data"] == b"x" * 900
    h = Header(int(MsgType.BROADCAST), "big", "n2", "", 1, 0, 2, None)
    p.relay.on_broadcast("n2", h, [TAG, encode_header(h), pack_value(b"x" * 1001)],
                         p.clock())
    assert p.relay.broadcasts[-1]["data"] is None
    assert p.relay.broadcasts[-1]["size"] == 1004


def _submit_as(p: Parts, jid: str, rid: bytes, grant: Grant) -> None:
    body = JobRequest("echo", {}).pack()
    h = Header(int(MsgType.JOB), jid, "cli", "", 8, 0, 2, None)
    p.origin.submit(2, rid, h, [rid, TAG, encode_header(h), body], body, p.clock(), grant)


def test_a_submit_keys_connections_share_one_budget() -> None:
    """Many connections of one submit key do not multiply its budget; an
    operator key (the node's own, shared by local tools) is bounded per
    connection; another submit key has its own budget."""
    p = Parts(BrokerLimits(max_client_jobs=2))
    p.ready(b"w1", ["echo"], slots=20)
    p.take()
    bob = Grant(role="submit", fingerprint="b0b0b0b0b0b0b0b0")
    eve = Grant(role="submit", fingerprint="e0e0e0e0e0e0e0e0")
    op = Grant(fingerprint="0000000000000001")
    for i in range(4):  # four connections of bob's: two jobs in all
        _submit_as(p, f"bob-{i}", bytes([0, i]), bob)
    _submit_as(p, "eve-1", b"\x00e", eve)
    for i in range(4):
        _submit_as(p, f"op-{i}", bytes([0, 10 + i]), op)
    assert [(j, c) for _, j, c in _answers(p)] == [("bob-2", "overloaded"),
                                                  ("bob-3", "overloaded")]
    _finish(p, "bob-0")
    assert [(j, c) for _, j, c in _answers(p)] == [("bob-0", "result")]
    _submit_as(p, "bob-4", b"\x00\x07", bob)
    assert _answers(p) == []  # bob-0's place was given back to the key
    assert p.origin._key_use["b0b0b0b0b0b0b0b0"][0] == 2
