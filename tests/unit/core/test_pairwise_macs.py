"""Pairwise MACs on routed messages (revision 8): who can make them, who
checks them, and how an LSA says a broker takes them."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from coreparts import WALL, Parts

from operone_zmq.core.peers import PeerLink
from operone_zmq.errors import ProtocolError
from operone_zmq.protocol import TAG, Header, MsgType, decode_header, encode_header
from operone_zmq.protocol.bodies import JobRequest, pack_lsas
from operone_zmq.protocol.signature import (
    FEATURE_MAC,
    MAC_VERSION,
    KeyRing,
    SigFrame,
    Signer,
    lsa_ext_signed_bytes,
    lsa_signed_bytes,
    message_signed_bytes,
)
from operone_zmq.routing.lsa import LSA, LinkInfo

CLIENT = ("f" * 16, "submit")
DATA = b"OZ-MSG-1\x00what a message says"


def _ring(me: Signer, **others: Signer) -> KeyRing:
    keys = {n: s.public_hex for n, s in others.items()}
    return KeyRing(keys.get, me)


# ------------------------------------------------------------ the frame
def test_a_mac_frame_packs_and_unpacks_and_bad_ones_are_refused() -> None:
    sf = SigFrame(b"m" * 32, CLIENT, None, MAC_VERSION)
    assert SigFrame.unpack(sf.pack()) == sf
    assert SigFrame.unpack(SigFrame(b"s" * 64, CLIENT).pack()).version == 1
    for bad in (SigFrame(b"m" * 31, None, None, MAC_VERSION),
                SigFrame(None, CLIENT, None, MAC_VERSION),
                SigFrame(b"m" * 64, None, None, MAC_VERSION)):
        with pytest.raises(ProtocolError, match="a MAC must be 32 bytes"):
            SigFrame.unpack(bad.pack())
    with pytest.raises(ProtocolError, match=r"\[2, mac, client, signer\]"):
        SigFrame.unpack(SigFrame(b"m" * 32, None, None, 3).pack())


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
    p = Parts(signer=(me := Signer.generate()), signing_keys=keys.get)
    _with_lsa(p, "n2", (FEATURE_MAC,))
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

    p = Parts(signer=me, signing_keys=keys.get)
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
    assert ours is not None and ours.features == (FEATURE_MAC,)
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
