"""Packed BATCHes between brokers, to clients and to workers (revision 9):
offered in HELLO/WELCOME (``packed``), READY, and by a client sending one;
sent only to who offered, a lone message included; received exactly as a
BATCH is (the session, key and signature checks, then message by message).
Revision-7 BATCHes between brokers that do not say ``packed``:
test_batch_peers.py."""

from __future__ import annotations

from operone_zmq.core.broker import FIRST_DIAL_SOCKET, WORKERS
from operone_zmq.core.client import ClientCore, JobResult
from operone_zmq.core.peers import incarnation_id
from operone_zmq.protocol import TAG, MsgType, decode
from operone_zmq.protocol.batch import encode_batch, is_packed, pack_messages
from operone_zmq.testing import CoreMesh, FakeClock, broker_with_worker, flushed, messages_in

from .test_batch_peers import RID, _answers, _jobs, _Pair

Sent = list[tuple[str, int, list[bytes]]]


def _chain(b_packs: bool = True) -> CoreMesh:
    """a - b - c (a dials b, b dials c), a worker on c; b says ``packed`` or
    not (a revision-8 broker)."""
    m = CoreMesh(batched=True)
    for x in "abc":
        m.add(x)
    m.nodes["b"].packing = b_packs
    m.dial("a", "b")
    m.dial("b", "c")
    m.run()
    m.advance(2)
    m.add_worker("c", ["echo"], slots=1000)
    m.run()
    return m


def _to_peers(seen: Sent) -> list[tuple[str, int, list[bytes]]]:
    """What brokers sent to neighbours, each as operone frames (no routing id)."""
    out = []
    for node, sock, frames in seen:
        if sock >= FIRST_DIAL_SOCKET:
            out.append((node, sock, frames))
        elif sock < WORKERS and frames[0][:1] != b"\x00":
            out.append((node, sock, frames[1:]))
    return out


def _run_jobs(m: CoreMesh, n: int) -> list[str]:
    ids = [m.submit("a", "echo", {"i": i}, on="c") for i in range(n)]
    m.run()
    replies = m.replies("a")
    assert all(isinstance(replies[j], JobResult) for j in ids)
    return ids


def test_brokers_that_offer_packed_send_each_other_one_frame_per_message() -> None:
    m = _chain()
    a, b, c = (m.nodes[x] for x in "abc")
    assert a.links["b"].dial_packed and b.links["a"].accepted_packed
    assert b.links["c"].dial_packed and c.links["b"].accepted_packed
    seen: Sent = []
    m.wire = seen
    _run_jobs(m, 1)  # one job in flight: every message alone, packed
    _run_jobs(m, 50)
    sent = _to_peers(seen)
    assert sent and all(is_packed(f) for _, _, f in sent)
    inner = [decode(x).header.type for _, _, f in sent for x in messages_in(f)]
    assert inner.count(MsgType.JOB) >= 2 * 51 and inner.count(MsgType.RESULT) >= 2 * 51
    for node in "abc":
        assert m.nodes[node].counters["malformed"] == 0
    assert b.counters["packed_sent"] > 0 and b.counters["packed_received"] > 0
    assert b.counters["batches_sent"] >= b.counters["packed_sent"]
    # Heartbeats still leave apart, at once, in their own frames.
    seen.clear()
    m.advance(3)
    assert not any(decode(x).header.type in (MsgType.PING, MsgType.PONG)
                   for _, _, f in _to_peers(seen) if is_packed(f) for x in messages_in(f))


def test_a_revision_8_neighbour_is_sent_no_packed_batch_and_sends_none() -> None:
    m = _chain(b_packs=False)
    a, b, c = (m.nodes[x] for x in "abc")
    assert not a.links["b"].dial_packed and not c.links["b"].accepted_packed
    assert b.links["a"].accepted_packed and b.links["c"].dial_packed  # a and c said it
    seen: Sent = []
    m.wire = seen
    _run_jobs(m, 1)
    _run_jobs(m, 50)
    sent = _to_peers(seen)
    assert sent and not any(is_packed(f) for _, _, f in sent)
    assert b.counters["packed_received"] == b.counters["packed_sent"] == 0
    assert b.counters["batches_sent"] > 0  # revision 7 still batches


