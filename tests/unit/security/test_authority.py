"""Authority's answers from the trust store, cached per trust snapshot."""

from __future__ import annotations

from pathlib import Path

import zmq

from operone_zmq.aio.authority import MAX_CACHED_GRANTS, Authority
from operone_zmq.security import TrustStore


def _authority(store: TrustStore) -> Authority:
    return Authority("n0", "c", zmq.curve_keypair()[0], store)


def test_grants_by_fingerprint_follow_a_change_of_role_or_tools(tmp_path: Path) -> None:
    """A routed JOB's client is judged by its key's fingerprint: the answer is
    cached, and a changed entry (role, allow-lists) or a rejected key is a new
    answer at once, not after a restart."""
    store = TrustStore(tmp_path)
    auth = _authority(store)
    pub = zmq.curve_keypair()[0]
    e = store.accept("alice", pub, node=False, role="submit", tools=("echo",))
    g = auth.grant_by_fingerprint(e.fingerprint)
    assert g is not None and g.role == "submit" and g.tool_refusal("echo") is None
    assert g.tool_refusal("fs.write") is not None
    assert auth.grant_by_fingerprint(e.fingerprint) is g  # cached
    store.accept("alice", pub, role="submit", tools=("fs.*",))
    g2 = auth.grant_by_fingerprint(e.fingerprint)
    assert g2 is not None and g2.tool_refusal("fs.write") is None
    assert g2.tool_refusal("echo") is not None
    assert auth.grant(pub.decode()) == g2  # the same answer by Curve key
    store.reject("alice")
    assert auth.grant_by_fingerprint(e.fingerprint) is None
    assert auth.grant_by_fingerprint("0" * 16) is None


def test_the_grant_cache_is_bounded(tmp_path: Path) -> None:
    """Unknown fingerprints (a stranger's claims) are answered, and the cache
    never holds more than MAX_CACHED_GRANTS of them."""
    auth = _authority(TrustStore(tmp_path))
    for i in range(MAX_CACHED_GRANTS + 50):
        assert auth.grant_by_fingerprint(f"{i:016x}") is None
    assert len(auth._fp_grants._by) == MAX_CACHED_GRANTS
