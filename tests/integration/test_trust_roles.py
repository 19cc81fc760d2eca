"""Issue 11, mounted against real brokers on 127.0.0.1 over CurveZMQ: what a
trusted key may do is what the trust store says (node, client role,
allow-lists), and LSAs are signed by their origin."""

from __future__ import annotations

import hashlib
import secrets
import time
from pathlib import Path

import msgpack
import pytest
import zmq
from helpers import LocalNode, MeshOfNodes, wait_for

from operone_zmq.aio.client import Client
from operone_zmq.aio.sockets import CurveKeys
from operone_zmq.config import node_signing_key
from operone_zmq.core.client import ClientCore
from operone_zmq.core.peers import incarnation_id
from operone_zmq.errors import JobTimeout, Refused
from operone_zmq.protocol.bodies import Hello, JobRequest, pack_lsas
from operone_zmq.protocol.codec import Header, MsgType, encode, sig_into_tag
from operone_zmq.protocol.signature import (
    MAC3_VERSION,
    MAC_VERSION,
    KeyRing,
    SigFrame,
    Signer,
    lsa_signed_bytes,
    message_mac3_parts,
    message_signed_bytes,
)
from operone_zmq.routing.lsa import LSA, MAX_SEQ, LinkInfo
from operone_zmq.security.keys import TrustStore, load_keypair

pytestmark = pytest.mark.integration


def _client_key(n: LocalNode, name: str, **kinds: object) -> CurveKeys:
    """A fresh Curve key pair trusted on ``node`` as ``name`` with ``kinds``."""
    pub, sec = zmq.curve_keypair()
    TrustStore(n.home.trust_dir).accept(name, pub, **kinds)  # type: ignore[arg-type]
    server = load_keypair(n.home.node_public).public
    return CurveKeys(pub, sec, server)


def test_a_client_key_cannot_join_the_mesh_as_a_broker(tmp_path: Path) -> None:
    """The issue's first hole: a key trusted as client 'alice' says HELLO as
    node 'alice' and is refused; a key trusted as node 'alice' links."""
    m = MeshOfNodes(tmp_path, ["b"])
    alice = LocalNode(tmp_path / "evil", "alice")
    try:
        m["b"].trust(alice, node=False, role="submit")  # a client, not a node
        alice.trust(m["b"])
        m.start([])
        alice.start_broker("--peer", m["b"].address)
        with m["b"].client() as c:
            wait_for(lambda: c.stats()["peers_refused"] >= 1, 15, "the refusal")
            assert "alice" not in c.stats()["peers"]
        with alice.client() as c:
            wait_for(lambda: "not as a node" in (c.peers()[0]["last_error"] or ""), 15,
                     "alice to learn why")
        # The same key may still submit as the client it is.
        keys = CurveKeys(load_keypair(alice.home.node_secret).public,
                         load_keypair(alice.home.node_secret).secret,  # type: ignore[arg-type]
                         load_keypair(m["b"].home.node_public).public)
        with Client("127.0.0.1", m["b"].base_port, keys=keys) as c:
            assert c.query("ping")["node"] == "b"
    finally:
        alice.stop()
        m.stop()


