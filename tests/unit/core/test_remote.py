"""RemoteJobs: jobs run here for other origins, and the result cache."""

from __future__ import annotations

from coreparts import Parts

from operone_zmq.core.broker import WORKERS
from operone_zmq.protocol import TAG, Header, MsgType, decode_header, encode_header
from operone_zmq.protocol.bodies import ResultBody


def _job_from(p: Parts, jid: str, src: str) -> None:
    frames = p.job_frames(jid, "echo", src=src)
    p.remote.deliver(decode_header(frames[1]), frames, p.clock())


def _finish(p: Parts, jid: str, src: str) -> None:
    h = Header(int(MsgType.RESULT), jid, "n1", src, 8, 0, 2, None)
    p.local.on_worker([b"w1", TAG, encode_header(h), ResultBody(1, "n1", 0.1).pack()],
                      p.clock())


def test_a_repeated_attempt_is_answered_from_the_cache() -> None:
    p = Parts()
    p.ready(b"w1", ["echo"], slots=4)
    p.take()
    _job_from(p, "j1", "n2")
    assert p.types(p.take(), WORKERS) == [MsgType.JOB]
    _finish(p, "j1", "n2")
    assert len(p.remote) == 1
    _job_from(p, "j1", "n2")
    assert p.ctx.counters["results_from_cache"] == 1
    assert p.types(p.take(), WORKERS) == []  # not run again
    p.clock.advance(p.ctx.limits.result_cache_seconds + 1)
    p.remote.expire(p.clock())
    assert len(p.remote) == 0


def test_the_same_attempt_while_running_is_ignored_another_origin_refused() -> None:
    p = Parts()
    p.ready(b"w1", ["echo"], slots=4)
    _job_from(p, "j1", "n2")
    p.take()
    _job_from(p, "j1", "n2")
    assert p.ctx.counters["no_route"] == 0  # nothing was sent back
    _job_from(p, "j1", "n3")
    # the refusal is routed to n3, which is unreachable from here
    assert p.ctx.counters["no_route"] == 1
    assert len(p.local) == 1


def test_only_its_origin_cancels_it() -> None:
    p = Parts()
    p.ready(b"w1", ["echo"], slots=4)
    _job_from(p, "j1", "n2")
    p.take()
    for src in ("n3", "n2"):
        h = Header(int(MsgType.CANCEL), "j1", src, "n1", 8, 0, 2, None)
        p.remote.deliver(h, [TAG, encode_header(h), b""], p.clock())
    assert p.ctx.counters["jobs_cancelled"] == 1
    assert "j1" not in p.local
