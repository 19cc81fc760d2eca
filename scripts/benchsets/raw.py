"""The baseline: raw pyzmq on a drained asyncio loop over plain sockets.

A broker that forwards without decoding (frontend ROUTER ``[client,
payload]`` -> backend ROUTER ``[worker, client, payload]``, round robin), a
worker that echoes, relays that forward a hop over CurveZMQ, and a DEALER
client; all of them on asyncio with *drained* sockets (:class:`Drain`).  The
broker, worker and relays are child processes: hidden sub-commands of
``scripts/bench.py`` (:data:`HIDDEN`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

#: Messages taken from one socket per drain run (as operone's Pump does).
BATCH = 256


#: Socket high-water marks of the raw stack (operone's SocketLimits default).
HWM = 10_000


def _write_ready(path: Path, info: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(path)


def _raw_socket(ctx: zmq.Context[zmq.Socket[bytes]], kind: int) -> zmq.Socket[bytes]:
    s: zmq.Socket[bytes] = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, HWM)
    s.setsockopt(zmq.RCVHWM, HWM)
    return s


class Drain:
    """The drained-socket loop of the baseline, written as plainly as it can be.

    ``handlers[i]`` handles one message of ``sockets[i]``; sends go out at
    once with NOBLOCK (a full pipe queues them here for the next run).  The
    ZMQ_FD is edge-triggered, so every run ends by checking ZMQ_EVENTS, and
    :meth:`kick` must follow any send made outside a run."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.sockets: list[zmq.Socket[bytes]] = []
        self.handlers: list[Callable[[list[bytes]], None]] = []
        self.backlog: dict[zmq.Socket[bytes], deque[list[bytes]]] = {}
        self._scheduled = False
        self.closed = False

    def add(self, sock: zmq.Socket[bytes], handler: Callable[[list[bytes]], None]) -> None:
        self.sockets.append(sock)
        self.handlers.append(handler)
        self.backlog[sock] = deque()
        self.loop.add_reader(sock.getsockopt(zmq.FD), self.kick)
        self.kick()

    def kick(self) -> None:
        if not self._scheduled and not self.closed:
            self._scheduled = True
            self.loop.call_soon(self._run)

    def send(self, sock: zmq.Socket[bytes], frames: list[bytes]) -> None:
        q = self.backlog[sock]
        if q:
            q.append(frames)
            return
        try:
            sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            q.append(frames)

    def _run(self) -> None:
        self._scheduled = False
        if self.closed:
            return
        more = False
        for sock, handle in zip(self.sockets, self.handlers, strict=True):
            for _ in range(BATCH):
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                handle(frames)
            else:
                more = True
        waiting = False
        for sock, q in self.backlog.items():
            while q:
                try:
                    sock.send_multipart(q[0], zmq.NOBLOCK)
                except zmq.Again:
                    waiting = True
                    break
                q.popleft()
        if more or any(s.getsockopt(zmq.EVENTS) & zmq.POLLIN for s in self.sockets):
            self.kick()
        elif waiting:
            self.loop.call_later(0.001, self.kick)

    def close(self) -> None:
        self.closed = True
        for s in self.sockets:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(s.getsockopt(zmq.FD))
            s.close(0)