def test_roles_and_allow_lists_are_enforced(tmp_path: Path) -> None:
    """A submit key runs its own jobs and reads, but may not connect, allocate
    bandwidth, broadcast, cancel another client's job, or run a tool outside
    its allow-list; an operator key may; a node-only key is no client."""
    n = LocalNode(tmp_path, "n1")
    try:
        n.start_broker()
        n.start_worker()
        n.wait_workers(1)
        bob = _client_key(n, "bob", node=False, role="submit", tools=("echo", "sleep"))
        peer_only = _client_key(n, "peer", node=True, role=None)
        with n.client() as op, Client("127.0.0.1", n.base_port, keys=bob) as c:
            assert c.run("echo", {"x": 1}) == {"x": 1}
            assert c.query("stats")["workers"] == 1  # read-only queries are fine
            with pytest.raises(Refused, match="needs role 'operator'"):
                c.query("connect", {"node": "x", "host": "127.0.0.1", "port": 1})
            with pytest.raises(Refused, match="with allocate"):
                c.qos("nowhere", 1e-6)
            with pytest.raises(Refused, match="broadcast needs role 'operator'"):
                c.broadcast({"hi": 1})
            with pytest.raises(Refused, match="may not run tool 'sysinfo'"):
                c.run("sysinfo")
            # The operator's long job (its id is known): bob cannot cancel
            # it, the operator can; bob cancels his own.
            raw = _raw_client(n, n.keys())
            bob_raw = _raw_client(n, bob)
            try:
                _, frames = ClientCore("op").job("sleep", {"seconds": 30}, job_id="victim-1")
                raw.send_multipart(frames)
                _, frames = ClientCore("bob").job("sleep", {"seconds": 30}, job_id="bob-1")
                bob_raw.send_multipart(frames)
                wait_for(lambda: op.stats()["running"] >= 2, 10, "both jobs to start")
                assert c.cancel("victim-1") is False
                assert c.cancel("bob-1") is True  # his key's, from another connection
                assert op.cancel("victim-1") is True
            finally:
                raw.close(0)
                bob_raw.close(0)
            assert op.query("connect", {"node": "x", "host": "127.0.0.1",
                                        "port": 1})["status"] == "dialling"
        with Client("127.0.0.1", n.base_port, keys=peer_only) as c, \
                pytest.raises(Refused, match="not trusted as a client"):
            c.run("echo", {}, timeout=10)
    finally:
        n.stop()


def _raw_client(n: LocalNode, keys: CurveKeys) -> zmq.Socket[bytes]:
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.linger = 0
    s.curve_publickey, s.curve_secretkey = keys.public, keys.secret
    s.curve_serverkey = load_keypair(n.home.node_public).public
    s.connect(f"tcp://127.0.0.1:{n.base_port + 2}")
    return s


def _hello_as(node: LocalNode, me: str, keys: CurveKeys, signer: Signer) -> zmq.Socket[bytes]:
    """A DEALER that dialled ``node``'s critical frontend as node ``me``
    and said HELLO (signing key ``signer``)."""
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.curve_publickey, s.curve_secretkey, s.curve_serverkey = keys.public, keys.secret, keys.server
    s.setsockopt(zmq.ROUTING_ID, incarnation_id(me, secrets.randbits(64), 1))
    s.connect(f"tcp://127.0.0.1:{node.base_port}")
    h = Header(int(MsgType.HELLO), "h1", me, node.node_id, 8, int(time.time() * 1000), 0, None)
    s.send_multipart(encode(h, Hello(me, me, "operone", None, signer.public_hex).pack()))
    assert s.poll(10_000), "no WELCOME"
    frames = s.recv_multipart()
    assert msgpack.unpackb(frames[1])[0] == int(MsgType.WELCOME), frames
    return s


def _mallory_at_a(m: MeshOfNodes, worker_on: str) -> tuple[Signer, zmq.Socket[bytes]]:
    """Start ``m`` as a - b with a worker on ``worker_on``, with a key trusted
    on a as node 'mallory'; return mallory's signing key and a DEALER that
    said HELLO to a as mallory."""
    mallory_keys = zmq.curve_keypair()
    TrustStore(m["a"].home.trust_dir).accept("mallory", mallory_keys[0], node=True,
                                             role=None)
    m.start([("a", "b")])
    m[worker_on].start_worker()
    m.wait_converged()
    signer = Signer.generate()
    keys = CurveKeys(mallory_keys[0], mallory_keys[1],
                     load_keypair(m["a"].home.node_public).public)
    return signer, _hello_as(m["a"], "mallory", keys, signer)


