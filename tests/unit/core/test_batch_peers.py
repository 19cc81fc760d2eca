"""BATCH between brokers (revision 7): offered in HELLO/WELCOME, sent on
either transport only to a neighbour that offered it, and unpacked on
arrival into messages handled exactly as if each had come alone."""

from __future__ import annotations

import pytest

from operone_zmq.core.broker import FIRST_DIAL_SOCKET, WORKERS, BrokerCore
from operone_zmq.core.client import JobResult
from operone_zmq.core.peers import incarnation_id
from operone_zmq.core.worker import JobStart, WorkerCore
from operone_zmq.protocol import TAG, Header, MsgType, ToolInfo, decode, encode_header
from operone_zmq.protocol.batch import batch_header, decode_batch, encode_batch, is_batch
from operone_zmq.protocol.bodies import JobRequest
from operone_zmq.protocol.signature import SigFrame, Signer, message_signed_bytes
from operone_zmq.testing import CoreMesh, FakeClock

Sent = list[tuple[str, int, list[bytes]]]


def _record(m: CoreMesh) -> Sent:
    """What every broker of ``m`` puts on the wire, in ``(node, socket,
    frames)`` (heartbeats are sent apart, as the shell sends them)."""
    seen: Sent = []
    m.wire = seen
    return seen


def _peer_batches(seen: Sent) -> list[tuple[str, int, list[list[bytes]]]]:
    """The BATCHes sent to neighbours: (sender, socket, inner messages)."""
    out = []
    for node, sock, frames in seen:
        if sock >= FIRST_DIAL_SOCKET and is_batch(frames):
            out.append((node, sock, decode_batch(frames)))
        elif sock < WORKERS and frames[0][:1] != b"\x00" and is_batch(frames, 1):
            out.append((node, sock, decode_batch(frames, 1)))
    return out


def _chain(*, b_batches: bool = True) -> CoreMesh:
    """a - b - c (a dials b, b dials c), a worker on c; b offers BATCH or not."""
    m = CoreMesh(batched=True)
    for x in "abc":
        m.add(x)
    m.nodes["b"].batching = b_batches
    m.dial("a", "b")
    m.dial("b", "c")
    m.run()
    m.advance(2)
    m.add_worker("c", ["echo"], slots=1000)
    m.run()
    return m


def _submit_batch(m: CoreMesh, n: int) -> list[str]:
    """A client of a sends ``n`` jobs for c in one BATCH."""
    c = m.client("a")
    ids, frames = [], []
    for i in range(n):
        jid, f = c.job("echo", {"i": i}, on="c")
        ids.append(jid)
        frames.append(f)
    m.send_client("a", encode_batch(frames, 2))
    return ids


def test_neighbours_that_offer_batch_get_batches_both_ways_on_both_transports() -> None:
    m = _chain()
    a, b, c = (m.nodes[x] for x in "abc")
    # HELLO (dialled side) and WELCOME (accepted side) both said batch.
    assert a.links["b"].dial_batch and b.links["a"].accepted_batch
    assert b.links["c"].dial_batch and c.links["b"].accepted_batch
    seen = _record(m)
    ids = _submit_batch(m, 60)
    m.run()
    replies = m.replies("a")
    assert all(isinstance(replies[j], JobResult) and replies[j].value["args"] == {"i": i}
               for i, j in enumerate(ids))
    batches = _peer_batches(seen)
    # a -> b on a's DEALER, b -> c on b's DEALER, c -> b and b -> a on their ROUTERs.
    kinds = {(node, sock >= FIRST_DIAL_SOCKET) for node, sock, _ in batches}
    assert kinds == {("a", True), ("b", True), ("c", False), ("b", False)}
    inner = [decode(msg).header.type for _, _, msgs in batches for msg in msgs]
    # A BATCH's header names the class of the DEALER it goes on (each node
    # dialled once: DEALER FIRST_DIAL_SOCKET + class); the jobs are normal.
    for _, sock, frames in seen:
        if sock >= FIRST_DIAL_SOCKET and is_batch(frames):
            assert decode(frames).header.cls == sock - FIRST_DIAL_SOCKET == 2
    assert inner.count(MsgType.JOB) >= 120 and inner.count(MsgType.RESULT) >= 120
    for node in "abc":
        assert m.nodes[node].counters["malformed"] == 0
    assert b.counters["batches_received"] >= 2 and b.counters["batches_sent"] >= 2
    assert b.counters["relayed"] >= 120
    # Heartbeats are never batched: they leave apart, at once.
    m.advance(3)
    assert not any(t in (MsgType.PING, MsgType.PONG) for t in inner)
    assert not any(decode(msg).header.type in (MsgType.PING, MsgType.PONG)
                   for _, _, msgs in _peer_batches(seen) for msg in msgs)


