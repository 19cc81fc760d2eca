"""Frames received without a copy (aio/pump.py ZERO_COPY_RECV hands a big
frame after the first on as a memoryview) go through the cores as bytes do:
the same replies, the same errors, and a big body forwarded as the very view
it arrived as.  (Compiled by mypyc, a frame bound to a ``bytes`` annotation
would raise TypeError here: protocol/frame.py.)"""

from __future__ import annotations

from operone_zmq.core.broker import WORKERS
from operone_zmq.core.client import ClientCore
from operone_zmq.core.worker import JobStart
from operone_zmq.protocol import TAG, Header, MsgType, decode, encode_header
from operone_zmq.protocol.batch import MAX_BATCH, encode_batch
from operone_zmq.protocol.bodies import ErrorBody, JobRequest, ResultBody
from operone_zmq.protocol.frame import Frame
from operone_zmq.testing import FakeClock, broker_with_worker, flushed

RID = b"\x00c1"
BIG = 40 * 1024  # past ZERO_COPY_RECV (32 KiB): what the pump hands on as a view


def _view(data: bytes) -> memoryview:
    return memoryview(data).toreadonly()


def _error(frames: list[Frame]) -> ErrorBody:
    msg = decode(frames, 1)
    assert msg.header.type == MsgType.ERROR
    return ErrorBody.unpack(msg.body)


def test_a_big_job_and_its_big_result_travel_as_views() -> None:
    clock = FakeClock()
    core, w = broker_with_worker(clock)
    c = ClientCore("c1")
    payload = b"x" * BIG
    frames = c.job("echo", {"data": payload}, cls=2)[1]
    body = _view(frames[2])
    # A small job in the same flush: the big one goes alone, beside a BATCH.
    core.on_frontend(2, [RID, frames[0], frames[1], body], clock())
    core.on_frontend(2, [RID, *c.job("echo", {}, cls=2)[1]], clock())
    out = flushed(core)
    assert core.counters["malformed"] == 0
    to_worker = [f for idx, f in out if idx == WORKERS]
    assert any(f[3] is body for f in to_worker)  # forwarded, not copied
    for f in to_worker:
        js = w.on_broker([f[1], f[2], f[3]], clock())
        assert isinstance(js, JobStart)
        w.done(js.id, js.args, clock())
    results = list(w.out)
    w.out.clear()
    for m in results:
        # The worker's RESULT as the broker's pump hands it on: a view when big.
        core.on_worker([b"w1", *[_view(x) if len(x) >= BIG else x for x in m]], clock())
    out = flushed(core)
    answers = [c.on_message(f[1:]) for idx, f in out if idx == 2 and len(f) == 4]
    values = [a.value.value for a in answers if a is not None]
    assert {"data": payload} in values
    assert core.counters["malformed"] == 0


def test_a_big_tag_header_or_signature_gets_the_error_bytes_get() -> None:
    """Whatever frame is big, the client hears what it would with bytes."""
    clock = FakeClock()
    h = encode_header(Header(int(MsgType.JOB), "j1", "", "n1", 8, 0, 2, None))
    body = JobRequest("echo", {}).pack()
    cases = [
        [b"OZ\x01" + b"\x00" * BIG, h, body],  # the tag
        [TAG, h + b"\x00" * BIG, body],  # the header
        [TAG, h, body, b"\x00" * BIG],  # a signature
    ]
    for frames in cases:
        replies = []
        for wrap in (False, True):
            core, _ = broker_with_worker(clock)
            core.on_frontend(2, [RID, *[_view(x) if wrap and len(x) >= BIG else x
                                        for x in frames]], clock())
            [(_, f)] = flushed(core)
            e = _error(f)
            replies.append((e.code, e.message))
        assert replies[0] == replies[1], replies


def test_a_bad_batch_body_as_a_view_is_refused_as_bytes_are() -> None:
    clock = FakeClock()
    c = ClientCore("c1")
    good = encode_batch([c.job("echo", {}, cls=2)[1]], 2)
    too_many = encode_batch([c.job("echo", {"p": "y" * 600}, cls=2)[1]
                             for _ in range(MAX_BATCH + 1)], 2)
    for frames in (too_many, [good[0], good[1], b"\x91\x91\xa1h" + b"\x00" * BIG]):
        replies = []
        for body in (frames[2], _view(frames[2])):
            core, _ = broker_with_worker(clock)
            core.on_frontend(2, [RID, frames[0], frames[1], body], clock())
            [(_, f)] = flushed(core)
            replies.append((_error(f).code, _error(f).message))
        assert replies[0] == replies[1] and replies[0][0] == "protocol", replies


def test_a_result_body_view_is_read_as_bytes_are() -> None:
    body = ResultBody({"data": b"z" * BIG}, "n1", 0.5).pack()
    assert ResultBody.unpack(_view(body)) == ResultBody.unpack(body)
