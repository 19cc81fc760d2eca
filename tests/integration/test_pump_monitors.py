"""Pump monitors: a monitor's reader closed while its socket lives must not
block libzmq's I/O thread (libzmq #3575).

libzmq sends each monitor event from the I/O thread with a blocking send on
an internal PAIR socket.  When the reader of that PAIR is gone, the first
event (here: the peer disconnecting) blocks the I/O thread for good, and with
it every TCP connection of the context: a broker that had dialled a neighbour
which then died, and closed the old sockets to dial again, stopped answering
every client (CI, issue 15).  The pump stops a socket's monitor before it
closes the socket or the monitor's reader.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import zmq
from helpers import free_base_port
from zmq.utils.monitor import parse_monitor_message

from operone_zmq.aio.pump import Pump

pytestmark = pytest.mark.integration


def _round_trip(ctx: zmq.Context[zmq.Socket[bytes]], peer_ctx: zmq.Context[zmq.Socket[bytes]],
                port: int, timeout: float) -> bool:
    """A fresh DEALER of ``ctx`` reaches a fresh ROUTER over TCP within ``timeout``."""
    r = peer_ctx.socket(zmq.ROUTER)
    d = ctx.socket(zmq.DEALER)
    try:
        for s in (r, d):
            s.setsockopt(zmq.LINGER, 0)
        r.bind(f"tcp://127.0.0.1:{port}")
        d.connect(f"tcp://127.0.0.1:{port}")
        d.send(b"still alive", zmq.NOBLOCK)
        return bool(r.poll(int(timeout * 1000)))
    finally:
        d.close(0)
        r.close(0)


def _term_or_fail(ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
    """Terminate ``ctx``; a blocked I/O thread would hang term(), so it runs
    in a thread the suite does not wait for past 5 s."""
    t = threading.Thread(target=ctx.term, daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "zmq_ctx_term hung: the I/O thread is blocked"


@pytest.mark.parametrize("first", ["monitor", "socket"])
def test_removing_a_monitored_socket_in_any_order_leaves_the_io_thread_running(
        first: str) -> None:
    base = free_base_port()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    peer_ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    events: list[list[bytes]] = []

    async def main() -> bool:
        pump = Pump(asyncio.get_running_loop(), lambda i, f, now, uid: events.append(f),
                    lambda now: None)
        peer = peer_ctx.socket(zmq.ROUTER)
        peer.setsockopt(zmq.LINGER, 0)
        peer.bind(f"tcp://127.0.0.1:{base}")
        d = ctx.socket(zmq.DEALER)
        d.setsockopt(zmq.LINGER, 0)
        d.setsockopt(zmq.RECONNECT_IVL, 10)
        try:
            idx = pump.add(d)
            midx = pump.add_monitor(idx, zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECTED)
            d.connect(f"tcp://127.0.0.1:{base}")
            d.send(b"hello", zmq.NOBLOCK)
            assert peer.poll(5000), "the DEALER never connected"
            peer.recv_multipart()
            # The broker's re-dial closes both; either may go first.
            pump.remove(midx if first == "monitor" else idx)
            # The peer dies while the DEALER's connection is still up (when
            # the monitor went first): its I/O thread now has an event to send.
            peer.close(0)
            await asyncio.sleep(0.3)
            pump.remove(idx if first == "monitor" else midx)
            ok = await asyncio.to_thread(_round_trip, ctx, peer_ctx, base + 1, 3.0)
        finally:
            pump.close()
            peer.close(0)
        return ok

    try:
        assert asyncio.run(asyncio.wait_for(main(), 20)), (
            "the context's I/O thread is blocked: a new connection went nowhere")
    finally:
        peer_ctx.term()
        _term_or_fail(ctx)


def test_closing_the_pump_stops_every_monitor_first() -> None:
    """pump.close() with live monitors and a peer that dies right after:
    the context terminates (no event blocks the I/O thread)."""
    base = free_base_port()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    peer_ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()

    async def main() -> None:
        pump = Pump(asyncio.get_running_loop(), lambda i, f, now, uid: None, lambda now: None)
        peers = []
        for i in range(4):
            p = peer_ctx.socket(zmq.ROUTER)
            p.setsockopt(zmq.LINGER, 0)
            p.bind(f"tcp://127.0.0.1:{base + i}")
            peers.append(p)
            d = ctx.socket(zmq.DEALER)
            d.setsockopt(zmq.LINGER, 0)
            idx = pump.add(d)
            pump.add_monitor(idx, zmq.EVENT_DISCONNECTED)
            d.connect(f"tcp://127.0.0.1:{base + i}")
            d.send(b"hello", zmq.NOBLOCK)
            assert p.poll(5000)
        pump.close()
        for p in peers:
            p.close(0)
        time.sleep(0.2)  # noqa: ASYNC251 - nothing to yield to

    try:
        asyncio.run(asyncio.wait_for(main(), 20))
    finally:
        peer_ctx.term()
        _term_or_fail(ctx)


def test_removed_indexes_are_reused_and_a_late_monitor_removal_spares_the_new_socket() -> None:
    """A broker re-dials a flapping neighbour with fresh sockets: the pump
    gives their indexes out again instead of growing for ever, and removing
    an old monitor's reader after its socket's index was given to a new
    socket leaves the new socket's monitor alone."""
    base = free_base_port()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    peer_ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    events: dict[int, list[int]] = {}

    def on_message(idx: int, frames: list[Any], now: float, uid: str | None) -> None:
        if len(frames) == 2:  # a monitor event
            events.setdefault(idx, []).append(parse_monitor_message(frames)["event"])

    def dealer() -> zmq.Socket[bytes]:
        d = ctx.socket(zmq.DEALER)
        d.setsockopt(zmq.LINGER, 0)
        return d

    async def main() -> None:
        pump = Pump(asyncio.get_running_loop(), on_message, lambda now: None)
        peer = peer_ctx.socket(zmq.ROUTER)
        peer.setsockopt(zmq.LINGER, 0)
        peer.bind(f"tcp://127.0.0.1:{base}")
        try:
            for _ in range(200):  # 200 re-dials of one socket and its monitor
                idx = pump.add(dealer())
                pump.remove(pump.add_monitor(idx, zmq.EVENT_CONNECTED))
                pump.remove(idx)
            assert len(pump.sockets) == 2
            old = pump.add(dealer())
            old_mon = pump.add_monitor(old, zmq.EVENT_CONNECTED)
            pump.remove(old)  # the socket first; its monitor's reader later
            new = pump.add(dealer())
            assert new == old  # the index is given out again
            new_mon = pump.add_monitor(new, zmq.EVENT_CONNECTED)
            pump.remove(old_mon)  # must not stop the monitor of the new socket
            s = pump.sockets[new]
            assert s is not None
            s.connect(f"tcp://127.0.0.1:{base}")
            deadline = time.monotonic() + 5.0
            while zmq.EVENT_CONNECTED not in events.get(new_mon, []):
                assert time.monotonic() < deadline, "the new socket's monitor was stopped"
                await asyncio.sleep(0.01)
            pump.close()
        finally:
            peer.close(0)

    try:
        asyncio.run(asyncio.wait_for(main(), 20.0))
    finally:
        _term_or_fail(ctx)
        _term_or_fail(peer_ctx)