def test_a_neighbour_that_did_not_offer_batch_gets_singles_and_sends_them() -> None:
    m = _chain(b_batches=False)
    a, b, c = (m.nodes[x] for x in "abc")
    assert not a.links["b"].dial_batch and not c.links["b"].accepted_batch
    assert b.links["a"].accepted_batch and b.links["c"].dial_batch  # a and c offer it
    seen = _record(m)
    ids = _submit_batch(m, 60)
    m.run()
    replies = m.replies("a")
    assert all(isinstance(replies[j], JobResult) for j in ids)
    assert _peer_batches(seen) == []
    assert b.counters["batches_sent"] == 0 and b.counters["relayed"] >= 120


def test_what_a_neighbour_said_is_forgotten_with_its_handshake() -> None:
    """b restarts as a broker that does not batch: a's new handshake with it
    (its WELCOME without ``batch``) ends a's BATCHes to it."""
    m = _chain()
    a = m.nodes["a"]
    assert a.links["b"].dial_batch
    m.restart("b").batching = False
    m.dial("b", "c")
    m.advance(12)  # a's HELLO back-off; the mesh converges again
    assert a.links["b"].up and not a.links["b"].dial_batch
    seen = _record(m)
    ids = _submit_batch(m, 30)
    m.run()
    replies = m.replies("a")
    assert all(isinstance(replies[j], JobResult) for j in ids)
    assert [x for x in _peer_batches(seen) if x[0] == "a"] == []


# ------------------------------------------- receiving: as if each came alone
WALL = 1_700_000_000.0
CLIENT = ("f" * 16, "submit")
RID = incarnation_id("n2", 0x0123456789ABCDEF, 1)


class _Pair:
    """Signing broker n1 and a signing neighbour n2 that dialled it, saying
    ``batch`` in its HELLO or not; a worker on n1.  What n1 sends to n2 is
    recorded (:meth:`take`), and messages "from n2" are made by the test."""

    def __init__(self, *, n2_batches: bool) -> None:
        self.clock = FakeClock()
        signers = {"n1": Signer.generate(), "n2": Signer.generate()}
        self.n2_signer = signers["n2"]
        keys = {n: s.public_hex for n, s in signers.items()}

        def core(node: str) -> BrokerCore:
            return BrokerCore(
                node, now=self.clock(), wall=lambda: WALL + self.clock(),
                authorize=lambda n, key, token: None if key == f"key-{n}" else "untrusted",
                signer=signers[node], signing_keys=keys.get)

        self.core, self.n2 = core("n1"), core("n2")
        self.n2.batching = n2_batches
        self.w = WorkerCore("n1.w1", [ToolInfo("echo")], slots=100, now=self.clock())
        self.w.start(self.clock())
        self._from_worker()
        self.n2.add_dialled_link("n1", DIAL, self.clock())
        #: What n1 sent n2 while the link came up.
        self.handshake: list[list[bytes]] = []
        for _ in range(20):  # handshake, LSAs, SPF
            self.clock.advance(0.05)
            for c in (self.core, self.n2):
                c.tick(self.clock())
            self.handshake += self.take()
        assert self.core.routes.next_hop("n2") == "n2"
        assert self.core.links["n2"].accepted_batch == n2_batches
        assert self.n2.links["n1"].dial_batch  # n1's WELCOME said batch

    def header(self, t: MsgType, mid: str, dst: str, src: str = "n2") -> bytes:
        ts = int((WALL + self.clock()) * 1000)
        return encode_header(Header(int(t), mid, src, dst, 8, ts, 2, None))

    def send(self, frames: list[bytes]) -> None:
        """``frames`` from n2's class-2 DEALER."""
        self.core.on_frontend(2, [RID, *frames], self.clock(), uid="key-n2")

    def take(self) -> list[list[bytes]]:
        """Flush both brokers as their shells do; run n1's worker; return
        what n1 sent to n2 (it is delivered too)."""
        to_n2: list[list[bytes]] = []
        moved = True
        while moved:
            moved = False
            for c in (self.core, self.n2):
                c.poll(self.clock())
            out = self.core.urgent + self.core.batched(self.core.out)
            self.core.out, self.core.urgent = [], []
            for sock, frames in out:
                moved = True
                if sock == WORKERS:
                    js = self.w.on_broker(frames[1:], self.clock())
                    if isinstance(js, JobStart):
                        self.w.done(js.id, js.args, self.clock())
                    self._from_worker()
                elif frames[0] == RID:
                    to_n2.append(frames)
                    self.n2.on_dealer(DIAL[sock], frames[1:], self.clock())
            out = self.n2.urgent + self.n2.batched(self.n2.out)
            self.n2.out, self.n2.urgent = [], []
            for sock, frames in out:
                moved = True
                if sock in DIAL:
                    self.core.on_frontend(DIAL.index(sock), [RID, *frames], self.clock(),
                                          uid="key-n2")
        return to_n2

    def _from_worker(self) -> None:
        while self.w.out:
            self.core.on_worker([b"w1", *self.w.out.pop(0)], self.clock())


DIAL = [FIRST_DIAL_SOCKET + i for i in range(4)]


