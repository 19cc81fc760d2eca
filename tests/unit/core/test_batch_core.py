"""BATCH in the broker core: unpacked as singles, sent only to who accepts it."""

from __future__ import annotations

from operone_zmq.core.broker import WORKERS
from operone_zmq.core.client import ClientCore
from operone_zmq.core.worker import JobStart, WorkerCore
from operone_zmq.protocol import MsgType, ToolInfo, decode
from operone_zmq.protocol.batch import MAX_BATCH_SEND, decode_batch, encode_batch, is_batch
from operone_zmq.protocol.bodies import ErrorBody, Ping
from operone_zmq.testing import FakeClock, broker_with_worker, flushed

RID = b"\x00c1"


def _run(w: WorkerCore, frames: list[bytes], now: float) -> None:
    """The worker's shell: run echo."""
    js = w.on_broker(frames, now)
    assert isinstance(js, JobStart)
    w.done(js.id, js.args, now)


def _jobs(client: ClientCore, n: int) -> list[list[bytes]]:
    return [client.job("echo", {"i": i}, cls=2)[1] for i in range(n)]


def test_a_clients_batch_runs_every_job_and_the_answers_come_batched() -> None:
    clock = FakeClock()
    core, w = broker_with_worker(clock, batch=True)
    c = ClientCore("c1")
    n = MAX_BATCH_SEND + 4
    jobs = _jobs(c, n)
    core.on_frontend(2, [RID, *encode_batch(jobs[:n // 2], 2)], clock())
    core.on_frontend(2, [RID, *encode_batch(jobs[n // 2:], 2)], clock())
    assert core.counters["malformed"] == 0
    out = flushed(core)
    # The worker offered batch in READY: its jobs come as BATCHes of at most
    # MAX_BATCH_SEND.
    assert [(idx, len(decode_batch(f, 1))) for idx, f in out] == [
        (WORKERS, MAX_BATCH_SEND), (WORKERS, 4)]
    for _, frames in out:
        for m in decode_batch(frames, 1):
            _run(w, m, clock())
    for m in w.out:
        core.on_worker([b"w1", *m], clock())
    w.out.clear()
    out = flushed(core)
    assert all(idx == 2 and f[0] == RID and is_batch(f, 1) for idx, f in out)
    answers = [c.on_message(m) for _, f in out for m in decode_batch(f, 1)]
    assert sorted(a.value.value["i"] for a in answers if a is not None) == list(range(n))


def test_singles_to_a_client_that_never_sent_a_batch_and_to_a_v1_worker() -> None:
    clock = FakeClock()
    core, w = broker_with_worker(clock, batch=False)
    c, v1 = ClientCore("c1"), ClientCore("v1")
    core.on_frontend(2, [RID, *encode_batch(_jobs(c, 5), 2)], clock())
    for m in _jobs(v1, 5):
        core.on_frontend(2, [b"\x00v1", *m], clock())
    out = flushed(core)
    assert len(out) == 10 and not any(is_batch(f, 1) for _, f in out)  # v1 worker
    for _, f in out:
        _run(w, f[1:], clock())
    for m in w.out:
        core.on_worker([b"w1", *m], clock())
    out = flushed(core)
    to_v1 = [f for _, f in out if f[0] == b"\x00v1"]
    to_c1 = [f for _, f in out if f[0] == RID]
    assert len(to_v1) == 5 and not any(is_batch(f, 1) for f in to_v1)
    assert len(to_c1) == 1 and len(decode_batch(to_c1[0], 1)) == 5


def test_a_bad_batch_is_answered_with_an_error_and_counted() -> None:
    clock = FakeClock()
    core, _ = broker_with_worker(clock, batch=True)
    c = ClientCore("c1")
    nested = encode_batch(_jobs(c, 2), 2)
    for frames in ([nested[0], nested[1], b"\xc1"], encode_batch([*_jobs(c, 1), nested], 2)):
        core.on_frontend(2, [RID, *frames], clock())
        (idx, out), = core.out
        core.out.clear()
        msg = decode(out[1:])
        assert idx == 2 and msg.header.type == MsgType.ERROR
        assert ErrorBody.unpack(msg.body).code == "protocol"
    assert core.counters["malformed"] == 2
    assert core.counters["jobs_received"] == 0
    # Nor does a bad batch mark the client as accepting batches.
    core.on_frontend(2, [RID, *c.query("stats", cls=2)[1]], clock())
    core.on_frontend(2, [RID, *c.query("stats", cls=2)[1]], clock())
    out = flushed(core)
    assert len(out) == 2 and not any(is_batch(f, 1) for _, f in out)


def test_pong_to_a_client_says_batch() -> None:
    clock = FakeClock()
    core, _ = broker_with_worker(clock, batch=True)
    c = ClientCore("c1")
    core.on_frontend(2, [RID, *c.ping(2)[1]], clock())
    (_, frames), = core.out
    assert Ping.unpack(decode(frames[1:]).body).batch
    assert c.on_message(frames[1:]) is not None and c.broker_batches


def test_a_batch_the_worker_never_got_puts_every_job_back() -> None:
    """A BATCH of JOBs that could not be delivered (the worker is gone): every
    job in it is queued again and goes to another worker, none fails."""
    clock = FakeClock()
    core, _ = broker_with_worker(clock, batch=True)
    w2 = WorkerCore("n1.w2", [ToolInfo("echo")], slots=1000, now=clock(), batch=True)
    w2.start(clock())
    while w2.out:
        core.on_worker([b"w2", *w2.out.pop(0)], clock())
    core.out.clear()
    c = ClientCore("c1")
    core.on_frontend(2, [RID, *encode_batch(_jobs(c, MAX_BATCH_SEND), 2)], clock())
    out = flushed(core)
    lost = [f for _, f in out if f[0] == b"w1" and is_batch(f, 1)]
    assert lost
    n = len(decode_batch(lost[0], 1))
    core.on_unroutable(WORKERS, lost[0], clock())
    again = [m for _, f in flushed(core) if f[0] == b"w2"
             for m in (decode_batch(f, 1) if is_batch(f, 1) else [f[1:]])
             if decode(m).header.type == MsgType.JOB]
    assert len(again) == n
    assert core.counters["jobs_failed"] == 0 and core.counters["unroutable"] == n


def test_a_broker_that_does_not_batch_sends_singles_and_says_so() -> None:
    """The shell clears ``batching`` when its message size limit is below
    MIN_SIZE_TO_BATCH: its PONG then says nothing of batch, and a client's
    BATCH is still taken but answered with singles."""
    clock = FakeClock()
    core, _ = broker_with_worker(clock, batch=True)
    core.batching = False
    c = ClientCore("c1")
    core.on_frontend(2, [RID, *c.ping(2)[1]], clock())
    (_, frames), = core.out
    core.out.clear()
    assert not Ping.unpack(decode(frames[1:]).body).batch
    core.on_frontend(2, [RID, *encode_batch(_jobs(c, 4), 2)], clock())
    out = flushed(core)
    assert len(out) == 4 and not any(is_batch(f, 1) for _, f in out)


def test_a_batch_is_judged_by_its_keys_grant_message_by_message() -> None:
    """The key's grant is looked up once for a BATCH, and every message in
    it is held to it: a submit-role key cannot slip a broadcast or a tool it
    may not run in among allowed jobs."""
    from operone_zmq.core.access import Grant
    from operone_zmq.core.broker import BrokerCore

    clock = FakeClock()
    asked: list[str | None] = []

    def grants(uid: str | None) -> Grant:
        asked.append(uid)
        return Grant("submit", tools=frozenset({"echo"}), fingerprint="f" * 16)

    core = BrokerCore("n1", now=clock(), grants=grants)
    w = WorkerCore("n1.w1", [ToolInfo("echo"), ToolInfo("rm")], now=clock(), batch=True)
    w.start(clock())
    while w.out:
        core.on_worker([b"w1", *w.out.pop(0)], clock())
    core.out.clear()
    c = ClientCore("c1")
    ok = c.job("echo", {"i": 1}, cls=2)
    no = c.job("rm", {}, cls=2)
    bid, bc = c.broadcast("hello", cls=2)
    core.on_frontend(2, [RID, *encode_batch([ok[1], no[1], bc], 2)], clock(), "K" * 40)
    assert asked == ["K" * 40]
    out = flushed(core)
    to_worker = [decode(f, 1).header.id for idx, f in out if idx == WORKERS]
    assert to_worker == [ok[0]]
    errors = {}
    for idx, f in out:
        if idx != WORKERS:
            msgs = decode_batch(f, 1) if is_batch(f, 1) else [f[1:]]
            for m in msgs:
                h = decode(m).header
                assert h.type == MsgType.ERROR
                errors[h.corr or h.id] = ErrorBody.unpack(m[2]).code
    assert errors == {no[0]: "refused", bid: "refused"}
