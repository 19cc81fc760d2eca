"""Tests of Curve key files, public key parsing and the trust store."""

from __future__ import annotations

import os
import re
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from operone_zmq.errors import ConfigError, SecurityError
from operone_zmq.security import (
    KeyPair,
    TrustStore,
    fingerprint,
    generate_keypair,
    load_keypair,
    parse_public_key,
)

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def new_key() -> bytes:
    return zmq.curve_keypair()[0]


# ------------------------------------------------------------------ key pairs
@posix_only
def test_generate_keypair_writes_private_secret_file(tmp_path: Path) -> None:
    """The secret file is 0600, the new directory 0700, and both files load back."""
    keys = tmp_path / "keys"
    pair = generate_keypair(keys, "node")
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(keys / "node.key_secret").st_mode) == 0o600
    assert sorted(p.name for p in keys.iterdir()) == ["node.key", "node.key_secret"]
    assert load_keypair(keys / "node.key_secret") == pair
    assert load_keypair(keys / "node.key") == KeyPair(pair.public, None)
    assert pair.secret is not None
    assert zmq.curve_public(pair.secret) == pair.public


def test_generate_keypair_refuses_to_overwrite(tmp_path: Path) -> None:
    """Existing key files are kept unless overwrite is asked for."""
    first = generate_keypair(tmp_path, "node")
    with pytest.raises(ConfigError, match="already exist"):
        generate_keypair(tmp_path, "node")
    second = generate_keypair(tmp_path, "node", overwrite=True)
    assert second.public != first.public


def test_generate_keypair_rejects_bad_names(tmp_path: Path) -> None:
    """Names that are not file-name safe are refused."""
    for bad in ("", "../x", "a b", ".hidden", "x" * 65):
        with pytest.raises(ConfigError, match="invalid key name"):
            generate_keypair(tmp_path, bad)


def test_keypair_fingerprint_and_repr() -> None:
    """The fingerprint is 16 hex digits of sha256(z85 public); repr hides the secret."""
    public, secret = zmq.curve_keypair()
    pair = KeyPair(public, secret)
    assert pair.fingerprint == fingerprint(public)
    assert len(pair.fingerprint) == 16
    assert int(pair.fingerprint, 16) >= 0
    assert secret.decode() not in repr(pair)


def test_load_keypair_errors_name_the_file(tmp_path: Path) -> None:
    """Missing, garbled and mismatched certificates raise ConfigError naming the file."""
    missing = tmp_path / "nope.key_secret"
    with pytest.raises(ConfigError, match=re.escape("nope.key_secret")):
        load_keypair(missing)
    garbled = tmp_path / "garbled.key"
    garbled.write_text("hello\n")
    with pytest.raises(ConfigError, match=re.escape("garbled.key")):
        load_keypair(garbled)
    bad_key = tmp_path / "bad.key"
    bad_key.write_text('curve\n    public-key = "tooshort"\n')
    with pytest.raises(ConfigError, match=re.escape("bad.key")):
        load_keypair(bad_key)
    public_only = tmp_path / "pub.key_secret"
    public_only.write_text(f'curve\n    public-key = "{new_key().decode()}"\n')
    with pytest.raises(ConfigError, match="no secret key"):
        load_keypair(public_only)
    other_secret = zmq.curve_keypair()[1].decode()
    mixed = tmp_path / "mixed.key_secret"
    mixed.write_text(
        f'curve\n    public-key = "{new_key().decode()}"\n    secret-key = "{other_secret}"\n'
    )
    with pytest.raises(ConfigError, match="does not belong"):
        load_keypair(mixed)


def test_parse_public_key_forms(tmp_path: Path) -> None:
    """Z85 text or bytes, raw 32 bytes and certificate paths all give the Z85 key."""
    pair = generate_keypair(tmp_path, "peer")
    public = pair.public
    assert parse_public_key(public) == public
    assert parse_public_key(public.decode()) == public
    assert parse_public_key(f"  {public.decode()}\n") == public
    assert parse_public_key(z85.decode(public)) == public
    assert parse_public_key(tmp_path / "peer.key") == public
    assert parse_public_key(tmp_path / "peer.key_secret") == public
    assert parse_public_key(str(tmp_path / "peer.key")) == public


@pytest.mark.parametrize(
    "value",
    [
        "",
        "x" * 39,
        "x" * 41,
        "~" * 40,  # not in the Z85 alphabet
        "#" * 40,  # Z85 groups above 2**32
        b"\x00" * 31,
        "/no/such/file.key",
    ],
)
def test_parse_public_key_rejects_garbage(value: str | bytes) -> None:
    """Anything that is not a 32-byte Curve key is a ConfigError."""
    with pytest.raises(ConfigError):
        parse_public_key(value)