def _jobs(p: _Pair) -> list[list[bytes]]:
    """Five JOBs for n1 as n2's link carries them: unsigned straight from n2
    (taken), unsigned claiming to come from n3 (forged: refused), signed by
    n2 (taken), signed in n2's name by another key (refused), unsigned from n2."""
    def job(mid: str, src: str = "n2", by: Signer | None = None) -> list[bytes]:
        h = p.header(MsgType.JOB, mid, "n1", src)
        body = JobRequest("echo", {"id": mid}).pack()
        if by is None:
            return [TAG, h, body, SigFrame(None, CLIENT).pack()]
        hd = decode([TAG, h, body]).header
        data = message_signed_bytes(hd.type, hd.id, hd.src, hd.dst, hd.ts, hd.cls, hd.corr,
                                    CLIENT, body)
        return [TAG, h, body, SigFrame(by.sign(data), CLIENT).pack()]

    return [job("j1"), job("j2", src="n3"), job("j3", by=p.n2_signer),
            job("j4", by=Signer.generate()), job("j5")]


def _answers(frames: list[list[bytes]]) -> tuple[int, dict[str, int]]:
    """(BATCHes among ``frames``, answer type per job id)."""
    batches, got = 0, {}
    for f in frames:
        msgs = decode_batch(f, 1) if is_batch(f, 1) else [f[1:]]
        batches += is_batch(f, 1)
        for m in msgs:
            h = decode(m).header
            if h.type in (MsgType.RESULT, MsgType.ERROR):
                got[h.id] = h.type
    return batches, got


@pytest.mark.parametrize("n2_batches", [True, False])
def test_a_neighbours_batch_is_handled_message_by_message(n2_batches: bool) -> None:
    """The same five JOBs alone and in one BATCH: the same ones run, the same
    forged ones are refused alone (signatures_refused), the others answered;
    the answers go back batched only when n2's HELLO said batch (n2 itself
    unpacks n1's BATCHes on its DEALER: no malformed there)."""
    counts = {}
    for batched in (False, True):
        p = _Pair(n2_batches=n2_batches)
        msgs = _jobs(p)
        if batched:
            p.send(encode_batch(msgs, 2))
        else:
            for m in msgs:
                p.send(m)
        batches, got = _answers(p.take())
        assert got == {"j1": MsgType.RESULT, "j3": MsgType.RESULT, "j5": MsgType.RESULT}
        assert batches == (1 if n2_batches else 0)  # three RESULTs in one flush
        ctr = p.core.counters
        counts[batched] = (ctr["jobs_received"], ctr["signatures_refused"],
                           ctr["unsigned_direct"], ctr["malformed"])
        assert ctr["batches_received"] == int(batched)
        assert p.core.links["n2"].received >= len(msgs)
        assert p.n2.counters["malformed"] == 0
        # (When n2 said batch, n1's WELCOME already came in a BATCH with its LSAs.)
        assert bool(p.n2.counters["batches_received"]) == n2_batches
    assert counts[True] == counts[False] == (3, 2, 2, 0)


def test_the_welcome_may_come_in_a_batch_and_brings_the_link_up() -> None:
    """n1 answers n2's HELLO (batch: true) with its WELCOME and its database
    in one flush: one BATCH, which n2 unpacks before its dialled transport is
    up; the WELCOME in it brings the transport up and the LSAs after it count."""
    p = _Pair(n2_batches=True)
    first = p.handshake[0]
    assert is_batch(first, 1)
    types = [decode(m).header.type for m in decode_batch(first, 1)]
    assert types[0] == MsgType.WELCOME and MsgType.LSA in types
    assert p.n2.links["n1"].up and p.n2.counters["lsas_received"] > 0
    q = _Pair(n2_batches=False)
    assert not any(is_batch(f, 1) for f in q.handshake)


def test_a_bad_batch_from_a_neighbour_is_dropped_whole_and_counted() -> None:
    p = _Pair(n2_batches=True)
    good = _jobs(p)[0]
    nested = encode_batch([good, good], 2)
    for frames in ([TAG, batch_header(2), b"\xc1"],
                   encode_batch([good, nested], 2),
                   [*encode_batch([good], 2), b"extra frame"]):
        p.send(frames)
    assert p.take() == []
    assert p.core.counters["malformed"] == 3 and p.core.counters["jobs_received"] == 0
    assert p.core.links["n2"].up
    # A bad message inside a good BATCH is dropped alone (a malformed peer message).
    p.send(encode_batch([[TAG, b"\xc1", b""], good], 2))
    _, got = _answers(p.take())
    assert got == {"j1": MsgType.RESULT} and p.core.counters["malformed"] == 4


def test_a_batch_from_a_routing_id_without_a_session_is_answered_once() -> None:
    """As any message but HELLO from a routing id with no session: one BYE
    no_session for the BATCH, none of its messages handled."""
    p = _Pair(n2_batches=True)
    other = incarnation_id("n2", 0x0123456789ABCDEF, 0)
    p.core.on_frontend(2, [other, *encode_batch(_jobs(p), 2)], p.clock(), uid="key-n2")
    byes = [f for _, f in p.core.out if f[0] == other]
    assert len(byes) == 1 and decode(byes[0][1:]).header.type == MsgType.BYE
    assert p.core.counters["jobs_received"] == 0