async def _serve_until_signalled(setup: Callable[[asyncio.AbstractEventLoop], Drain],
                                 ready: Callable[[], None] | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()

    def orphaned() -> None:  # the benchmark died without stopping us: stop too
        if os.getppid() != parent:
            stop.set()
        else:
            loop.call_later(1.0, orphaned)

    loop.call_later(1.0, orphaned)
    drain = setup(loop)
    if ready is not None:
        ready()
    try:
        await stop.wait()
    finally:
        drain.close()


def raw_broker_main(argv: list[str]) -> int:
    """Hidden sub-command: the raw broker (frontend over TCP + Curve, backend ipc)."""
    p = argparse.ArgumentParser(prog="bench.py _raw-broker")
    p.add_argument("--backend", required=True)
    p.add_argument("--public", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--ready-file", type=Path, required=True)
    a = p.parse_args(argv)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    port = 0

    def setup(loop: asyncio.AbstractEventLoop) -> Drain:
        nonlocal port
        d = Drain(loop)
        # A throwaway key pair made for this run (so passing it in argv is fine).
        fe = _raw_socket(ctx, zmq.ROUTER)
        fe.setsockopt(zmq.CURVE_SERVER, 1)
        fe.setsockopt(zmq.CURVE_PUBLICKEY, a.public.encode())
        fe.setsockopt(zmq.CURVE_SECRETKEY, a.secret.encode())
        port = fe.bind_to_random_port("tcp://127.0.0.1")
        be = _raw_socket(ctx, zmq.ROUTER)
        be.bind(a.backend)
        workers: list[bytes] = []
        rr = [0]
        send = d.send

        def on_frontend(frames: list[bytes]) -> None:  # [client, payload]
            if not workers:
                return  # the bench waits for the worker first
            i = rr[0] = (rr[0] + 1) % len(workers)
            send(be, [workers[i], *frames])

        def on_backend(frames: list[bytes]) -> None:  # [worker, client, payload]
            if len(frames) == 2 and frames[1] == b"READY":
                workers.append(frames[0])
                send(be, [frames[0], b"OK"])
                return
            send(fe, frames[1:])

        d.add(fe, on_frontend)
        d.add(be, on_backend)
        return d

    try:
        asyncio.run(_serve_until_signalled(
            setup, lambda: _write_ready(a.ready_file, {"port": port, "pid": os.getpid()})))
    finally:
        ctx.term()
    return 0


def _relay_sockets(ctx: zmq.Context[zmq.Socket[bytes]], public: bytes, secret: bytes,
                   upstream_port: int, dealer_keys: tuple[bytes, bytes],
                   port: int = 0) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes], int]:
    """A relay's two sockets: a CurveZMQ ROUTER frontend with the server keys
    ``public``/``secret`` on 127.0.0.1 (``port``; 0: a random one), and a
    CurveZMQ DEALER with ``dealer_keys`` to ``upstream_port``, whose server
    key is ``public``.  Returns them and the frontend's port."""
    fe = _raw_socket(ctx, zmq.ROUTER)
    fe.setsockopt(zmq.CURVE_SERVER, 1)
    fe.setsockopt(zmq.CURVE_PUBLICKEY, public)
    fe.setsockopt(zmq.CURVE_SECRETKEY, secret)
    if port:
        fe.bind(f"tcp://127.0.0.1:{port}")
    else:
        port = fe.bind_to_random_port("tcp://127.0.0.1")
    up = _raw_socket(ctx, zmq.DEALER)
    up.setsockopt(zmq.CURVE_PUBLICKEY, dealer_keys[0])
    up.setsockopt(zmq.CURVE_SECRETKEY, dealer_keys[1])
    up.setsockopt(zmq.CURVE_SERVERKEY, public)
    up.connect(f"tcp://127.0.0.1:{upstream_port}")
    return fe, up, port