# ---------------------------------------------------------------- trust store
def test_trust_store_accept_and_lookup(tmp_path: Path) -> None:
    """An accepted key is trusted and named; others are not."""
    store = TrustStore(tmp_path / "trust", clock=FakeClock())
    key, other = new_key(), new_key()
    assert not store.is_trusted(key)
    entry = store.accept("node-b", key)
    assert entry.name == "node-b"
    assert entry.status == "trusted"
    assert entry.fingerprint == fingerprint(key)
    assert store.is_trusted(key)
    assert store.is_trusted(z85.decode(key))  # raw form
    assert not store.is_trusted(other)
    assert not store.is_trusted(b"garbage")
    assert store.name_of(key) == "node-b"
    assert store.name_of(other) is None
    assert (tmp_path / "trust" / "trusted" / "node-b.key").is_file()
    assert zmq.auth.load_certificate(tmp_path / "trust" / "trusted" / "node-b.key") == (key, None)


def test_trust_store_pending_then_accept(tmp_path: Path) -> None:
    """add_pending records a key for review; accept moves it to trusted, keeping its source."""
    store = TrustStore(tmp_path, clock=FakeClock())
    key = new_key()
    pending = store.add_pending("node-c", key, source='tcp://10.0.0.3 "hello"\n')
    assert pending.status == "pending"
    assert not store.is_trusted(key)
    assert store.add_pending("node-c", key) == pending
    [listed] = store.list()
    assert listed == pending
    assert "\n" not in listed.source
    assert '"' not in listed.source
    trusted = store.accept("node-c", key)
    assert trusted.source == listed.source
    assert store.is_trusted(key)
    assert [e.status for e in store.list()] == ["trusted"]
    assert not (tmp_path / "pending" / "node-c.key").exists()


def test_trust_store_accept_pending_by_name_or_fingerprint(tmp_path: Path) -> None:
    """accept without a key takes the pending entry of that name or fingerprint."""
    store = TrustStore(tmp_path, clock=FakeClock())
    k1, k2 = new_key(), new_key()
    store.add_pending("one", k1)
    store.add_pending("two", k2)
    assert store.accept("one").public_key == k1
    assert store.accept(fingerprint(k2)).name == "two"
    assert store.is_trusted(k1)
    assert store.is_trusted(k2)
    with pytest.raises(ConfigError, match="no pending key"):
        store.accept("three")


def test_trust_store_accept_is_idempotent_per_key(tmp_path: Path) -> None:
    """The same key under a new name returns the existing entry; a taken name is refused."""
    store = TrustStore(tmp_path, clock=FakeClock())
    key = new_key()
    first = store.accept("alpha", key)
    assert store.accept("beta", key) == first
    assert [e.name for e in store.list()] == ["alpha"]
    with pytest.raises(ConfigError, match="already trusted for another key"):
        store.accept("alpha", new_key())
    with pytest.raises(ConfigError, match="invalid key name"):
        store.accept("bad name", new_key())


def test_trust_store_add_pending_cases(tmp_path: Path) -> None:
    """Trusted keys stay trusted, a name clash gets a suffix, pending keys are bounded."""
    store = TrustStore(tmp_path, clock=FakeClock(), max_pending=2)
    trusted = store.accept("known", new_key())
    assert store.add_pending("whatever", trusted.public_key) == trusted
    k1, k2 = new_key(), new_key()
    store.add_pending("dup", k1)
    second = store.add_pending("dup", k2)
    assert second.name == f"dup-{fingerprint(k2)[:8]}"
    with pytest.raises(SecurityError, match="too many pending keys"):
        store.add_pending("third", new_key())


def test_trust_store_reject(tmp_path: Path) -> None:
    """reject removes trusted or pending entries by name or fingerprint."""
    store = TrustStore(tmp_path, clock=FakeClock())
    k1, k2 = new_key(), new_key()
    store.accept("one", k1)
    store.add_pending("two", k2)
    assert store.reject("one")
    assert not store.is_trusted(k1)
    fp = fingerprint(k2)
    assert store.reject(":".join(fp[i : i + 4] for i in range(0, 16, 4)))
    assert store.list() == []
    assert not store.reject("one")


