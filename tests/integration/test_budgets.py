"""Budgets per sender (issue 11), each mounted against a real broker process.

A trusted client (the node's own key, over CurveZMQ on 127.0.0.1) attacks
with raw frames; the broker must refuse, stay small (its VmRSS from
/proc/PID/status, not timings) and keep serving another client, whose
critical PING is answered.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from helpers import LocalNode, Proc, wait_for

from operone_zmq.aio.sockets import CurveKeys
from operone_zmq.protocol.bodies import ErrorBody, JobRequest, Progress, pack_value
from operone_zmq.protocol.codec import TAG, Header, MsgType, decode, encode_header
from operone_zmq.security.keys import TrustStore, load_keypair

pytestmark = pytest.mark.integration

TOOLS = str(Path(__file__).resolve().parents[1] / "budget_tools.py")
MiB = 1024 * 1024
#: Every wait of these tests (they never hang).
WAIT = 60.0


def vm(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    return out


class Raw:
    """A DEALER speaking raw protocol frames to one frontend class."""

    def __init__(self, node: LocalNode, cls: int, net: Net,
                 keys: CurveKeys | None = None) -> None:
        keys = keys or node.keys()
        s = net.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, 0)
        s.setsockopt(zmq.RCVHWM, 0)
        s.curve_secretkey = keys.secret
        s.curve_publickey = keys.public
        s.curve_serverkey = keys.server if keys.server is not None else keys.public
        s.connect(f"tcp://127.0.0.1:{node.base_port + cls}")
        self.s = s
        self.cls = cls
        self._n = 0
        net.raws.append(self)

    def send(self, t: MsgType, body: bytes = b"", *, mid: str | None = None,
             extra: list[bytes] | None = None) -> str:
        self._n += 1
        mid = mid or f"m{self._n}"
        h = Header(int(t), mid, "", "", 32, int(time.time() * 1000), self.cls, None)
        self.s.send_multipart([TAG, encode_header(h), body, *(extra or [])], copy=False)
        return mid

    def recv(self, timeout: float = WAIT) -> tuple[Header, bytes]:
        if not self.s.poll(int(timeout * 1000)):
            raise TimeoutError(f"no answer within {timeout} s")
        m = decode(self.s.recv_multipart())
        return m.header, m.body

    def answer(self, mid: str, timeout: float = WAIT) -> tuple[Header, bytes]:
        """The next message about ``mid`` (others are skipped)."""
        end = time.monotonic() + timeout
        while True:
            h, body = self.recv(max(0.01, end - time.monotonic()))
            if h.id == mid or h.corr == mid:
                return h, body

    def ping(self) -> None:
        """A PING is answered with its PONG."""
        mid = self.send(MsgType.PING)
        h, _ = self.answer(mid)
        assert h.type == MsgType.PONG

    def close(self) -> None:
        if not self.s.closed:
            self.s.close(0)


class Net:
    """A ZeroMQ context and the Raw clients made on it (closed at the end)."""

    def __init__(self) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.raws: list[Raw] = []


@pytest.fixture
def zctx() -> Any:
    net = Net()
    yield net
    for r in net.raws:
        r.close()
    net.ctx.term()


def _node(tmp_path: Path, workers: int = 1, **fields: Any) -> tuple[LocalNode, Proc]:
    node = LocalNode(tmp_path, "n1", **fields)
    # Tens of MB per message on a loaded machine: give workers slack.
    node.env.update(OPERONE_WORKERS_HEARTBEAT_INTERVAL="1.0",
                    OPERONE_WORKERS_HEARTBEAT_LIVENESS="10")
    broker = node.start_broker()
    for _ in range(workers):
        node.start_worker(None, "--tools", TOOLS)
    if workers:
        node.wait_workers(workers)
    return node, broker


def _error(body: bytes) -> ErrorBody:
    return ErrorBody.unpack(body)


def test_a_message_of_300_frames_is_dropped_unkept_and_answered_too_large(
        tmp_path: Path, zctx: Any) -> None:
    node, broker = _node(tmp_path, workers=0)
    try:
        attacker, other = Raw(node, 2, zctx), Raw(node, 0, zctx)
        other.ping()
        before = vm(broker.pid)
        chunk = b"\x00" * MiB
        mid = attacker.send(MsgType.JOB, JobRequest("echo").pack(), extra=[chunk] * 297)
        h, body = attacker.answer(mid)
        other.ping()
        after = vm(broker.pid)
        print(f"300 x 1 MiB: VmRSS {before['VmRSS'] >> 20} -> {after['VmRSS'] >> 20} MiB,"
              f" VmHWM {before['VmHWM'] >> 20} -> {after['VmHWM'] >> 20} MiB")
        assert h.type == MsgType.ERROR
        e = _error(body)
        assert e.code == "too_large", e
        assert "300 frames" in e.message
        # The broker keeps none of it (libzmq held the message until it was read).
        assert after["VmRSS"] - before["VmRSS"] < 64 * MiB
    finally:
        node.stop()


def test_a_nested_array_bomb_is_refused_while_a_critical_ping_is_answered(
        tmp_path: Path, zctx: Any) -> None:
    node, broker = _node(tmp_path)
    try:
        attacker, other = Raw(node, 2, zctx), Raw(node, 0, zctx)
        other.ping()
        before = vm(broker.pid)
        n = 8_000_000  # 8 MB of empty arrays: 8 million objects if built
        body = (b"\x82\xa4tool\xa4echo\xa4args\x81\xa1x\xdd" + n.to_bytes(4, "big")
                + b"\x90" * n)
        mid = attacker.send(MsgType.JOB, body)
        other.ping()  # served while the bomb is in the broker
        h, answer = attacker.answer(mid)
        other.ping()
        after = vm(broker.pid)
        print(f"8 MB array bomb: VmRSS {before['VmRSS'] >> 20} -> {after['VmRSS'] >> 20} MiB,"
              f" VmHWM {before['VmHWM'] >> 20} -> {after['VmHWM'] >> 20} MiB")
        assert h.type == MsgType.ERROR
        e = _error(answer)
        assert e.code == "bad_request"
        assert "more than 1048576 elements" in e.message
        # Never built in the broker (8 M empty lists are ~450 MB).
        assert after["VmHWM"] - before["VmRSS"] < 100 * MiB
    finally:
        node.stop()


def test_many_arrays_each_under_the_limit_are_refused_by_the_worker(
        tmp_path: Path, zctx: Any) -> None:
    """16 arrays of a million empty arrays each (16 MB, every container under
    MAX_CONTAINER_LEN): the broker passes the JOB on without building it,
    the worker refuses it at the body's container budget instead of building
    16 million lists (~1 GB), and serves the next job."""
    node, _ = _node(tmp_path)
    try:
        worker = next(p for p in node.procs if "worker" in " ".join(p.p.args))
        c = Raw(node, 2, zctx)
        c.ping()
        n, k = 1_000_000, 16
        inner = b"\xdd" + n.to_bytes(4, "big") + b"\x90" * n
        body = (b"\x82\xa4tool\xa4echo\xa4args\x81\xa1x\xdc" + k.to_bytes(2, "big")
                + inner * k)
        before = vm(worker.pid)
        mid = c.send(MsgType.JOB, body)
        h, answer = c.answer(mid)
        after = vm(worker.pid)
        print(f"16 x 1 M empty arrays: worker VmHWM {before['VmHWM'] >> 20} ->"
              f" {after['VmHWM'] >> 20} MiB")
        assert h.type == MsgType.ERROR
        e = _error(answer)
        assert e.code == "bad_request", e
        assert "more than 1048576 arrays and maps" in e.message
        assert after["VmHWM"] - before["VmHWM"] < 200 * MiB
        mid = c.send(MsgType.JOB, JobRequest("echo", {"x": 1}).pack())
        assert c.answer(mid)[0].type == MsgType.RESULT
    finally:
        node.stop()


def test_jobs_in_flight_per_connection_are_bounded_in_bytes(tmp_path: Path,
                                                            zctx: Any) -> None:
    node, broker = _node(tmp_path, limits_max_client_bytes=48 * MiB)
    try:
        attacker, other = Raw(node, 2, zctx), Raw(node, 0, zctx)
        other.ping()
        before = vm(broker.pid)
        blob = b"\x01" * (20 * MiB)
        mids = [attacker.send(MsgType.JOB, JobRequest(
            "budget.hold", {"seconds": 8.0, "blob": blob}).pack()) for _ in range(8)]
        refused = []
        for _ in range(6):
            h, body = attacker.recv()
            assert h.type == MsgType.ERROR
            refused.append((h.id, _error(body)))
        other.ping()
        during = vm(broker.pid)
        print(f"8 x 20 MB held: VmRSS {before['VmRSS'] >> 20} -> {during['VmRSS'] >> 20} MiB")
        assert sorted(r[0] for r in refused) == sorted(mids[2:]), refused
        assert all(e.code == "overloaded" and "in flight" in e.message for _, e in refused)
        assert during["VmRSS"] - before["VmRSS"] < 120 * MiB
        for _ in range(2):  # the two accepted ones finish, and free the budget
            h, _ = attacker.recv()
            assert h.type == MsgType.RESULT
        mid = attacker.send(MsgType.JOB, JobRequest(
            "budget.hold", {"seconds": 0.0, "blob": blob}).pack())
        assert attacker.answer(mid)[0].type == MsgType.RESULT
    finally:
        node.stop()


def test_broadcast_history_is_bounded_in_bytes(tmp_path: Path, zctx: Any) -> None:
    node, broker = _node(tmp_path, workers=0)
    try:
        attacker, other = Raw(node, 2, zctx), Raw(node, 0, zctx)
        other.ping()
        before = vm(broker.pid)
        for _ in range(8):
            mid = attacker.send(MsgType.BROADCAST, pack_value(b"\x02" * (20 * MiB)))
            assert attacker.answer(mid)[0].type == MsgType.REPLY
        small = attacker.send(MsgType.BROADCAST, pack_value({"hi": 1}))
        attacker.answer(small)
        other.ping()
        after = vm(broker.pid)
        print(f"8 x 20 MB broadcasts: VmRSS {before['VmRSS'] >> 20} ->"
              f" {after['VmRSS'] >> 20} MiB")
        q = attacker.send(MsgType.QUERY, pack_value({"what": "broadcasts"}))
        _, body = attacker.answer(q)
        kept = msgpack.unpackb(body, raw=False)
        assert [b["size"] for b in kept[-9:-1]] == [20 * MiB + 5] * 8
        assert all(b["data"] is None for b in kept[-9:-1])
        assert kept[-1]["data"] == {"hi": 1}
        assert after["VmRSS"] - before["VmRSS"] < 64 * MiB
    finally:
        node.stop()


def test_streamed_output_is_capped_like_the_result(tmp_path: Path, zctx: Any) -> None:
    node, broker = _node(tmp_path, tools_shell_allow=["cat"])
    try:
        attacker, other = Raw(node, 2, zctx), Raw(node, 0, zctx)
        other.ping()
        before = vm(broker.pid)
        mid = attacker.send(MsgType.JOB, JobRequest(
            "shell", {"argv": ["cat", "/dev/zero"], "timeout": 3.0}, stream=True).pack())
        streamed = 0
        end = time.monotonic() + WAIT
        while True:
            h, body = attacker.answer(mid, max(0.01, end - time.monotonic()))
            if h.type != MsgType.PROGRESS:
                break
            streamed += len(Progress.unpack(body).data or "")
        other.ping()
        after = vm(broker.pid)
        print(f"streamed cat /dev/zero: {streamed} bytes streamed; broker VmRSS"
              f" {before['VmRSS'] >> 20} -> {after['VmRSS'] >> 20} MiB")
        assert h.type == MsgType.ERROR and _error(body).code == "timeout"
        assert 0 < streamed <= 4 * MiB
    finally:
        node.stop()


def test_a_client_that_does_not_read_cannot_hold_back_another_clients_answers(
        tmp_path: Path, zctx: Any) -> None:
    node, broker = _node(tmp_path)
    try:
        flooder, other = Raw(node, 2, zctx), Raw(node, 2, zctx)
        flooder.s.setsockopt(zmq.RCVHWM, 1000)  # it reads nothing: let its pipe fill
        flooder.s.setsockopt(zmq.RCVBUF, 4096)
        other.ping()
        before = vm(broker.pid)
        body = JobRequest("echo", {"pad": "x" * 2000}).pack()
        for _ in range(40_000):
            flooder.send(MsgType.JOB, body)
        with node.client() as c:
            wait_for(lambda: c.stats()["jobs_received"] >= 40_000, WAIT,
                     "the flood to arrive", step=0.2)
            other.ping()  # same socket class as the flooder: not held back
            stats = c.stats()
        after = vm(broker.pid)
        print(f"40k unread answers: VmRSS {before['VmRSS'] >> 20} -> {after['VmRSS'] >> 20}"
              f" MiB; unroutable (dropped answers)={stats['unroutable']}"
              f" errors={stats.get('errors')}")
        assert stats["unroutable"] > 0
    finally:
        node.stop()


def test_a_submit_keys_connections_share_its_byte_budget(tmp_path: Path, zctx: Any) -> None:
    """One submit key, four connections, 20 MiB jobs, a 48 MiB budget: two
    jobs are held in all, not two per connection (which would be 160 MiB)."""
    node, broker = _node(tmp_path, limits_max_client_bytes=48 * MiB)
    try:
        pub, sec = zmq.curve_keypair()
        TrustStore(node.home.trust_dir).accept("mallory", pub, node=False, role="submit")
        keys = CurveKeys(pub, sec, load_keypair(node.home.node_public).public)
        conns = [Raw(node, cls, zctx, keys) for cls in range(4)]
        for c in conns:
            c.ping()  # trusted and connected
        blob = b"\x01" * (20 * MiB)
        before = vm(broker.pid)
        sent = [(c, c.send(MsgType.JOB, JobRequest(
            "budget.hold", {"seconds": 8.0, "blob": blob}).pack(), mid=f"job-{i}"))
                for i, c in enumerate(conns)]
        # The four class sockets are read in the broker's own order: which
        # two are held is its choice; that two are refused is the rule.
        answers = [(c.answer(mid), c, mid) for c, mid in sent]
        during = vm(broker.pid)
        refused = [_error(body) for (h, body), _, _ in answers if h.type == MsgType.ERROR]
        held = [h.type for (h, _), _, _ in answers if h.type != MsgType.ERROR]
        assert len(refused) == 2 and all(
            e.code == "overloaded" and "this client key" in e.message for e in refused), refused
        assert held == [MsgType.RESULT, MsgType.RESULT]  # the two held ones finished
        assert during["VmRSS"] - before["VmRSS"] < 100 * MiB
    finally:
        node.stop()
