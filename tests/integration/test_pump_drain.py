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

from operone_zmq.aio.pump import Pump

pytestmark = pytest.mark.integration


def test_drain_reads_what_waits_before_the_loop_dispatches_it() -> None:
    async def main() -> None:
        ctx = zmq.Context()
        a = ctx.socket(zmq.PAIR)
        b = ctx.socket(zmq.PAIR)
        for s in (a, b):
            s.setsockopt(zmq.LINGER, 0)
        a.bind("inproc://pump-drain")
        b.connect("inproc://pump-drain")
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
