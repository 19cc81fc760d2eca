"""Socket options and CurveZMQ setup, in one place.

Every socket of operone-zmq is made by :func:`make_socket`, so LINGER, HWMs,
``ROUTER_MANDATORY``, ``MAXMSGSIZE`` and ZMTP heartbeats are set the same way
everywhere.  ZeroMQ errors are translated at this boundary.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import zmq

from ..protocol.limits import DEFAULT_MAX_MESSAGE_SIZE

__all__ = ["CurveKeys", "SocketLimits", "make_socket", "selector_loop_policy"]


@dataclass(frozen=True, slots=True)
class SocketLimits:
    """Per-socket bounds."""

    #: Messages queued per connection before sends report EAGAIN (back-pressure).
    #: 10,000 covers a burst of a few thousand jobs in flight per peer.
    hwm: int = 10_000
    #: Largest accepted message in bytes; ZMQ drops the connection past it.
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    #: Milliseconds unsent messages may delay close().  0: never hang on exit.
    linger_ms: int = 0
    #: ZMTP heartbeats, so a dead TCP peer is noticed even when idle (ms).
    zmtp_heartbeat_ms: int = 2_000


@dataclass(frozen=True, slots=True)
class CurveKeys:
    """This side's Curve key pair (z85) and, for clients, the server's key."""

    public: bytes
    secret: bytes
    server: bytes | None = None


def make_socket(
    ctx: zmq.Context[zmq.Socket[bytes]],
    kind: int,
    *,
    limits: SocketLimits | None = None,
    curve: CurveKeys | None = None,
    curve_server: bool = False,
    identity: bytes | None = None,
    router_handover: bool = False,
) -> zmq.Socket[bytes]:
    """Make a socket with our options set; ``curve_server`` makes it a CurveZMQ
    server (set before bind), otherwise a Curve client of ``curve.server``."""
    lim = limits or SocketLimits()
    s: zmq.Socket[bytes] = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, lim.linger_ms)
    s.setsockopt(zmq.SNDHWM, lim.hwm)
    s.setsockopt(zmq.RCVHWM, lim.hwm)
    s.setsockopt(zmq.MAXMSGSIZE, lim.max_message_size)
    if lim.zmtp_heartbeat_ms:
        s.setsockopt(zmq.HEARTBEAT_IVL, lim.zmtp_heartbeat_ms)
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, lim.zmtp_heartbeat_ms * 3)
        s.setsockopt(zmq.HEARTBEAT_TTL, lim.zmtp_heartbeat_ms * 3)
    if kind == zmq.ROUTER:
        # Unknown identity or full pipe is an error we see, not a silent drop.
        s.setsockopt(zmq.ROUTER_MANDATORY, 1)
        if router_handover:
            s.setsockopt(zmq.ROUTER_HANDOVER, 1)
    if identity is not None:
        s.setsockopt(zmq.IDENTITY, identity)
    if curve is not None:
        s.setsockopt(zmq.CURVE_PUBLICKEY, curve.public)
        s.setsockopt(zmq.CURVE_SECRETKEY, curve.secret)
        if curve_server:
            s.setsockopt(zmq.CURVE_SERVER, 1)
            s.setsockopt(zmq.ZAP_DOMAIN, b"operone")
        else:
            if curve.server is None:
                s.close(0)
                raise ValueError("a Curve client socket needs the server's public key")
            s.setsockopt(zmq.CURVE_SERVERKEY, curve.server)
    return s


def selector_loop_policy() -> None:
    """On Windows, use the selector event loop (pyzmq needs add_reader)."""
    if sys.platform == "win32":  # pragma: no cover - not tested on Linux CI
        import asyncio

        asyncio.set_event_loop_policy(
            asyncio.WindowsSelectorEventLoopPolicy()  # type: ignore[attr-defined]
        )