def test_a_peer_cannot_forge_another_nodes_lsa(tmp_path: Path) -> None:
    """Mallory, trusted as node 'mallory', floods an LSA for 'b' with the
    highest sequence number and a link to itself, and 100 LSAs of made-up
    origins: a refuses them all (unsigned or signed by the wrong key), keeps
    routing to b, and b keeps advertising."""
    m = MeshOfNodes(tmp_path, ["a", "b"])
    try:
        signer, s = _mallory_at_a(m, worker_on="b")
        try:
            forged = LSA("b", MAX_SEQ, (LinkInfo("mallory", 0.0), LinkInfo("a", 0.0)),
                         tools=("echo",))
            signed_by_mallory = LSA("b", MAX_SEQ - 1, (LinkInfo("mallory", 0.0),),
                                    tools=("echo",))
            sig = signer.sign(lsa_signed_bytes(signed_by_mallory.to_wire()))
            fakes = [LSA(f"fake{i}", 1, (LinkInfo("mallory", 1.0),)).to_wire()
                     for i in range(100)]
            wire = [forged.to_wire(), {**signed_by_mallory.to_wire(), "sig": sig}, *fakes]
            h = Header(int(MsgType.LSA), "l1", "mallory", "a", 8, int(time.time() * 1000), 0,
                       None)
            s.send_multipart(encode(h, pack_lsas(wire)))
            with m["a"].client() as c:
                wait_for(lambda: c.stats()["lsas_unverified"] >= 102, 15,
                         "a to refuse the forged LSAs")
                known = {x["id"] for x in c.topology()["nodes"]}
                assert not any(k.startswith("fake") for k in known)
                assert c.route("b")["path"] == ["a", "b"]
                assert c.run("echo", {"ok": 1}, on="b", timeout=20) == {"ok": 1}
        finally:
            s.close(0)
        with m["b"].client() as c:
            assert c.stats()["lsa_origination_failed"] == 0
    finally:
        m.stop()


def test_existing_store_entries_migrate_to_node_and_operator(tmp_path: Path) -> None:
    """A trust file written before roles (no role metadata) is read as a node
    and an operator client, as documented in docs/security.md."""
    n = LocalNode(tmp_path, "n1")
    pub = zmq.curve_keypair()[0]
    path = n.home.trust_dir / "trusted" / "old.key"
    path.write_text('metadata\n    name = "old"\ncurve\n'
                    f'    public-key = "{pub.decode()}"\n')
    entry = TrustStore(n.home.trust_dir).named("old")
    assert entry is not None and entry.node and entry.role == "operator"
    assert entry.tools == () and entry.signing_key == ""


def test_routed_messages_are_verified_and_never_replayed(tmp_path: Path) -> None:
    """Mallory, a trusted neighbour of a, sends routed JOBs to a: one in b's
    name (unsigned, then signed with its own key), one whose body it altered
    after signing, one signed properly, then that one again and one an hour
    old.  Only the proper one is received; the others are counted refused."""
    m = MeshOfNodes(tmp_path, ["a", "b"])
    try:
        signer, s = _mallory_at_a(m, worker_on="a")

        def job(src: str, jid: str, ts_ms: int, body_args: dict[str, int],
                signed_args: dict[str, int] | None = None, sign: bool = True) -> list[bytes]:
            body = JobRequest("echo", body_args).pack()
            h = Header(int(MsgType.JOB), jid, src, "a", 8, ts_ms, 2, None)
            frames = encode(h, body)
            if sign:
                signed = JobRequest("echo", signed_args or body_args).pack()
                client = ("f" * 16, "submit")
                sig = signer.sign(message_signed_bytes(h.type, h.id, h.src, h.dst, h.ts,
                                                       h.cls, h.corr, client, signed))
                frames.append(SigFrame(sig, client).pack())
            return frames

        now = int(time.time() * 1000)
        try:
            with m["a"].client() as c:
                before = c.stats()["jobs_received"]
                s.send_multipart(job("b", "f1", now, {"x": 1}, sign=False))
                s.send_multipart(job("b", "f2", now, {"x": 1}))  # b's name, mallory's key
                s.send_multipart(job("mallory", "f3", now, {"x": 2}, {"x": 1}))  # altered
                wait_for(lambda: c.stats()["signatures_refused"] >= 3, 15, "the forgeries")
                good = job("mallory", "ok1", now, {"x": 3})
                s.send_multipart(good)
                wait_for(lambda: c.stats()["jobs_received"] >= before + 1, 15, "the good JOB")
                s.send_multipart(good)  # a replay
                s.send_multipart(job("mallory", "old1", now - 3_600_000, {"x": 4}))
                wait_for(lambda: c.stats()["replays_refused"] >= 2, 15, "the replays")
                time.sleep(0.3)
                st = c.stats()
                assert st["jobs_received"] == before + 1
                assert st["signatures_refused"] == 3
        finally:
            s.close(0)
    finally:
        m.stop()


