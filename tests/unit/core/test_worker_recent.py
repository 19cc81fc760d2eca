"""WorkerCore keeps the RESULTs it sends again after a broker restart within
both bounds: MAX_RECENT_RESULTS messages and MAX_RECENT_BYTES bytes of
bodies (1,024 results of 1 MiB would otherwise hold a GiB)."""

from __future__ import annotations

from operone_zmq.core import worker as worker_module
from operone_zmq.core.worker import MAX_RECENT_BYTES, WorkerCore
from operone_zmq.protocol.bodies import Disconnect, JobRequest, ToolInfo
from operone_zmq.protocol.codec import TAG, Header, MsgType, decode, encode_header


def _job(jid: str) -> list[bytes]:
    h = Header(int(MsgType.JOB), jid, "client", "n1", 16, 0, 2, None)
    return [TAG, encode_header(h), JobRequest("echo", {}).pack()]


def _disconnect() -> list[bytes]:
    h = Header(int(MsgType.DISCONNECT), "d1", "n1", "", 1, 0, 0, None)
    return [TAG, encode_header(h), Disconnect("restarted").pack()]


def _results_sent_again(w: WorkerCore, now: float) -> list[str]:
    w.out.clear()
    w.on_broker(_disconnect(), now)
    w.tick(now + 2 * w.interval)  # registers again, after an interval
    return [m.header.id for m in map(decode, w.out)
            if m.header.type == int(MsgType.RESULT)]


def test_recent_results_are_bounded_in_bytes() -> None:
    w = WorkerCore("w1", [ToolInfo("echo")], now=0.0)
    w.start(0.0)
    size = 1 << 20
    n = MAX_RECENT_BYTES // size + 8
    for i in range(n):
        w.on_broker(_job(f"j{i}"), 0.1)
        w.done(f"j{i}", b"x" * size, 0.1)
    again = _results_sent_again(w, 0.2)
    assert again  # the newest ones...
    assert again == [f"j{i}" for i in range(n - len(again), n)]
    assert len(again) * size <= MAX_RECENT_BYTES  # ...within the byte bound
    assert w._recent_bytes == sum(len(f[2]) for _, f in w._recent.values())


def test_recent_results_are_bounded_in_count() -> None:
    w = WorkerCore("w1", [ToolInfo("echo")], now=0.0)
    w.start(0.0)
    n = worker_module.MAX_RECENT_RESULTS + 10
    for i in range(n):
        w.on_broker(_job(f"j{i}"), 0.1)
        w.done(f"j{i}", i, 0.1)
    again = _results_sent_again(w, 0.2)
    assert again == [f"j{i}" for i in range(10, n)]
