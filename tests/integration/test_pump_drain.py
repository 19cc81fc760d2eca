"""Pump.drain: input waiting in a socket is read before the timers judge liveness.

A heartbeat answer that arrived while the loop was busy must be handled
before the broker's tick decides the neighbour is silent (issue 9 item 7):
the broker's timer callback calls ``drain()`` first, which reads what waits
on every socket without waiting for the loop to dispatch the FD callback.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import zmq
from helpers import inproc_pair

from operone_zmq.aio.pump import Pump

pytestmark = pytest.mark.integration


def test_drain_reads_what_waits_before_the_loop_dispatches_it() -> None:
    async def main() -> None:
        ctx = zmq.Context()
        a, b = inproc_pair(ctx, "pump-drain")
        got: list[tuple[list[bytes], float]] = []
        pump = Pump(asyncio.get_running_loop(), lambda i, f, now, uid: got.append((f, now)),
                    lambda now: None)
        try:
            pump.add(a)
            await asyncio.sleep(0.01)  # the first (empty) run
            b.send_multipart([b"x", b"pong"])
            deadline = time.monotonic() + 5
            # Without yielding to the loop, nothing would read it.
            while not (a.getsockopt(zmq.EVENTS) & zmq.POLLIN) and time.monotonic() < deadline:
                time.sleep(0.001)  # noqa: ASYNC251 - must not yield to the loop
            t0 = time.monotonic()
            assert pump.drain() == 1
            assert [f for f, _ in got] == [[b"x", b"pong"]]
            assert got[0][1] >= t0  # stamped at the read
            assert pump.drain() == 0
        finally:
            pump.close()
            b.close(0)
            ctx.term()

    asyncio.run(asyncio.wait_for(main(), 10))


def test_a_socket_full_of_bulk_yields_to_the_others_after_run_bytes() -> None:
    """One run takes at most RUN_BYTES from a socket: a message waiting on
    another socket (the critical class behind a file transfer on low) is
    handled after a few bulk messages, not after the whole backlog."""
    from operone_zmq.aio.pump import RUN_BYTES

    async def main() -> None:
        ctx = zmq.Context()
        bulk_in, bulk_out = inproc_pair(ctx, "pump-bulk", RCVHWM=0, SNDHWM=0)
        crit_in, crit_out = inproc_pair(ctx, "pump-crit", RCVHWM=0, SNDHWM=0)
        chunk = b"x" * 65536
        n = 200  # 12.5 MiB waiting, far past RUN_BYTES
        got: list[int] = []
        pump = Pump(asyncio.get_running_loop(), lambda i, f, now, uid: got.append(i),
                    lambda now: None)
        try:
            bulk = pump.add(bulk_in)  # index 0: read first in a run
            crit = pump.add(crit_in)
            await asyncio.sleep(0.01)
            for _ in range(n):
                bulk_out.send(chunk)
            crit_out.send(b"critical")  # inproc: in its pipe when send returns
            # (No ZMQ_EVENTS read here: it would take the edge of a socket the
            # pump serves, and the pump would never hear of the message.)
            deadline = time.monotonic() + 5
            while len(got) < n + 1:
                assert time.monotonic() < deadline, (len(got), got.count(bulk), got.count(crit))
                await asyncio.sleep(0.001)
            before = got.index(crit)
            assert got.count(bulk) == n
            assert before < n // 2, before  # not after the whole backlog
            assert before <= 2 * RUN_BYTES // len(chunk), before
        finally:
            pump.close()
            for s in (bulk_out, crit_out):
                s.close(0)
            ctx.term()

    asyncio.run(asyncio.wait_for(main(), 10))


def test_a_wake_up_with_nothing_to_read_leaves_the_socket_served() -> None:
    """The first read after the FD signalled skips the ZMQ_EVENTS check.  A
    wake-up for libzmq's own commands (here: connections and their CurveZMQ-
    less handshakes, over TCP) then ends in a failed recv; that must re-arm
    the edge as the check would, or the message that follows is never read."""

    async def main() -> None:
        ctx = zmq.Context()
        router = ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        port = router.bind_to_random_port("tcp://127.0.0.1")
        got: list[list[bytes]] = []
        pump = Pump(asyncio.get_running_loop(), lambda i, f, now, uid: got.append(f),
                    lambda now: None)
        dealers: list[zmq.Socket[bytes]] = []
        try:
            pump.add(router)
            deadline = time.monotonic() + 5
            # Peers that connect and say nothing: each attach is a command.
            while pump.empty_wakeups == 0:
                assert time.monotonic() < deadline, "no wake-up without a message"
                d = ctx.socket(zmq.DEALER)
                d.setsockopt(zmq.LINGER, 0)
                d.connect(f"tcp://127.0.0.1:{port}")
                dealers.append(d)
                await asyncio.sleep(0.02)
            assert got == []
            for i, d in enumerate(dealers):
                d.send(b"m%d" % i)
            while len(got) < len(dealers):
                assert time.monotonic() < deadline, (len(got), len(dealers))
                await asyncio.sleep(0.005)
            assert sorted(f[1] for f in got) == sorted(b"m%d" % i for i in range(len(dealers)))
        finally:
            pump.close()
            for d in dealers:
                d.close(0)
            ctx.term()

    asyncio.run(asyncio.wait_for(main(), 10))


def test_the_input_check_sees_input_and_never_polls_a_closed_socket() -> None:
    """The pump's ZMQ_EVENTS check (by zmq_poll): True only with a message
    waiting, and a closed socket has none (zmq_poll given a closed socket
    would poll fd 0, the process's stdin)."""
    from operone_zmq.aio.pump import _has_input

    ctx = zmq.Context()
    a, b = inproc_pair(ctx, "pump-has-input")
    try:
        assert not _has_input(a)
        b.send_multipart([b"x", b"y"])
        deadline = time.monotonic() + 5
        while not _has_input(a) and time.monotonic() < deadline:
            time.sleep(0.001)
        assert _has_input(a)
        assert a.recv_multipart() == [b"x", b"y"]
        assert not _has_input(a)
        a.close(0)
        assert not _has_input(a)
    finally:
        b.close(0)
        a.close(0)
        ctx.term()