@pytest.mark.parametrize(("in_tag", "version"), [(False, MAC_VERSION), (True, MAC_VERSION),
                                                 (False, MAC3_VERSION), (True, MAC3_VERSION)],
                         ids=["4 frames", "signature after the tag", "version 3",
                              "version 3 after the tag"])
def test_a_relay_cannot_make_or_alter_a_pairwise_mac(tmp_path: Path, in_tag: bool,
                                                     version: int) -> None:
    """Mallory, a trusted neighbour of a with its own signing key, sends a
    routed JOBs with pairwise MACs (revision 8): in b's name with the key
    mallory shares with a, in b's name as 'signer' mallory, and its own
    with the body altered after the MAC; and a BROADCAST with a MAC.  All
    four are refused; its own proper one runs once, its replay is refused.
    The same when each goes as three frames, its MAC after the tag
    (revision 9): a takes the form from any neighbour, and checks it alike;
    and with version-3 MACs (revision 10), where a big body swapped for its
    SHA-256 (what the MAC covers of it) is refused too."""
    m = MeshOfNodes(tmp_path, ["a", "b"])
    try:
        signer, s = _mallory_at_a(m, worker_on="a")
        ring = KeyRing({"a": node_signing_key(m["a"].home)}.get, signer)
        now = int(time.time() * 1000)
        client = ("f" * 16, "submit")

        def mac_msg(t: MsgType, src: str, jid: str, *, name: str | None = None,
                    alter: bool = False, big: bool = False) -> list[bytes]:
            body = JobRequest("echo", {"id": jid, "pad": "p" * (5000 if big else 0)}).pack()
            h = Header(int(t), jid, src, "" if t == MsgType.BROADCAST else "a", 8, now, 2,
                       None)
            fields = (h.type, h.id, h.src, h.dst, h.ts, h.cls, h.corr, client, body)
            mac = (ring.mac_for("a", *message_mac3_parts(*fields)) if version == MAC3_VERSION
                   else ring.mac_for("a", message_signed_bytes(*fields)))
            assert mac is not None
            if alter:
                body = JobRequest("echo", {"id": jid, "rm": "-rf"}).pack()
            if big:
                body = hashlib.sha256(body).digest()
            frames = [*encode(h, body), SigFrame(mac, client, name, version).pack()]
            return sig_into_tag(frames) if in_tag else frames

        try:
            with m["a"].client() as c:
                before = c.stats()
                s.send_multipart(mac_msg(MsgType.JOB, "b", "x1"))
                s.send_multipart(mac_msg(MsgType.JOB, "b", "x2", name="mallory"))
                s.send_multipart(mac_msg(MsgType.JOB, "mallory", "x3", alter=True))
                s.send_multipart(mac_msg(MsgType.BROADCAST, "mallory", "x4"))
                s.send_multipart(mac_msg(MsgType.JOB, "mallory", "x5", big=True))
                wait_for(lambda: c.stats()["signatures_refused"]
                         >= before["signatures_refused"] + 5, 15, "the forgeries")
                good = mac_msg(MsgType.JOB, "mallory", "ok1")
                s.send_multipart(good)
                wait_for(lambda: c.stats()["jobs_received"] >= before["jobs_received"] + 1,
                         15, "the proper JOB")
                s.send_multipart(good)
                wait_for(lambda: c.stats()["replays_refused"]
                         >= before["replays_refused"] + 1, 15, "the replay")
                time.sleep(0.3)
                st = c.stats()
                assert st["jobs_received"] == before["jobs_received"] + 1
                assert st["signatures_refused"] == before["signatures_refused"] + 5
                assert st["pairwise_macs"] == before["pairwise_macs"] + 1
                assert st["broadcasts_received"] == before["broadcasts_received"]
                # The proper one ran: its RESULT (MAC'd for mallory) came back.
                assert s.poll(10_000)
        finally:
            s.close(0)
    finally:
        m.stop()


