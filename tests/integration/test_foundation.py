"""One broker with worker processes, over TCP with CurveZMQ: the foundation."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import msgpack
import pytest
import zmq
from helpers import LocalNode, wait_for

from operone_zmq.aio.client import Client
from operone_zmq.aio.sockets import CurveKeys
from operone_zmq.errors import (
    AuthenticationError,
    BadRequest,
    BrokerUnreachable,
    JobTimeout,
    MessageTooLarge,
    PathOutsideRoot,
    Refused,
    ToolNotFound,
    WorkerLost,
)
from operone_zmq.protocol import MsgType, decode
from operone_zmq.security.keys import generate_keypair

pytestmark = pytest.mark.integration


def test_jobs_round_trip(node: LocalNode) -> None:
    """echo, shell and sysinfo run on a worker process and come back."""
    with node.client() as c:
        assert c.run("echo", {"x": 1, "b": b"\x00\x01"}) == {"x": 1, "b": b"\x00\x01"}
        out = c.run("shell", {"argv": ["uname", "-s"]})
        assert out["exit_code"] == 0
        assert out["stdout"].strip()
        info = c.run("sysinfo")
        assert info["pid"] != os.getpid()
        res = c.submit("echo", {"y": 2}).result(10)
        assert res.executed_on == "n1"


def test_many_jobs_are_spread_over_both_workers(node: LocalNode) -> None:
    """map() returns results in order; both workers did some of the work."""
    with node.client() as c:
        values = c.map("echo", [{"i": i} for i in range(2000)], concurrency=200)
        assert values == [{"i": i} for i in range(2000)]
        workers = c.workers()
    assert len(workers) == 2
    assert all(w["done"] > 0 for w in workers)


def test_async_and_blocking_tools_run_concurrently(node: LocalNode) -> None:
    """Ten 0.5 s sleeps finish together, not one after another."""
    with node.client() as c:
        t0 = time.monotonic()
        futs = [c.submit("sleep", {"seconds": 0.5}) for _ in range(10)]
        assert [f.result(20).value for f in futs] == [0.5] * 10
        # behaviour, not speed: they overlapped (sequential would be 5 s)
        assert time.monotonic() - t0 < 4.5


def test_unknown_tool_and_bad_arguments(node: LocalNode) -> None:
    """Typed errors that say what went wrong."""
    with node.client() as c:
        with pytest.raises(ToolNotFound, match="nosuch"):
            c.run("nosuch")
        with pytest.raises(BadRequest, match="seconds"):
            c.run("sleep", {})
        with pytest.raises(BadRequest, match="unexpected"):
            c.run("sysinfo", {"bogus": 1})


def test_timeout_is_a_typed_error_and_the_worker_keeps_serving(node: LocalNode) -> None:
    """A job past its timeout fails with JobTimeout; the node goes on."""
    with node.client() as c:
        with pytest.raises(JobTimeout):
            c.run("sleep", {"seconds": 5}, timeout=0.3)
        assert c.run("echo", {"ok": True}) == {"ok": True}


def test_shell_refuses_executables_outside_the_allow_list(node: LocalNode) -> None:
    """shell runs argv lists from the allow-list only."""
    with node.client() as c:
        with pytest.raises(Refused, match="allow-list"):
            c.run("shell", {"argv": ["rm", "-rf", "/tmp/nothing-here"]})
        with pytest.raises(BadRequest, match="list"):
            c.run("shell", {"argv": "uname -a"})


def test_fs_tools_are_confined_to_the_root(node: LocalNode) -> None:
    """fs.write/read/list work under the root and refuse ../ escapes."""
    with node.client() as c:
        c.run("fs.write", {"path": "a/b.txt", "data": "hello", "mkdirs": True})
        assert c.run("fs.read", {"path": "a/b.txt"}) == "hello"
        assert [e["name"] for e in c.run("fs.list", {"path": "a"})] == ["b.txt"]
        with pytest.raises(PathOutsideRoot):
            c.run("fs.read", {"path": "../../etc/passwd"})
        with pytest.raises(PathOutsideRoot):
            c.run("fs.write", {"path": "../escape.txt", "data": "x"})
    assert not (node.dir / "escape.txt").exists()


def test_untrusted_client_key_is_refused(node: LocalNode, tmp_path: Path) -> None:
    """A client whose key the broker does not trust fails fast with
    AuthenticationError; trusted clients are unaffected."""
    stranger = generate_keypair(tmp_path / "stranger", "client")
    assert stranger.secret is not None
    server = node.keys().server
    keys = CurveKeys(stranger.public, stranger.secret, server)
    with Client("127.0.0.1", node.base_port, keys=keys) as c, \
            pytest.raises(AuthenticationError, match="refused"):
        c.run("echo", {}, timeout=10)
    with node.client() as c:
        assert c.run("echo", {"still": "serving"}) == {"still": "serving"}


def test_wrong_server_key_is_an_error_not_a_hang(node: LocalNode, tmp_path: Path) -> None:
    """A client that expects another broker key never talks to this broker."""
    other = generate_keypair(tmp_path / "other", "srv")
    k = node.keys()
    with Client("127.0.0.1", node.base_port, keys=CurveKeys(k.public, k.secret, other.public),
                default_timeout=1.0) as c, pytest.raises((AuthenticationError, BrokerUnreachable)):
        c.run("echo", {}, timeout=0.5)


def _frames(tool: str, jid: str) -> list[bytes]:
    header = msgpack.packb([int(MsgType.JOB), jid, "raw", "", 8, 0, 2, None])
    return [b"OZ\x01", header, msgpack.packb({"tool": tool, "args": {}})]


def test_plaintext_client_gets_nothing(node: LocalNode) -> None:
    """Without CurveZMQ a client cannot even complete the handshake."""
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    try:
        s.connect(f"tcp://127.0.0.1:{node.base_port + 2}")
        s.send_multipart(_frames("echo", "plain-1"))
        assert s.poll(1000) == 0
    finally:
        s.close(0)
        ctx.term()
    with node.client() as c:
        assert c.stats()["jobs_received"] == 0


def test_malformed_frames_leave_the_broker_serving(node: LocalNode) -> None:
    """1,000 malformed messages from a trusted client each get an error reply,
    and the broker goes on serving everyone."""
    k = node.keys()
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.curve_publickey, s.curve_secretkey, s.curve_serverkey = k.public, k.secret, k.server
    rng = __import__("random").Random(7)
    junk: list[list[bytes]] = [
        [b"garbage"],
        [b"OZ\x01", b"\xc1", b""],
        [b"OZ\x09", b"", b""],
        [b"OZ\x01", msgpack.packb([10, "x"]), b""],
        [b"OZ\x01", msgpack.packb([99, "x", "", "", 1, 0, 2, None]), b""],
        [*_frames("echo", "ok-1")[:2], b"\x01\x02"],
    ]
    try:
        s.connect(f"tcp://127.0.0.1:{node.base_port + 2}")
        for i in range(1000):
            if i % 7 == 6:
                s.send_multipart([rng.randbytes(rng.randrange(0, 64))
                                  for _ in range(rng.randrange(1, 6))])
            else:
                s.send_multipart(junk[i % len(junk)])
        errors = 0
        while errors < 1000 and s.poll(5000):
            msg = decode(s.recv_multipart())
            assert msg.header.type == MsgType.ERROR
            errors += 1
        assert errors == 1000
    finally:
        s.close(0)
        ctx.term()
    with node.client() as c:
        assert c.run("echo", {"after": "junk"}) == {"after": "junk"}
        assert c.stats()["malformed"] >= 800


def test_oversize_message_is_refused_before_sending(node: LocalNode) -> None:
    """A job bigger than the message limit raises MessageTooLarge locally."""
    with node.client() as c:
        with pytest.raises(MessageTooLarge):
            c.run("echo", {"blob": b"x" * (65 * 1024 * 1024)})
        assert c.run("echo", {"n": 1}) == {"n": 1}


def test_worker_killed_mid_job_gives_an_error(tmp_path: Path) -> None:
    """SIGKILL of the worker running a job: the submitter gets WorkerLost
    within the heartbeat timeout, and the node keeps serving."""
    n = LocalNode(tmp_path, "n1")
    try:
        n.start_broker()
        w = n.start_worker("victim")
        n.wait_workers(1)
        with n.client() as c:
            fut = c.submit("sleep", {"seconds": 60}, timeout=60)
            wait_for(lambda: c.stats()["running"] == 1, 10, "the job to start")
            os.kill(w.pid, signal.SIGKILL)
            t0 = time.monotonic()
            with pytest.raises(WorkerLost, match="victim"):
                fut.result(15)
            # heartbeat 0.2 s x liveness 5 = 1 s of silence, plus a tick
            assert time.monotonic() - t0 < 10
            n.start_worker()
            n.wait_workers(1)
            assert c.run("echo", {"a": 1}) == {"a": 1}
    finally:
        n.stop()


def test_broker_restart_workers_register_again(node: LocalNode) -> None:
    """Workers notice a new broker and register with it again."""
    broker = node.procs[0]
    broker.stop()
    node.procs.remove(broker)
    node.start_broker()
    node.wait_workers(2, timeout=30)
    with node.client() as c:
        assert c.run("echo", {"again": True}) == {"again": True}


def test_clean_shutdown_is_quick(node: LocalNode) -> None:
    """SIGTERM stops broker and workers promptly with exit code 0, and a
    job in progress gets an error instead of hanging."""
    with node.client() as c:
        fut = c.submit("sleep", {"seconds": 30})
        wait_for(lambda: c.stats()["running"] == 1, 10, "the job to start")
        broker = node.procs[0]
        t0 = time.monotonic()
        broker.signal(signal.SIGTERM)
        broker.p.wait(5)
        stopped_in = time.monotonic() - t0
        with pytest.raises(Exception) as err:
            fut.result(10)
        assert "stopped" in str(err.value) or "shutting down" in str(err.value)
    assert broker.p.returncode == 0
    assert stopped_in < 1.0, f"broker took {stopped_in:.2f} s to stop"
    for w in node.procs[1:]:
        w.signal(signal.SIGTERM)
        w.p.wait(5)
        assert w.p.returncode == 0
