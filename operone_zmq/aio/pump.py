"""Pump: drives plain (non-asyncio) ZeroMQ sockets from an asyncio loop.

Why not ``zmq.asyncio``: awaiting once per message costs about 4x in CPU
(DESIGN.md section 11).  The pump registers each socket's ZMQ_FD with
``loop.add_reader`` and, when woken, takes everything already queued with
non-blocking calls, in batches, then lets the owner flush its output.

The ZMQ_FD is edge-triggered: reading ``ZMQ_EVENTS`` or sending can consume
the wake-up while messages wait.  So after every run, and after every send
made outside a run, the pump checks ``ZMQ_EVENTS`` and schedules itself again
when a socket is still readable.

Sends never block: on EAGAIN (high-water mark reached) the message waits in a
bounded per-socket queue and is retried when the socket becomes writable; a
ROUTER's EHOSTUNREACH (unknown peer, ROUTER_MANDATORY) is reported to the
owner.  Exceptions raised by handlers are logged and never stop the pump.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

import structlog
import zmq

__all__ = ["MAX_PENDING", "Pump"]

log = structlog.get_logger("operone.pump")

#: Messages waiting per socket while its peer is slow (after the ZMQ HWM is
#: full).  Past this, send() refuses: the caller answers with Overloaded.
MAX_PENDING = 100_000

#: Messages taken from one socket per run before the next socket gets a turn
#: and the loop gets to run other callbacks; bounds latency under load.
BATCH = 256

#: on_message(socket index, frames, now, uid): ``uid`` is the ZAP User-Id
#: (the peer's Curve key, z85) for messages on sockets added with
#: ``with_user_id=True`` whose routing id is a claimed one (not starting with a
#: zero byte), else None.
OnMessage = Callable[[int, list[bytes], float, "str | None"], None]
OnUnroutable = Callable[[int, list[bytes], float], None]


class Pump:
    """Reads and writes a set of sockets for one owner, on one loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_message: OnMessage,
        after_run: Callable[[float], None],
        *,
        on_unroutable: OnUnroutable | None = None,
        batch: int = BATCH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._loop = loop
        self._on_message = on_message
        self._after_run = after_run
        self._on_unroutable = on_unroutable
        self._batch = batch
        self._clock = clock
        self.sockets: list[zmq.Socket[bytes] | None] = []
        self._fds: list[int] = []
        self._pending: list[deque[list[bytes]]] = []
        self._with_uid: list[bool] = []
        self._scheduled = False
        self._closed = False
        self.dropped = 0
        self.handler_errors = 0

    # ------------------------------------------------------------ sockets
    def add(self, sock: zmq.Socket[bytes], *, with_user_id: bool = False) -> int:
        """Start serving ``sock``; returns its index.  ``with_user_id``: report
        the ZAP User-Id of messages with claimed routing ids (ROUTERs)."""
        fd = int(sock.getsockopt(zmq.FD))
        self.sockets.append(sock)
        self._fds.append(fd)
        self._pending.append(deque())
        self._with_uid.append(with_user_id)
        self._loop.add_reader(fd, self.kick)
        self.kick()
        return len(self.sockets) - 1

    def replace(self, idx: int, sock: zmq.Socket[bytes]) -> None:
        """Swap the socket at ``idx`` (closing the old one)."""
        old = self.sockets[idx]
        if old is not None:
            self._loop.remove_reader(self._fds[idx])
            old.close(0)
        fd = int(sock.getsockopt(zmq.FD))
        self.sockets[idx] = sock
        self._fds[idx] = fd
        self._pending[idx].clear()
        self._loop.add_reader(fd, self.kick)
        self.kick()

    def remove(self, idx: int) -> None:
        """Stop serving the socket at ``idx`` and close it (its index stays
        taken, so other indices do not move)."""
        s = self.sockets[idx]
        if s is None:
            return
        try:
            self._loop.remove_reader(self._fds[idx])
        except Exception:
            pass
        s.close(0)
        self.sockets[idx] = None
        self._pending[idx].clear()

    def close(self) -> None:
        """Stop serving and close every socket (LINGER as set, normally 0)."""
        self._closed = True
        for i, s in enumerate(self.sockets):
            if s is not None:
                try:
                    self._loop.remove_reader(self._fds[i])
                except Exception:  # loop already closed
                    pass
                s.close(0)
                self.sockets[i] = None

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    # ------------------------------------------------------------ running
    def kick(self) -> None:
        """Schedule a run soon (coalesced)."""
        if not self._scheduled and not self._closed:
            self._scheduled = True
            self._loop.call_soon(self._run)

    def run_now(self) -> None:
        """Drain immediately (used by owners right after they send)."""
        self._scheduled = True
        self._run()

    def _run(self) -> None:
        self._scheduled = False
        if self._closed:
            return
        now = self._clock()
        batch = self._batch
        more = False
        on_message = self._on_message
        for idx, s in enumerate(self.sockets):
            if s is None:
                continue
            n = 0
            with_uid = self._with_uid[idx]
            while n < batch:
                uid: str | None = None
                try:
                    if with_uid:
                        # First frame as a zmq.Frame: it carries the message's
                        # metadata (ZAP User-Id); the rest as bytes.
                        f0 = s.recv(zmq.NOBLOCK, copy=False)
                        rid = f0.bytes
                        frames = [rid]
                        while s.getsockopt(zmq.RCVMORE):
                            frames.append(s.recv(zmq.NOBLOCK))
                        if rid[:1] != b"\x00":
                            try:
                                uid = str(f0.get("User-Id"))
                            except zmq.ZMQError:
                                uid = None
                    else:
                        frames = s.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                except zmq.ZMQError as exc:
                    log.warning("recv_failed", error=str(exc))
                    break
                n += 1
                try:
                    on_message(idx, frames, now, uid)
                except Exception:
                    self.handler_errors += 1
                    log.exception("handler_failed", socket=idx)
            if n == batch:
                more = True
        try:
            self._after_run(now)
        except Exception:
            self.handler_errors += 1
            log.exception("after_run_failed")
        for idx, q in enumerate(self._pending):
            if q:
                self._retry(idx, now)
        if self.closed:  # the owner may have closed us in after_run
            return
        if more:
            self.kick()
            return
        for s in self.sockets:
            if s is not None and int(s.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                self.kick()
                return

    # -------------------------------------------------------------- sending
    def send(self, idx: int, frames: list[bytes], now: float | None = None) -> bool:
        """Send without blocking; False when the socket's backlog is full."""
        q = self._pending[idx]
        if q:
            if len(q) >= MAX_PENDING:
                self.dropped += 1
                return False
            q.append(frames)
            return True
        s = self.sockets[idx]
        if s is None:
            self.dropped += 1
            return False
        try:
            s.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            q.append(frames)
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                if self._on_unroutable is not None:
                    self._on_unroutable(idx, frames, self._clock() if now is None else now)
                else:
                    self.dropped += 1
            else:
                self.dropped += 1
                log.warning("send_failed", socket=idx, error=str(exc))
        return True

    def _retry(self, idx: int, now: float) -> None:
        s = self.sockets[idx]
        q = self._pending[idx]
        if s is None:
            q.clear()
            return
        while q:
            frames = q[0]
            try:
                s.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError as exc:
                q.popleft()
                if exc.errno == zmq.EHOSTUNREACH and self._on_unroutable is not None:
                    self._on_unroutable(idx, frames, now)
                else:
                    self.dropped += 1
                continue
            q.popleft()

    def pending(self, idx: int) -> int:
        """Messages waiting to be sent on socket ``idx``."""
        return len(self._pending[idx])