def test_a_routing_id_cannot_be_taken_over(tmp_path: Path) -> None:
    """Outbound takeover: b dialled a; a connection with a trusted key that
    presents b's plain node id (what a used to send to) or a guessed
    incarnation receives none of the JOBs a sends to b, and its HELLO under
    a plain routing id is refused."""
    m = MeshOfNodes(tmp_path, ["a", "b"])
    try:
        m.start([("b", "a")])  # b dials a: a reaches b through b's routing id
        m["b"].start_worker()
        m.wait_converged()
        thief_keys = _client_key(m["a"], "thief", node=True, role="operator")
        socks = []
        for rid in (b"b", b"b#0000000000000000.1", b"b#" + b"f" * 16 + b".1"):
            s = zmq.Context.instance().socket(zmq.DEALER)
            s.linger = 0
            s.curve_publickey, s.curve_secretkey = thief_keys.public, thief_keys.secret
            s.curve_serverkey = thief_keys.server
            s.setsockopt(zmq.ROUTING_ID, rid)
            s.connect(f"tcp://127.0.0.1:{m['a'].base_port + 2}")
            socks.append(s)
        try:
            with m["a"].client() as c:
                for i in range(20):
                    assert c.run("echo", {"i": i}, on="b", timeout=20) == {"i": i}
            for s in socks:
                assert not s.poll(200), "a JOB for b reached the thief"
            h = Header(int(MsgType.HELLO), "h1", "thief", "a", 8, int(time.time() * 1000), 0,
                       None)
            plain = zmq.Context.instance().socket(zmq.DEALER)
            plain.linger = 0
            plain.curve_publickey, plain.curve_secretkey = thief_keys.public, thief_keys.secret
            plain.curve_serverkey = thief_keys.server
            plain.setsockopt(zmq.ROUTING_ID, b"thief")
            plain.connect(f"tcp://127.0.0.1:{m['a'].base_port}")
            socks.append(plain)
            plain.send_multipart(encode(h, Hello("thief", "thief", "operone", None,
                                                 Signer.generate().public_hex).pack()))
            assert plain.poll(10_000)
            bye = plain.recv_multipart()
            assert msgpack.unpackb(bye[1])[0] == int(MsgType.BYE)
            assert b"dial incarnation" in bye[2]
        finally:
            for s in socks:
                s.close(0)
    finally:
        m.stop()


