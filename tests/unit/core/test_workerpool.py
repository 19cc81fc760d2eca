"""WorkerPool: the worker registry of LocalJobs, its liveness and delivery."""

from __future__ import annotations

from coreparts import Parts

from operone_zmq.core.broker import WORKERS
from operone_zmq.protocol import TAG, Header, MsgType, decode, encode_header
from operone_zmq.protocol.bodies import JobRequest


def test_the_tool_index_follows_registration_and_removal() -> None:
    """A tool is offered while one worker offers it; caps are the union."""
    p = Parts()
    p.ready(b"w1", ["echo", "sum"], caps=("gpu",))
    p.ready(b"w2", ["echo"])
    pool = p.local.pool
    assert pool.tools() == ["echo", "sum"] and pool.tool_counts() == {"echo": 2, "sum": 1}
    assert pool.caps() == ["gpu"] and pool.info().tools == {"echo", "sum"}
    pool.remove(pool.workers[b"w1"])
    assert pool.tools() == ["echo"] and pool.caps() == [] and pool.worker_count() == 1
    assert all(pool.by_tool.values())  # no tool is left with an empty list


def test_expire_yields_the_silent_between_the_heartbeats_of_the_live() -> None:
    """Each silent worker is yielded at its place in the table: what its
    removal sends comes after the heartbeats of the workers before it."""
    p = Parts()
    for rid in (b"w1", b"w2", b"w3"):
        p.ready(rid, ["echo"])
    p.take()
    pool = p.local.pool
    assert list(pool.expire(p.clock())) == []  # not due yet: nothing sent either
    assert p.take() == []
    p.clock.advance(1.0)
    pool.workers[b"w2"].expires = p.clock()
    seen = []
    for w in pool.expire(p.clock()):
        seen.append((w.rid, [f[0] for _, f in p.take()]))
    assert seen == [(b"w2", [b"w1"])]
    assert [f[0] for _, f in p.take()] == [b"w3"]
    assert pool.next_heartbeat == p.clock() + 1.0


def test_a_worker_lost_in_tick_is_answered_in_its_place() -> None:
    """The ERROR for the job of a worker that fell silent comes between the
    heartbeats of the workers registered before and after it."""
    p = Parts()
    for rid in (b"w1", b"w2", b"w3"):
        p.ready(rid, ["echo"], slots=2 if rid == b"w2" else 1)  # w2: the most free slots
    p.local.accept(b"\x00c", 2, "cli", "j1", JobRequest("echo"), p.job_frames("j1", "echo"),
                   p.clock(), remote=False)
    (busy,) = [w.rid for w in p.local.pool.workers.values() if w.running]
    assert busy == b"w2"
    for t in (1.0, 2.0, 3.0):
        p.clock.advance(1.0)
        for rid in (b"w1", b"w2", b"w3"):
            if rid != busy:  # the busy one falls silent
                h = Header(int(MsgType.HEARTBEAT), f"h{t}", rid.decode(), "", 8, 0, 0, None)
                p.local.on_worker([rid, TAG, encode_header(h), b""], p.clock())
        p.take()
        p.local.tick(p.clock())
    out = [(s, MsgType(decode(f, 1).header.type)) for s, f in p.take()]
    assert out == [(WORKERS, MsgType.HEARTBEAT), (2, MsgType.ERROR),
                   (WORKERS, MsgType.HEARTBEAT)]
    assert p.ctx.errors == {"worker_lost": 1}
