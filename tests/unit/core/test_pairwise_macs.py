"""Pairwise MACs on routed messages (revision 8; version 3 over small bodies
themselves, revision 10): who can make them, who checks them, and how an LSA
says a broker takes them."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import msgpack
import pytest
from coreparts import WALL, Parts

from operone_zmq.core.broker import FIRST_DIAL_SOCKET
from operone_zmq.core.client import JobResult
from operone_zmq.core.peers import PeerLink
from operone_zmq.errors import ProtocolError
from operone_zmq.protocol import TAG, Header, MsgType, decode_header, encode_header
from operone_zmq.protocol.batch import is_batch
from operone_zmq.protocol.bodies import JobRequest, pack_lsas
from operone_zmq.protocol.codec import sig_from_tag
from operone_zmq.protocol.signature import (
    FEATURE_MAC,
    FEATURE_MAC3,
    MAC3_INLINE_MAX,
    MAC3_VERSION,
    MAC_VERSION,
    KeyRing,
    SigFrame,
    Signer,
    lsa_ext_signed_bytes,
    lsa_signed_bytes,
    message_mac3_parts,
    message_signed_bytes,
)
from operone_zmq.routing.lsa import LSA, LinkInfo
from operone_zmq.testing import CoreMesh

CLIENT = ("f" * 16, "submit")
DATA = b"OZ-MSG-1\x00what a message says"


def _ring(me: Signer, **others: Signer) -> KeyRing:
    keys = {n: s.public_hex for n, s in others.items()}
    return KeyRing(keys.get, me)


# ------------------------------------------------------------ the frame
@pytest.mark.parametrize("version", [MAC_VERSION, MAC3_VERSION])
def test_a_mac_frame_packs_and_unpacks_and_bad_ones_are_refused(version: int) -> None:
    sf = SigFrame(b"m" * 32, CLIENT, "n7", version)
    assert SigFrame.unpack(sf.pack()) == sf
    assert SigFrame.unpack(SigFrame(b"s" * 64, CLIENT).pack()).version == 1
    for bad in (SigFrame(b"m" * 31, None, None, version),
                SigFrame(None, CLIENT, None, version),
                SigFrame(b"m" * 64, None, None, version)):
        with pytest.raises(ProtocolError, match="a MAC must be 32 bytes"):
            SigFrame.unpack(bad.pack())
    with pytest.raises(ProtocolError, match=r"\[3, mac, client, signer\]"):
        SigFrame.unpack(SigFrame(b"m" * 32, None, None, 4).pack())


# ---------------------------------------------- what a version 3 covers
def test_a_version_3_mac_covers_a_small_body_itself_and_a_big_one_by_its_digest() -> None:
    fields = (int(MsgType.JOB), "j1", "n2", "n1", 1_700_000_000_000, 2, None, CLIENT)
    head, tail = message_mac3_parts(*fields, b"abc")
    # "OZ-MSG-3\0" + [type, id, src, dst, ts, cls, corr, client, size], then the body.
    assert head == b"OZ-MSG-3\x00" + msgpack.packb([*fields[:7], list(CLIENT), 3])
    assert tail == b"abc"
    edge = b"e" * MAC3_INLINE_MAX
    assert message_mac3_parts(*fields, memoryview(edge))[1] == edge
    big = b"b" * (MAC3_INLINE_MAX + 1)
    head_big, tail_big = message_mac3_parts(*fields, big)
    assert tail_big == hashlib.sha256(big).digest()
    assert head_big.endswith(msgpack.packb(MAC3_INLINE_MAX + 1))
    # A relay that swaps a big body for the 32 bytes of its digest changes
    # what the MAC covers (the size comes first): the MAC no longer fits.
    a, b = Signer.generate(), Signer.generate()
    ra, rb = _ring(a, b=b), _ring(b, a=a)
    mac = ra.mac_for("b", head_big, tail_big)
    assert mac is not None and rb.mac_ok("a", mac, head_big, tail_big)
    assert not rb.mac_ok("a", mac, *message_mac3_parts(*fields, tail_big))
    # Nor is it the version-2 MAC of anything a signature covers.
    assert mac != ra.mac_for("b", message_signed_bytes(*fields, big))


# ------------------------------------------------------------- the keys
def test_only_the_two_ends_share_a_key_and_each_direction_has_its_own() -> None:
    a, b, c = Signer.generate(), Signer.generate(), Signer.generate()
    ra, rb, rc = _ring(a, b=b, c=c), _ring(b, a=a, c=c), _ring(c, a=a, b=b)
    mac = ra.mac_for("b", DATA)
    assert mac is not None and len(mac) == 32
    assert rb.mac_ok("a", mac, DATA)
    assert not rb.mac_ok("a", mac, DATA + b"x")  # altered
    assert not rb.mac_ok("c", mac, DATA)  # c's key with b is another one
    assert not ra.mac_ok("b", mac, DATA)  # reflected back to its sender
    assert rc.mac_for("b", DATA) != mac  # c cannot make a's MAC for b
    assert not rb.mac_ok("nobody", mac, DATA)
    assert KeyRing({"b": b.public_hex}.get).mac_for("b", DATA) is None  # no signer
    # What docs/protocol.md says it is: keyed BLAKE2b-256 of the signed bytes,
    # each message hashed on its own (the ring copies one keyed state per message).
    out = a.pair_keys(b.public)[0]
    for data in (DATA, b"", DATA * 100):
        assert ra.mac_for("b", data) == hashlib.blake2b(data, key=out, digest_size=32).digest()
        # In two parts (version 3): the MAC of their concatenation.
        assert ra.mac_for("b", DATA, data) == ra.mac_for("b", DATA + data)
        assert rb.mac_ok("a", ra.mac_for("b", DATA, memoryview(data)) or b"", DATA + data)


def test_a_changed_or_unusable_key_is_never_used_from_the_cache() -> None:
    a, b, b2 = Signer.generate(), Signer.generate(), Signer.generate()
    keys = {"b": b.public_hex}
    ra = KeyRing(keys.get, a)
    old = ra.mac_for("b", DATA)
    keys["b"] = b2.public_hex  # the store now trusts b's new key
    assert old is not None and _ring(b2, a=a).mac_ok("a", ra.mac_for("b", DATA) or b"", DATA)
    assert not _ring(b2, a=a).mac_ok("a", old, DATA)
    keys["b"] = "00" * 32  # a small-order point: no key, no exception
    assert ra.mac_for("b", DATA) is None
    keys["b"] = "not hex"
    assert ra.mac_for("b", DATA) is None and not ra.mac_ok("b", b"x" * 32, DATA)


# ------------------------------------------------- the relay: sending
def _with_lsa(p: Parts, origin: str, features: tuple[str, ...] = (),
              kind: str = "broker", links: tuple[str, ...] = ("n9",)) -> None:
    lsa = LSA(origin, 1, tuple(LinkInfo(x, 1.0) for x in links), kind=kind, features=features)
    assert p.linkstate.lsdb.install(lsa, p.clock())


def _mine(dst: str, t: MsgType = MsgType.JOB, src: str = "n1") -> list[bytes]:
    h = Header(int(t), "j1", src, dst, 8, int((WALL + 1000.0) * 1000), 2, None)
    return [TAG, encode_header(h), JobRequest("echo", {}).pack()]


def test_a_message_for_a_broker_that_takes_macs_carries_one() -> None:
    n2, n3 = Signer.generate(), Signer.generate()
    keys = {"n2": n2.public_hex, "n3": n3.public_hex}
    p = Parts(signer=(me := Signer.generate()), signing_keys=keys.get, mac3=False)
    _with_lsa(p, "n2", (FEATURE_MAC, FEATURE_MAC3))  # it takes version 3; we (rev. 9) not
    _with_lsa(p, "n3")  # an older broker: no features
    _with_lsa(p, "host", kind="ssh", links=("n2",))  # served by n2
    sf = SigFrame.unpack(p.relay.sign(_mine("n2"), CLIENT)[3])
    assert sf.version == MAC_VERSION and sf.client == CLIENT and sf.signer is None
    frames = _mine("n2")
    assert _ring(n2, n1=me).mac_ok("n1", sf.sig or b"", _signed_bytes(frames, CLIENT))
    assert SigFrame.unpack(p.relay.sign(_mine("n3"))[3]).version == 1
    assert SigFrame.unpack(p.relay.sign(_mine("host"))[3]).version == MAC_VERSION
    bc = _mine("", MsgType.BROADCAST)
    assert SigFrame.unpack(p.relay.sign(bc)[3]).version == 1  # every node checks those
    # A core that uses no MACs (as revision 7) neither advertises nor sends them.
    q = Parts(signer=Signer.generate(), signing_keys=keys.get, pairwise_macs=False)
    _with_lsa(q, "n2", (FEATURE_MAC,))
    assert SigFrame.unpack(q.relay.sign(_mine("n2"))[3]).version == 1


def test_a_broker_that_takes_version_3_gets_it_and_one_that_does_not_gets_version_2() -> None:
    n2, n3 = Signer.generate(), Signer.generate()
    keys = {"n2": n2.public_hex, "n3": n3.public_hex}
    me = Signer.generate()
    p = Parts(signer=me, signing_keys=keys.get)
    _with_lsa(p, "n2", (FEATURE_MAC, FEATURE_MAC3))
    _with_lsa(p, "n3", (FEATURE_MAC,))  # revision 8 or 9
    _with_lsa(p, "host", kind="ssh", links=("n2",))
    _with_lsa(p, "old", (FEATURE_MAC3,))  # "mac3" alone says nothing: signed
    keys["old"] = Signer.generate().public_hex
    for dst, size in (("n2", 40), ("host", 40), ("n2", MAC3_INLINE_MAX + 500)):
        frames = _mine(dst)
        frames[2] = JobRequest("echo", {"pad": "x" * size}).pack()
        sf = SigFrame.unpack(p.relay.sign(frames, CLIENT)[3])
        assert sf.version == MAC3_VERSION and sf.client == CLIENT
        h = decode_header(frames[1])
        parts = message_mac3_parts(h.type, h.id, h.src, h.dst, h.ts, h.cls, h.corr, CLIENT,
                                   frames[2])
        assert _ring(n2, n1=me).mac_ok("n1", sf.sig or b"", *parts)
    sf = SigFrame.unpack(p.relay.sign(_mine("n3"), CLIENT)[3])
    assert sf.version == MAC_VERSION
    assert _ring(n3, n1=me).mac_ok("n1", sf.sig or b"", _signed_bytes(_mine("n3"), CLIENT))
    assert SigFrame.unpack(p.relay.sign(_mine("old"))[3]).version == 1
    assert SigFrame.unpack(p.relay.sign(_mine("", MsgType.BROADCAST))[3]).version == 1


def _signed_bytes(frames: list[bytes], client: tuple[str, str] | None) -> bytes:
    h = decode_header(frames[1])
    return message_signed_bytes(h.type, h.id, h.src, h.dst, h.ts, h.cls, h.corr, client,
                                frames[2])


# ----------------------------------------------- the relay: receiving
def test_only_a_mac_from_the_claimed_origin_for_us_is_taken() -> None:
    """n1 takes n2's MAC from any link, once; a MAC in n2's name made with
    n3's own key, an altered body, a MAC on a broadcast and any MAC at a
    core that uses none are refused."""
    n2, n3 = Signer.generate(), Signer.generate()
    keys = {"n2": n2.public_hex, "n3": n3.public_hex}
    me = Signer.generate()
    keys_me = {"n1": me.public_hex}

    def mac_frames(by: Signer, src: str = "n2", t: MsgType = MsgType.JOB,
                   body: bytes | None = None) -> tuple[Header, list[bytes]]:
        frames = _mine("n1" if t != MsgType.BROADCAST else "", t, src=src)
        data = _signed_bytes(frames, CLIENT)
        mac = KeyRing(keys_me.get, by).mac_for("n1", data)
        assert mac is not None
        if body is not None:
            frames[2] = body
        return decode_header(frames[1]), [*frames, SigFrame(mac, CLIENT, None,
                                                            MAC_VERSION).pack()]

    p = Parts(signer=me, signing_keys=keys.get, mac3=False)
    h, good = mac_frames(n2)
    assert p.relay.verified(h, good, "n3") == CLIENT
    assert p.ctx.counters["pairwise_macs"] == 1
    assert p.relay.verified(h, good, "n3") is False  # a replay
    assert p.ctx.counters["replays_refused"] == 1
    for forged in (mac_frames(n3)[1],  # n3's key in n2's name
                   mac_frames(n2, body=JobRequest("echo", {"x": 1}).pack())[1]):
        assert p.relay.verified(decode_header(forged[1]), forged, "n3") is False
    hb, bc = mac_frames(n2, t=MsgType.BROADCAST)
    assert p.relay.verified(hb, bc) is False
    assert p.ctx.counters["signatures_refused"] == 3
    q = Parts(signer=me, signing_keys=keys.get, pairwise_macs=False)
    assert q.relay.verified(h, good, "n3") is False
    assert q.ctx.counters["signatures_refused"] == 1
    # A version-2 MAC is still taken by a broker that takes version 3.
    r = Parts(signer=me, signing_keys=keys.get)
    assert r.relay.verified(h, good, "n3") == CLIENT


def test_only_a_version_3_mac_from_the_claimed_origin_over_what_came_is_taken() -> None:
    """As for version 2, and: a version-2 MAC relabelled 3 (or the other
    way round), a big body swapped for its digest, and any version-3 MAC at
    a broker that does not take them (revision 9) are refused."""
    n2, n3 = Signer.generate(), Signer.generate()
    keys = {"n2": n2.public_hex, "n3": n3.public_hex}
    me = Signer.generate()
    keys_me = {"n1": me.public_hex}
    big = JobRequest("echo", {"pad": "x" * 3000}).pack()

    def mac3_frames(by: Signer, src: str = "n2", t: MsgType = MsgType.JOB,
                    body: bytes | None = None, sent: bytes | None = None,
                    version: int = MAC3_VERSION, jid: str = "j1") -> tuple[Header, list[bytes]]:
        frames = _mine("n1" if t != MsgType.BROADCAST else "", t, src=src)
        h0 = decode_header(frames[1])
        frames[1] = encode_header(Header(h0.type, jid, h0.src, h0.dst, h0.ttl, h0.ts, h0.cls,
                                         h0.corr))
        if body is not None:
            frames[2] = body
        h = decode_header(frames[1])
        parts = message_mac3_parts(h.type, h.id, h.src, h.dst, h.ts, h.cls, h.corr, CLIENT,
                                   frames[2])
        mac = KeyRing(keys_me.get, by).mac_for("n1", *parts)
        assert mac is not None
        if sent is not None:
            frames[2] = sent
        return h, [*frames, SigFrame(mac, CLIENT, None, version).pack()]

    p = Parts(signer=me, signing_keys=keys.get)
    for jid, body in (("small", None), ("big", big)):
        h, good = mac3_frames(n2, body=body, jid=jid)
        assert p.relay.verified(h, good, "n3") == CLIENT
        assert p.relay.verified(h, good, "n3") is False  # a replay
    assert p.ctx.counters["pairwise_macs"] == 2 and p.ctx.counters["replays_refused"] == 2
    _, v2 = mac3_frames(n2, version=MAC_VERSION)  # a version-3 MAC labelled 2
    forgeries = [
        mac3_frames(n3)[1],  # n3's key in n2's name
        mac3_frames(n2, sent=JobRequest("echo", {"x": 1}).pack())[1],  # altered
        mac3_frames(n2, body=big, sent=hashlib.sha256(big).digest())[1],  # its digest
        mac3_frames(n2, body=big, sent=big[:-1] + b"y")[1],  # one byte of a big one
        v2,
    ]
    for forged in forgeries:
        assert p.relay.verified(decode_header(forged[1]), forged, "n3") is False
    hb, bc = mac3_frames(n2, t=MsgType.BROADCAST)
    assert p.relay.verified(hb, bc) is False
    assert p.ctx.counters["signatures_refused"] == len(forgeries) + 1
    assert p.ctx.counters["pairwise_macs"] == 2
    old = Parts(signer=me, signing_keys=keys.get, mac3=False)
    h, good = mac3_frames(n2)
    assert old.relay.verified(h, good, "n3") is False
    assert old.ctx.counters["signatures_refused"] == 1


# --------------------------------------------------- the LSA's features
def _sealed(by: Signer, features: tuple[str, ...] = (FEATURE_MAC,), seq: int = 5) -> LSA:
    lsa = LSA("n2", seq, (LinkInfo("n1", 1.0),), features=features)
    wire = lsa.to_wire()
    return replace(lsa, sig=by.sign(lsa_signed_bytes(wire)),
                   xsig=by.sign(lsa_ext_signed_bytes(wire)))


def _flood(p: Parts, *lsas: LSA | dict[str, object]) -> None:
    wire = [x.to_wire() if isinstance(x, LSA) else x for x in lsas]
    p.linkstate.on_lsa(PeerLink("n3"), pack_lsas(wire), p.clock())


def test_features_count_only_under_the_origins_xsig() -> None:
    """n2's features come with n2's xsig: kept.  A relay that adds the
    feature to n2's plain LSA, or alters a signed one, cannot make n1 send
    MACs: the LSA is taken without them (a downgrade to signatures at most);
    one with neither signature valid is refused."""
    n2 = Signer.generate()
    keys = {"n2": n2.public_hex}
    p = Parts(signer=Signer.generate(), signing_keys=keys.get)
    _flood(p, _sealed(n2, seq=5))
    assert p.linkstate.lsdb.get("n2").features == (FEATURE_MAC,)  # type: ignore[union-attr]
    plain = _sealed(n2, features=(), seq=6)
    assert plain.to_wire().keys().isdisjoint({"features", "xsig"})
    _flood(p, {**plain.to_wire(), "features": [FEATURE_MAC]})  # added on the way
    got = p.linkstate.lsdb.get("n2")
    assert got is not None and got.seq == 6 and got.features == ()
    bad_x = {**_sealed(n2, seq=7).to_wire(), "xsig": Signer.generate().sign(b"x")}
    _flood(p, bad_x)
    got = p.linkstate.lsdb.get("n2")
    assert got is not None and got.seq == 7 and got.features == ()
    both_bad = {**bad_x, "seq": 8}  # neither signature covers seq 8
    _flood(p, both_bad)
    assert p.linkstate.lsdb.get("n2").seq == 7  # type: ignore[union-attr]
    assert p.ctx.counters["lsas_unverified"] == 1


def test_our_own_lsa_says_mac_under_an_xsig_older_brokers_ignore() -> None:
    me = Signer.generate()
    p = Parts(signer=me, signing_keys={}.get)
    p.linkstate.mark_dirty()
    p.clock.advance(1.0)
    p.core.tick(p.clock())
    ours = p.linkstate.lsdb.get("n1")
    assert ours is not None and ours.features == (FEATURE_MAC, FEATURE_MAC3)
    wire = ours.to_wire()
    ring = KeyRing({"n1": me.public_hex}.get)
    assert ring.verify("n1", wire["sig"], lsa_signed_bytes(wire))  # what revision 7 checks
    assert ring.verify("n1", wire["xsig"], lsa_ext_signed_bytes(wire))
    q = Parts(signer=Signer.generate(), signing_keys={}.get, pairwise_macs=False)
    q.linkstate.mark_dirty()
    q.clock.advance(1.0)
    q.core.tick(q.clock())
    theirs = q.linkstate.lsdb.get("n1")
    assert theirs is not None and theirs.features == () and "xsig" not in theirs.to_wire()
    r = Parts(signer=Signer.generate(), signing_keys={}.get, mac3=False)  # as revision 9
    r.linkstate.mark_dirty()
    r.clock.advance(1.0)
    r.core.tick(r.clock())
    assert r.linkstate.lsdb.get("n1").features == (FEATURE_MAC,)  # type: ignore[union-attr]


# ------------------------------------------- a mesh of two revisions
def _signed_routed(m: CoreMesh) -> list[tuple[str, int]]:
    """(sender, frame version) of every JOB and RESULT sent to a neighbour
    with a signature frame."""
    out = []
    for node, sock, frames in m.wire or ():
        ours = frames if sock >= FIRST_DIAL_SOCKET else frames[1:]
        if is_batch(ours) or len(ours) < 3 or ours[0][:3] != TAG:
            continue
        if len(ours[0]) > 3:
            ours = sig_from_tag(ours)
        if len(ours) == 4 and decode_header(ours[1]).type in (MsgType.JOB, MsgType.RESULT):
            out.append((node, SigFrame.unpack(ours[3]).version))
    return out


@pytest.mark.parametrize("c_takes_mac3", [True, False], ids=["revision 10", "revision 9"])
def test_a_revision_9_end_gets_and_sends_version_2_and_every_job_runs(
        c_takes_mac3: bool) -> None:
    """a - b - c, b a relay of revision 9 in both cases: a's JOBs for c and
    c's RESULTs carry version-3 MACs when c takes them, version-2 MACs when
    c is of revision 9; either way every job is answered and nothing is
    refused (the relay's revision does not matter: it checks nothing)."""
    m = CoreMesh(batched=True, signed=True)
    m.add("a")
    m.add("b", mac3=False)
    m.add("c", mac3=c_takes_mac3)
    m.dial("a", "b")
    m.dial("b", "c")
    m.run()
    m.advance(2)
    m.add_worker("c", ["echo"], slots=10)
    m.run()
    m.wire = []
    client = m.client("a")
    for i in range(3):
        jid, frames = client.job("echo", {"i": i}, on="c")
        m.send_client("a", frames)
        m.run()
        reply = m.replies("a")[jid]
        assert isinstance(reply, JobResult) and reply.value["args"] == {"i": i}
    want = MAC3_VERSION if c_takes_mac3 else MAC_VERSION
    sent = _signed_routed(m)
    assert {node for node, _ in sent} == {"a", "b", "c"}
    assert {v for _, v in sent} == {want}
    a, c = m.nodes["a"], m.nodes["c"]
    assert a.counters["pairwise_macs"] == 3 and c.counters["pairwise_macs"] == 3
    for node in m.nodes.values():
        assert node.counters["signatures_refused"] == 0 and node.counters["malformed"] == 0


# ------------------------------------------- the example in the spec
DOC = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"


def mac3_example() -> str:
    """The block between docs/protocol.md's ``mac3-example`` markers, from
    the real code (``python tests/unit/core/test_pairwise_macs.py`` prints it)."""
    s, v = Signer(bytes([1]) * 32), Signer(bytes([2]) * 32)
    body = JobRequest("echo", {"x": 1}).pack()
    head, tail = message_mac3_parts(int(MsgType.JOB), "j1", "a", "c", 1_700_000_000_000, 2,
                                    None, ("0123456789abcdef", "submit"), body)
    mac = KeyRing({"c": v.public_hex}.get, s).mac_for("c", head, tail)
    assert mac is not None and _ring(v, a=s).mac_ok("a", mac, head + bytes(tail))
    rows = [("S", s.public.hex()), ("V", v.public.hex()), ("key", s.pair_keys(v.public)[0].hex()),
            ("body", body.hex())]
    hx = head.hex()
    rows += [("head", hx[:64])] + [("", hx[i:i + 64]) for i in range(64, len(hx), 64)]
    rows.append(("mac", mac.hex()))
    return "\n".join(f"{k:<6}{val}" for k, val in rows)


def test_the_specs_version_3_example_is_what_the_code_computes() -> None:
    text = DOC.read_text(encoding="utf-8")
    block = text.split("<!-- mac3-example -->\n```\n", 1)[1]
    block = block.split("\n```\n<!-- /mac3-example", 1)[0]
    assert block == mac3_example()


if __name__ == "__main__":
    print(mac3_example())