def test_trust_store_sees_other_writers_within_half_a_second(tmp_path: Path) -> None:
    """Changes by another process show after the cached set's 0.5 s refresh interval."""
    clock = FakeClock()
    reader = TrustStore(tmp_path, clock=clock)
    writer = TrustStore(tmp_path, clock=FakeClock())
    key = new_key()
    assert not reader.is_trusted(key)
    writer.accept("late", key)
    clock.now = 0.4
    assert not reader.is_trusted(key)  # still the cached set
    clock.now = 0.5
    assert reader.is_trusted(key)
    assert reader.name_of(key) == "late"
    writer.reject("late")
    clock.now = 1.0
    assert not reader.is_trusted(key)


def test_trust_store_skips_garbled_files(tmp_path: Path) -> None:
    """A broken file in trusted/ is ignored rather than breaking every check."""
    store = TrustStore(tmp_path, clock=FakeClock())
    key = new_key()
    store.accept("good", key)
    (tmp_path / "trusted" / "broken.key").write_text("not a certificate\n")
    (tmp_path / "trusted" / "short.key").write_text('curve\n    public-key = "abc"\n')
    fresh = TrustStore(tmp_path, clock=FakeClock())
    assert fresh.is_trusted(key)
    assert [e.name for e in fresh.list()] == ["good"]


def test_trust_store_reads_zmq_auth_certificates(tmp_path: Path) -> None:
    """Certificates made by zmq.auth.create_certificates can be dropped into trusted/."""
    (tmp_path / "trusted").mkdir()
    public_file, _ = zmq.auth.create_certificates(tmp_path / "trusted", "copied")
    os.remove(tmp_path / "trusted" / "copied.key_secret")
    key, _ = zmq.auth.load_certificate(public_file)
    assert TrustStore(tmp_path, clock=FakeClock()).is_trusted(key)


def test_trust_store_callback_forms(tmp_path: Path) -> None:
    """The ZAP callback accepts Z85 keys (what pyzmq passes) and raw 32-byte keys."""
    store = TrustStore(tmp_path, clock=FakeClock())
    key = new_key()
    store.accept("n", key)
    assert store.callback("*", key)
    assert store.callback("", z85.decode(key))
    assert not store.callback("*", new_key())
    assert not store.callback("*", b"")


def test_trust_store_concurrent_checks(tmp_path: Path) -> None:
    """is_trusted can be called from several threads while keys are accepted."""
    store = TrustStore(tmp_path)
    keys = [new_key() for _ in range(10)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def check() -> None:
        try:
            while not stop.is_set():
                for k in keys:
                    store.is_trusted(k)
                time.sleep(0.0005)  # let the writer have the GIL now and then
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=check) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i, k in enumerate(keys):
            store.accept(f"n{i}", k)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
    assert not errors
    assert all(store.is_trusted(k) for k in keys)