def raw_relay_main(argv: list[str]) -> int:
    """Hidden sub-command: a raw relay, the baseline of one broker hop (mesh set).

    A CurveZMQ ROUTER frontend whose messages go out unchanged on a CurveZMQ
    DEALER to the next stage (a relay or the raw broker), and back: each
    ROUTER on the way prepends the sender's identity, so replies retrace the
    path with no decoding here."""
    p = argparse.ArgumentParser(prog="bench.py _raw-relay")
    p.add_argument("--upstream-port", type=int, required=True)
    p.add_argument("--public", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--ready-file", type=Path, required=True)
    a = p.parse_args(argv)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    port = 0

    def setup(loop: asyncio.AbstractEventLoop) -> Drain:
        nonlocal port
        d = Drain(loop)
        fe, up, port = _relay_sockets(ctx, a.public.encode(), a.secret.encode(),
                                      a.upstream_port, zmq.curve_keypair())
        send = d.send
        d.add(fe, lambda frames: send(up, frames))  # [client..., payload] on up
        d.add(up, lambda frames: send(fe, frames))  # [client..., payload] back
        return d

    try:
        asyncio.run(_serve_until_signalled(
            setup, lambda: _write_ready(a.ready_file, {"port": port, "pid": os.getpid()})))
    finally:
        ctx.term()
    return 0


def raw_client_relay_main(argv: list[str]) -> int:
    """Hidden sub-command: a raw relay between one operone client and its
    broker (mesh set): a CurveZMQ ROUTER serving as the broker's normal-class
    port (``--port``, the node's keys), whose messages go out unchanged on a
    CurveZMQ DEALER to the broker's (the node's keys: a trusted client), and
    the answers back to the one routing id last heard.  An operone broker
    takes no envelope, so this carries a single client: what a raw relay
    costs inside operone's own traffic, decoding nothing."""
    p = argparse.ArgumentParser(prog="bench.py _raw-client-relay")
    p.add_argument("--upstream-port", type=int, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--public", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--ready-file", type=Path, required=True)
    a = p.parse_args(argv)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pub, sec = a.public.encode(), a.secret.encode()

    def setup(loop: asyncio.AbstractEventLoop) -> Drain:
        d = Drain(loop)
        # (The node's own keys on both sides: a client the broker trusts.)
        fe, up, _ = _relay_sockets(ctx, pub, sec, a.upstream_port, (pub, sec), a.port)
        send = d.send
        client = [b""]

        def down(frames: list[bytes]) -> None:  # [client, operone frames...]
            client[0] = frames[0]
            send(up, frames[1:])

        d.add(fe, down)
        d.add(up, lambda frames: send(fe, [client[0], *frames]))
        return d

    try:
        asyncio.run(_serve_until_signalled(
            setup, lambda: _write_ready(a.ready_file, {"port": a.port, "pid": os.getpid()})))
    finally:
        ctx.destroy(linger=0)  # (a socket a failed setup left open must not hang it)
    return 0


def raw_worker_main(argv: list[str]) -> int:
    """Hidden sub-command: the raw worker (echoes every request)."""
    p = argparse.ArgumentParser(prog="bench.py _raw-worker")
    p.add_argument("--backend", required=True)
    p.add_argument("--ready-file", type=Path, required=True)
    a = p.parse_args(argv)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()

    def setup(loop: asyncio.AbstractEventLoop) -> Drain:
        d = Drain(loop)
        s = _raw_socket(ctx, zmq.DEALER)
        s.setsockopt(zmq.IDENTITY, f"raw-w{os.getpid()}".encode())
        s.connect(a.backend)
        send = d.send

        def on_message(frames: list[bytes]) -> None:  # [client, payload]
            if len(frames) == 1 and frames[0] == b"OK":
                _write_ready(a.ready_file, {"pid": os.getpid()})
                return
            send(s, frames)

        d.add(s, on_message)
        send(s, [b"READY"])
        d.kick()
        return d

    try:
        asyncio.run(_serve_until_signalled(setup, None))
    finally:
        ctx.term()
    return 0


class RawClient:
    """The baseline's client: a drained CurveZMQ DEALER; a request is an
    8-byte id and a body in one frame, answered by a future."""

    def __init__(self, port: int, server_public: bytes, frames: int = 1) -> None:
        self.loop = asyncio.get_running_loop()
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        pub, sec = zmq.curve_keypair()
        s = _raw_socket(self.ctx, zmq.DEALER)
        s.setsockopt(zmq.CURVE_PUBLICKEY, pub)
        s.setsockopt(zmq.CURVE_SECRETKEY, sec)
        s.setsockopt(zmq.CURVE_SERVERKEY, server_public)
        s.connect(f"tcp://127.0.0.1:{port}")
        self.sock = s
        self.pending: dict[bytes, asyncio.Future[bytes]] = {}
        self._seq = 0
        #: Frames per request: 1 (id and body in one), 2 ([id + a 60-byte header, body]) or
        #: 3 (operone's shape: [id, a 60-byte header, body]).
        self._frames = frames
        self._header = b"h" * 60
        self.drain = Drain(self.loop)
        self.drain.add(s, self._on_reply)

    def submit(self, body: bytes) -> asyncio.Future[bytes]:
        self._seq += 1
        rid = self._seq.to_bytes(8, "little")
        fut: asyncio.Future[bytes] = self.loop.create_future()
        self.pending[rid] = fut
        if self._frames == 1:
            self.drain.send(self.sock, [rid + body])
        elif self._frames == 2:
            self.drain.send(self.sock, [rid + self._header, body])
        else:
            self.drain.send(self.sock, [rid, self._header, body])
        self.drain.kick()  # a send may have eaten the FD's edge
        return fut

    def _on_reply(self, frames: list[bytes]) -> None:
        payload = frames[0]
        fut = self.pending.pop(payload[:8], None)
        if fut is not None and not fut.done():
            fut.set_result(payload)

    def close(self) -> None:
        self.drain.close()
        for f in self.pending.values():
            f.cancel()
        self.ctx.term()


#: Hidden sub-commands of bench.py: the baseline's child processes.
HIDDEN: dict[str, Callable[[list[str]], int]] = {
    "_raw-broker": raw_broker_main,
    "_raw-worker": raw_worker_main,
    "_raw-relay": raw_relay_main,
    "_raw-client-relay": raw_client_relay_main,
}