def test_the_executing_node_enforces_its_own_limits_on_a_client(tmp_path: Path) -> None:
    """Carol's key is trusted without limits on a, and on b only for tool
    sysinfo: her echo on b, submitted at a, is refused by b itself (the
    signed JOB names her key); sysinfo on b runs."""
    m = MeshOfNodes(tmp_path, ["a", "b"])
    try:
        carol = _client_key(m["a"], "carol", node=False, role="submit")
        TrustStore(m["b"].home.trust_dir).accept("carol", carol.public, node=False,
                                                 role="submit", tools=("sysinfo",))
        m.start([("a", "b")])
        m["b"].start_worker()
        m.wait_converged()
        with Client("127.0.0.1", m["a"].base_port, keys=carol) as c:
            assert c.run("sysinfo", on="b", timeout=20)["pid"] > 0
            with pytest.raises(Refused, match="may not run tool 'echo'"):
                c.run("echo", {"x": 1}, on="b", timeout=20)
    finally:
        m.stop()


def test_a_changed_trust_store_reaches_the_checks_of_routed_jobs(tmp_path: Path) -> None:
    """a - b - c, carol a client of a: once c has run her echo (its answers
    to 'which key signs as a' and 'what may carol do' now kept per trust
    snapshot), c's operator narrows her to sysinfo, and her next echo on c
    is refused by c; then c's store binds another signing key to a, and c
    refuses a's MAC'd JOBs as forged (counted, never run)."""
    m = MeshOfNodes(tmp_path, ["a", "b", "c"])
    try:
        carol = _client_key(m["a"], "carol", node=False, role="submit")
        c_store = TrustStore(m["c"].home.trust_dir)
        c_store.accept("carol", carol.public, node=False, role="submit")
        m.start([("a", "b"), ("b", "c")])
        m["c"].start_worker()
        m.wait_converged()
        with Client("127.0.0.1", m["a"].base_port, keys=carol) as c, m["c"].client() as cc:
            assert c.run("echo", {"x": 1}, on="c", timeout=20) == {"x": 1}
            assert cc.stats()["pairwise_macs"] >= 1
            assert c_store.reject("carol")
            c_store.accept("carol", carol.public, node=False, role="submit",
                           tools=("sysinfo",))

            def echo_refused() -> bool:
                try:
                    c.run("echo", {"x": 2}, on="c", timeout=10)
                except Refused as exc:
                    return "may not run tool 'echo'" in str(exc)
                return False

            wait_for(echo_refused, 10, "c to apply carol's narrower grant")
            assert c.run("sysinfo", on="c", timeout=20)["pid"] > 0
            refused = cc.stats()["signatures_refused"]
            assert c_store.reject("a")
            m["c"].trust(m["a"], signing_key=Signer.generate().public_hex)

            def forged() -> bool:
                try:
                    c.run("sysinfo", on="c", timeout=0.5)
                except JobTimeout:
                    return bool(cc.stats()["signatures_refused"] > refused)
                return False

            wait_for(forged, 10, "c to take a's new signing key")
    finally:
        m.stop()


def test_only_messages_that_cross_a_relay_are_signed(tmp_path: Path) -> None:
    """a - b - c: a JOB from a to b and its RESULT go unsigned (b and a take
    them from the link authenticated as their origin); a JOB from a to c and
    its RESULT cross b and are signed and verified; nothing is refused."""
    m = MeshOfNodes(tmp_path, ["a", "b", "c"])
    try:
        m.start([("a", "b"), ("b", "c")])
        m["b"].start_worker()
        m["c"].start_worker()
        m.wait_converged()
        with m["a"].client() as ca, m["b"].client() as cb, m["c"].client() as cc:
            assert ca.run("echo", {"x": 1}, on="b", timeout=20) == {"x": 1}
            assert cb.stats()["unsigned_direct"] >= 1
            assert ca.stats()["unsigned_direct"] >= 1
            assert ca.run("echo", {"x": 2}, on="c", timeout=20) == {"x": 2}
            assert cc.stats()["unsigned_direct"] == 0
            # Revision 8: the JOB and its RESULT carried pairwise MACs.
            assert cc.stats()["pairwise_macs"] >= 1 and ca.stats()["pairwise_macs"] >= 1
            assert cb.stats()["pairwise_macs"] == 0
            for c in (ca, cb, cc):
                st = c.stats()
                assert st["signatures_refused"] == 0 and st["replays_refused"] == 0
    finally:
        m.stop()