def test_a_neighbours_packed_batch_is_handled_message_by_message() -> None:
    """The five JOBs of test_batch_peers, in one packed BATCH: the same ones
    run, the same forged ones are refused alone; the answers go back packed."""
    p = _Pair(n2_batches=True, packing=True)
    assert p.core.links["n2"].accepted_packed and p.n2.links["n1"].dial_packed
    msgs = _jobs(p)
    p.send([TAG + encode_batch(msgs, 2)[2]])
    out = p.take()
    _, got = _answers(out)
    assert got == {"j1": MsgType.RESULT, "j3": MsgType.RESULT, "j5": MsgType.RESULT}
    assert all(is_packed(f, 1) for f in out)
    ctr = p.core.counters
    assert (ctr["jobs_received"], ctr["signatures_refused"], ctr["malformed"]) == (3, 2, 0)
    assert ctr["packed_received"] >= 1 and p.n2.counters["malformed"] == 0


def test_a_bad_packed_batch_from_a_neighbour_is_dropped_whole_and_counted() -> None:
    p = _Pair(n2_batches=True, packing=True)
    good = _jobs(p)[0]
    for frames in ([TAG + b"\xc1"], [TAG + encode_batch([good, encode_batch([good])], 2)[2]]):
        p.send(frames)
    assert p.take() == []
    assert p.core.counters["malformed"] == 2 and p.core.counters["jobs_received"] == 0
    assert p.core.links["n2"].up
    p.send([TAG + encode_batch([good], 2)[2]])  # and it keeps serving
    _, got = _answers(p.take())
    assert got == {"j1": MsgType.RESULT}


def test_a_packed_batch_without_a_session_or_with_another_key_is_not_handled() -> None:
    p = _Pair(n2_batches=True, packing=True)
    frame = TAG + encode_batch(_jobs(p), 2)[2]
    other = incarnation_id("n2", 0x0123456789ABCDEF, 0)
    p.core.on_frontend(2, [other, frame], p.clock(), uid="key-n2")
    byes = [f for _, f in p.core.out if f[0] == other]
    assert len(byes) == 1 and decode(byes[0][1:]).header.type == MsgType.BYE
    p.core.on_frontend(2, [RID, frame], p.clock(), uid="key-someone-else")
    assert p.core.counters["peer_key_mismatch"] == 1
    assert p.core.counters["jobs_received"] == 0


def test_a_client_that_sends_packed_gets_packed_answers_and_others_get_frames() -> None:
    clock = FakeClock()
    core, w = broker_with_worker(clock)
    v1 = ClientCore("v1")
    ping = v1.ping(cls=2)[1]
    core.on_frontend(2, [b"\x00v1", *ping], clock())
    (pong,) = [f for _, f in flushed(core)]
    assert decode(pong[1:]).header.type == MsgType.PONG
    v1.on_message(pong[1:])
    assert v1.broker_batches and v1.broker_packed  # the PONG offers both
    for rid, c, packed in ((b"\x00v1", v1, False), (b"\x00p9", ClientCore("p9"), True)):
        jid, job = c.job("echo", {}, cls=2)
        frames = [TAG + encode_batch([job], 2)[2]] if packed else job
        core.on_frontend(2, [rid, *frames], clock())
        for _ in range(3):  # the job to the worker, its RESULT back to the client
            for idx, f in flushed(core):
                if idx == WORKERS:
                    assert is_packed(f, 1)  # the worker's READY said packed
                    for msg in messages_in(f, 1):
                        js = w.on_broker(msg, clock())
                        w.done(js.id, js.args, clock())
                    # As the worker's shell sends them (the broker sent it packed).
                    for m in pack_messages(w.out, packed=True):
                        core.on_worker([b"w1", *m], clock())
                    w.out.clear()
                else:
                    assert f[0] == rid and is_packed(f, 1) == packed
                    (answer,) = messages_in(f, 1)
                    assert decode(answer).header.id == jid
    # p9's job, the worker's two RESULTs.
    assert core.counters["packed_received"] == 3
