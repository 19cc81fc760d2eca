"""Pump: big frames are received without a copy and sent on by reference.

A frame of at least ZERO_COPY_RECV bytes (after the first) reaches the owner
as a memoryview of its zmq.Frame; sending that view sends the Frame itself
(libzmq counts references).  Nothing the pump sends goes through pyzmq's
zero-copy path for Python buffers, whose frees run through pyzmq's
garbage-collector thread (28-38 us of CPU per 64 KiB message, issue 12).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import zmq
import zmq.utils.garbage
from helpers import inproc_pair

from operone_zmq.aio.pump import ZERO_COPY_RECV, Pump

pytestmark = pytest.mark.integration


def test_big_frames_come_as_views_and_nothing_goes_through_pyzmq_gc(
        monkeypatch: pytest.MonkeyPatch) -> None:
    stored: list[Any] = []
    real_store = zmq.utils.garbage.gc.store

    def store(data: Any, event: Any = None) -> int:
        stored.append(type(data))
        return real_store(data, event)

    # A spy on the real collector: every Python buffer pyzmq sends without
    # copying is stored there until libzmq frees it.
    monkeypatch.setattr(zmq.utils.garbage.gc, "store", store)

    async def main() -> None:
        ctx = zmq.Context()
        a_in, a_out = inproc_pair(ctx, "zc-a")
        b_in, b_out = inproc_pair(ctx, "zc-b")
        socks = [a_in, a_out, b_in, b_out]
        got: list[list[bytes]] = []
        arrived = asyncio.Event()

        def on_message(i: int, f: list[bytes], now: float, uid: str | None) -> None:
            got.append(f)
            arrived.set()

        pump = Pump(asyncio.get_running_loop(), on_message, lambda now: None)
        big = bytes(range(256)) * (ZERO_COPY_RECV // 256 + 1)
        small = b"s" * (ZERO_COPY_RECV - 1)
        huge = b"h" * (1 << 17)  # past pyzmq's own copy threshold (64 KiB)
        try:
            pump.add(a_in)
            fwd = pump.add(b_in)
            a_out.send_multipart([b"tag", small, big])
            await asyncio.wait_for(arrived.wait(), 5)
            assert len(got) == 1
            tag, s, view = got[0]
            assert type(tag) is bytes and type(s) is bytes and s == small
            assert type(view) is memoryview and isinstance(view.obj, zmq.Frame)
            assert view == big
            # Sent on: the view as its Frame, bytes (big ones too) copied.
            assert pump.send(fwd, [b"tag", view, huge, small])
            assert b_out.poll(5000)
            assert b_out.recv_multipart() == [b"tag", big, huge, small]
            assert stored == []
        finally:
            pump.close()
            for s in socks:
                s.close(0)
            ctx.term()

    asyncio.run(asyncio.wait_for(main(), 10))