def test_a_submit_key_reads_only_its_own_jobs_and_the_public_events(tmp_path: Path) -> None:
    """Two submit keys on one broker: neither lists, looks up or learns from
    the event log the other's jobs (ids, tools, arguments' results) or the
    operator's broadcasts; each sees its own; the operator sees everything."""
    n = LocalNode(tmp_path, "n1")
    try:
        n.start_broker()
        n.start_worker()
        n.wait_workers(1)
        alice = _client_key(n, "alice", node=False, role="submit")
        bob = _client_key(n, "bob", node=False, role="submit")
        with n.client() as op, Client("127.0.0.1", n.base_port, keys=alice) as a, \
                Client("127.0.0.1", n.base_port, keys=bob) as b:
            assert a.run("echo", {"secret": "alice's"}) == {"secret": "alice's"}
            running = a.submit("sleep", {"seconds": 30}, timeout=60)
            wait_for(lambda: op.stats()["running"] >= 1, 10, "alice's sleep to start")
            assert op.broadcast({"note": "for operators"}) >= 0
            mine = a.query("jobs")
            assert {j["tool"] for j in mine} == {"echo", "sleep"}
            ids = [j["id"] for j in mine]
            assert b.query("jobs") == []
            for jid in ids:
                assert b.query("job", {"id": jid}) == {"id": jid, "state": None}
                assert a.query("job", {"id": jid})["id"] == jid
            echo_id = next(j["id"] for j in mine if j["tool"] == "echo")
            assert a.query("job", {"id": echo_id})["result"] == {"secret": "alice's"}
            assert {j["id"] for j in op.query("jobs")} >= set(ids)
            msg = wait_for(lambda: next((e for e in op.query("events")["events"]
                                         if e["event"] == "message"), None), 10,
                           "the broadcast in the operator's event log")
            seen = b.query("events")
            assert seen["events"], "the public events (peers, topology) are readable"
            assert all(e["event"].split(":")[0] in ("peer", "topology", "partition", "qos")
                       for e in seen["events"]), seen
            assert seen["next"] >= msg["seq"]  # past what it may not see
            assert running.cancel() is True or running.cancelled()
    finally:
        n.stop()


def test_a_key_revoked_or_demoted_while_connected_loses_its_rights_at_once(tmp_path: Path) -> None:
    """What a client may do is read from the trust store for every message
    (through a cache per trust snapshot): a connection authenticated before
    the change does not keep the old rights."""
    n = LocalNode(tmp_path, "n1")
    try:
        n.start_broker()
        n.start_worker()
        n.wait_workers(1)
        carol = _client_key(n, "carol", node=False, role="operator")
        store = TrustStore(n.home.trust_dir)
        with Client("127.0.0.1", n.base_port, keys=carol) as c:
            assert c.run("echo", {"x": 1}) == {"x": 1}
            assert c.query("connect", {"node": "x", "host": "127.0.0.1",
                                       "port": 1})["status"] == "dialling"
            # Demoted to submit, on the same connection: operator queries go.
            assert store.reject("carol")
            store.accept("carol", carol.public, node=False, role="submit")

            def refused_connect() -> bool:
                try:
                    c.query("connect", {"node": "y", "host": "127.0.0.1", "port": 1})
                except Refused:
                    return True
                return False

            wait_for(refused_connect, 10, "the demotion to take effect")
            assert c.run("echo", {"x": 2}) == {"x": 2}  # still a submit key
            # Revoked: not even a job.
            assert store.reject("carol")

            def refused_job() -> bool:
                try:
                    c.run("echo", {}, timeout=5)
                except Refused:
                    return True
                return False

            wait_for(refused_job, 10, "the revocation to take effect")
    finally:
        n.stop()