# ------------------------------------------------------------- real CurveZMQ
@pytest.fixture
def zmq_context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    """A private Context, terminated after the test."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        yield ctx
    finally:
        ctx.destroy(linger=0)


def test_curve_handshake_admits_only_trusted_keys(
    tmp_path: Path, zmq_context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    """A ZAP authenticator using the store admits a trusted client and ignores an unknown one."""
    server_keys = generate_keypair(tmp_path / "keys", "server")
    good = generate_keypair(tmp_path / "keys", "good")
    bad = generate_keypair(tmp_path / "keys", "bad")
    store = TrustStore(tmp_path / "trust")
    store.accept("good", good.public)

    auth = ThreadAuthenticator(zmq_context)
    auth.start()
    sockets: list[zmq.Socket[bytes]] = []
    try:
        auth.configure_curve_callback(domain="*", credentials_provider=store)
        server = zmq_context.socket(zmq.ROUTER)
        sockets.append(server)
        server.linger = 0
        server.curve_server = True
        server.curve_secretkey = server_keys.secret
        server.curve_publickey = server_keys.public
        port = server.bind_to_random_port("tcp://127.0.0.1")

        def client(pair: KeyPair) -> zmq.Socket[bytes]:
            sock = zmq_context.socket(zmq.DEALER)
            sockets.append(sock)
            sock.linger = 0
            sock.curve_serverkey = server_keys.public
            sock.curve_publickey = pair.public
            assert pair.secret is not None
            sock.curve_secretkey = pair.secret
            sock.connect(f"tcp://127.0.0.1:{port}")
            return sock

        trusted, untrusted = client(good), client(bad)
        trusted.send(b"hello")
        untrusted.send(b"intruder")

        assert server.poll(2000) == zmq.POLLIN
        frames = server.recv_multipart(copy=False)
        assert frames[-1].bytes == b"hello"
        assert frames[-1].get("User-Id") == good.public.decode()
        server.send_multipart([frames[0].bytes, b"welcome"])
        assert trusted.poll(2000) == zmq.POLLIN
        assert trusted.recv() == b"welcome"

        assert server.poll(500) == 0  # the untrusted message never arrives
        assert untrusted.poll(100) == 0
    finally:
        for sock in sockets:
            sock.close(linger=0)
        auth.stop()


# ------------------------------------------- start-up and failure regressions
def test_fresh_stores_admit_trusted_keys_to_concurrent_zap_lookups(tmp_path: Path) -> None:
    """Issue 9 item 2: a store's first lookups, made at once from several threads
    (the ZAP thread and the broker's loop), all see the trusted keys: the
    snapshot is loaded before anyone can read it, and published atomically."""
    keys = [new_key() for _ in range(40)]
    seed = TrustStore(tmp_path)
    for i, k in enumerate(keys):
        seed.accept(f"c{i}", k)
    stores, threads_per_store = 200, 4
    refused = 0
    for _ in range(stores):
        store = TrustStore(tmp_path)
        gate = threading.Barrier(threads_per_store)
        answers: list[bool] = []

        def probe(key: bytes, store: TrustStore = store, gate: threading.Barrier = gate,
                  answers: list[bool] = answers) -> None:
            gate.wait(timeout=10)
            answers.append(store.callback("global", key))

        threads = [threading.Thread(target=probe, args=(keys[j],))
                   for j in range(threads_per_store)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert len(answers) == threads_per_store
        refused += answers.count(False)
    assert refused == 0, f"{refused} of {stores * threads_per_store} trusted lookups refused"


_EMFILE_PROBE = r"""
import os, sys, zmq
from pathlib import Path
from operone_zmq.security import TrustStore

class Clock:
    now = 0.0
    def __call__(self):
        return self.now

directory = Path(sys.argv[1])
old, new = zmq.curve_keypair()[0], zmq.curve_keypair()[0]
TrustStore(directory).accept("old", old)
clock = Clock()
store = TrustStore(directory, clock)
assert store.is_trusted(old)
TrustStore(directory).accept("new", new)   # the directory changes: the next check rescans
hog = []
try:
    while True:                            # use up every file descriptor
        hog.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
clock.now += 10.0
during = (store.is_trusted(old), store.callback("global", old))
for fd in hog:
    os.close(fd)
clock.now += 10.0
after = (store.is_trusted(old), store.is_trusted(new))
print("RESULT", during, after, flush=True)
"""


@posix_only
def test_a_failed_scan_keeps_the_last_good_snapshot(tmp_path: Path) -> None:
    """Issue 9 item 3: out of file descriptors (RLIMIT_NOFILE lowered in a child
    process), a rescan fails; the keys trusted before stay trusted, the failure
    is logged, and the next scan that works picks up the change."""
    import resource
    import subprocess

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    r = subprocess.run([sys.executable, "-P", "-c", _EMFILE_PROBE, str(tmp_path)],
                       capture_output=True, text=True, timeout=60, preexec_fn=limit)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert "RESULT (True, True) (True, True)" in out, out
    assert "trust_scan_failed" in out, out


def test_a_key_accepted_a_moment_ago_is_admitted_and_a_refusal_says_what_to_run(
    tmp_path: Path,
) -> None:
    """Before refusing, the ZAP check looks at the directory once more (a refusal
    is final for a libzmq client), and the refusal log names the key and the
    command that would trust it, never a key that is trusted."""
    from structlog.testing import capture_logs

    clock = FakeClock()
    store = TrustStore(tmp_path, clock)
    key, stranger = new_key(), new_key()
    TrustStore(tmp_path).accept("late", key)  # another process, between two checks
    with capture_logs() as logs:
        assert store.callback("global", key)  # no clock advance needed
        clock.now += 1.0
        for _ in range(5):  # knocking in a loop: logged once
            assert not store.callback("global", stranger)
    refusals = [e for e in logs if e["event"] == "zap_refused"]
    assert len(refusals) == 1
    assert refusals[0]["fingerprint"] == fingerprint(stranger)
    assert f"operone keys accept -- NAME '{stranger.decode()}'" in refusals[0]["hint"]


# ------------------------------------------------------- cost and the index
_OPENS: list[str] = []
_COUNTING = threading.Event()


def _count_opens(event: str, args: tuple[object, ...]) -> None:
    if _COUNTING.is_set() and event == "open":
        _OPENS.append(str(args[0]))


def test_accept_reads_a_constant_number_of_files(tmp_path: Path) -> None:
    """Issue 9 (trust setup was O(N^3)): with N keys trusted, a new store's
    accept opens a handful of files, not every key file (twice) as before."""
    sys.addaudithook(_count_opens)  # cannot be removed: it counts only while _COUNTING
    seed = TrustStore(tmp_path)
    for i in range(60):
        seed.accept(f"n{i}", new_key())
    time.sleep(0.2)  # let the files' timestamps settle (see keys._SIG_SETTLE_NS)
    TrustStore(tmp_path).list()  # builds the index of settled files
    _OPENS.clear()
    _COUNTING.set()
    try:
        TrustStore(tmp_path).accept("late", new_key())
    finally:
        _COUNTING.clear()
    key_files = [p for p in _OPENS if p.endswith(".key")]
    assert len(_OPENS) <= 8, _OPENS
    assert not key_files, key_files


def test_the_index_never_hides_a_changed_file(tmp_path: Path) -> None:
    """A key file replaced under the same name (perhaps on the same inode) is
    seen by a running store and by a new one; a broken index is rebuilt."""
    clock = FakeClock()
    a, b = new_key(), new_key()
    TrustStore(tmp_path).accept("x", a)
    time.sleep(0.1)
    running = TrustStore(tmp_path, clock)
    assert running.key_of("x") == a
    other = TrustStore(tmp_path)
    other.reject("x")
    other.accept("x", b)
    clock.now += 1.0
    assert running.key_of("x") == b
    assert TrustStore(tmp_path).key_of("x") == b
    (tmp_path / ".trusted.index").write_text("{not json")
    assert TrustStore(tmp_path).key_of("x") == b
    (tmp_path / ".trusted.index").unlink()
    assert TrustStore(tmp_path).key_of("x") == b


def test_lookups_by_name_and_fingerprint_follow_the_store(tmp_path: Path) -> None:
    """named / key_of / by_fingerprint are answered from per-snapshot indexes:
    they see an accept, a re-key and a reject at once, in this store and in
    another one reading the same directory."""
    clock = FakeClock()
    store, other = TrustStore(tmp_path), TrustStore(tmp_path, clock)
    a, b = new_key(), new_key()
    assert store.named("n1") is None and store.key_of("n1") is None
    e = store.accept("n1", a)
    assert store.named("n1") == e and store.key_of("n1") == e.public_key
    assert store.by_fingerprint(e.fingerprint) == e
    store.reject("n1")
    e2 = store.accept("n1", b)  # re-keyed under its name
    assert store.key_of("n1") == e2.public_key != e.public_key
    assert store.by_fingerprint(e.fingerprint) is None
    assert store.by_fingerprint(e2.fingerprint) == e2
    clock.now += 1.0
    assert other.named("n1") == e2 and other.by_fingerprint(e2.fingerprint) == e2
    store.reject("n1")
    assert store.named("n1") is None and store.by_fingerprint(e2.fingerprint) is None


def test_roles_are_stored_read_back_and_changed(tmp_path: Path) -> None:
    """Issue 11: an entry says whether the key is a node, its client role and
    allow-lists and the node's signing key; another process reads the same;
    accepting the key again under its name changes them."""
    pub = zmq.curve_keypair()[0]
    store = TrustStore(tmp_path)
    e = store.accept("alice", pub, node=False, role="submit", tools=("fs.*", "echo"),
                     nodes=("pc2",))
    assert (e.node, e.role, e.tools, e.nodes) == (False, "submit", ("echo", "fs.*"), ("pc2",))
    again = TrustStore(tmp_path).entry_of(pub)
    assert again == e
    e2 = store.accept("alice", pub, role="operator", signing_key="ab" * 32)
    assert (e2.node, e2.role, e2.tools, e2.signing_key) == (False, "operator",
                                                            ("echo", "fs.*"), "ab" * 32)
    assert TrustStore(tmp_path).named("alice") == e2
    assert TrustStore(tmp_path).by_fingerprint(e2.fingerprint) == e2
    with pytest.raises(ConfigError, match="unknown client role"):
        store.accept("bob", zmq.curve_keypair()[0], role="root")
    with pytest.raises(ConfigError, match="64 hex digits"):
        store.accept("bob", zmq.curve_keypair()[0], signing_key="xyz")
    plain = store.accept("carol", zmq.curve_keypair()[0])
    assert plain.node and plain.role == "operator"  # the documented default
