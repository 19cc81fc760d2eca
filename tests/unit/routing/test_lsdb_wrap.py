"""Issue 11: a sequence number at its maximum is the OSPF wrap, never a lockout;
and signatures of LSAs and routed messages (pure parts)."""

from __future__ import annotations

import pytest

from operone_zmq.errors import ProtocolError
from operone_zmq.protocol.signature import (
    KeyRing,
    SigFrame,
    Signer,
    lsa_signed_bytes,
    message_signed_bytes,
)
from operone_zmq.routing.lsa import LSA, MAX_MAX_AGE, MAX_SEQ, LinkInfo
from operone_zmq.routing.lsdb import LinkStateDB


def test_an_exhausted_sequence_space_waits_for_the_old_copies_then_restarts() -> None:
    db = LinkStateDB("a", MAX_SEQ)
    first = db.originate([LinkInfo("b", 1.0)], (), (), 0.0, 0, 0.0)
    assert first.seq == MAX_SEQ
    with pytest.raises(ProtocolError, match="exhausted"):
        db.originate([LinkInfo("b", 1.0)], (), (), 0.0, 0, 1.0)
    with pytest.raises(ProtocolError, match="restarts in"):
        db.originate([LinkInfo("b", 1.0)], (), (), 0.0, 0, 2.0)
    again = db.originate([LinkInfo("b", 1.0)], (), (), 0.0, 0, 1.0 + MAX_MAX_AGE)
    assert again.seq == 1
    assert db.originate([LinkInfo("b", 1.0)], (), (), 0.0, 0, 2.0 + MAX_MAX_AGE).seq == 2


def test_a_sealed_lsa_verifies_and_an_altered_one_does_not() -> None:
    s = Signer.generate()
    ring = KeyRing(lambda n: s.public_hex if n == "a" else None)
    lsa = LSA("a", 5, (LinkInfo("b", 1.5),), tools=("echo",))
    sig = s.sign(lsa_signed_bytes(lsa.to_wire()))
    back = LSA.from_wire({**lsa.to_wire(), "sig": sig})
    assert back.sig == sig and back == lsa
    assert ring.verify("a", back.sig, lsa_signed_bytes(back.to_wire()))
    other = LSA("a", 6, (LinkInfo("b", 1.5),), tools=("echo",))
    assert not ring.verify("a", sig, lsa_signed_bytes(other.to_wire()))
    assert not ring.verify("z", sig, lsa_signed_bytes(lsa.to_wire()))  # unknown signer
    with pytest.raises(ProtocolError, match="sig must be 64 bytes"):
        LSA.from_wire({**lsa.to_wire(), "sig": b"x"})


def test_signature_frames_are_strict() -> None:
    s = Signer.generate()
    data = message_signed_bytes(10, "j1", "a", "c", 1, 2, None, ("f" * 16, "submit"), b"body")
    frame = SigFrame(s.sign(data), ("f" * 16, "submit")).pack()
    assert len(frame) <= 256
    back = SigFrame.unpack(frame)
    assert back.client == ("f" * 16, "submit") and back.signer is None
    for bad in (b"\xc1", b"\x93\x01\x02\x03", SigFrame(b"x" * 63).pack()):
        with pytest.raises(ProtocolError):
            SigFrame.unpack(bad)
    # The body, any header field but ttl, and the client are covered.
    assert data != message_signed_bytes(10, "j1", "a", "c", 1, 2, None, ("f" * 16, "operator"),
                                        b"body")
    assert data != message_signed_bytes(10, "j1", "a", "c", 1, 2, None, ("f" * 16, "submit"),
                                        b"bodz")
