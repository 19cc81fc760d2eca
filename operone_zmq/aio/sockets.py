"""Socket options and CurveZMQ setup, in one place.

Every socket of operone-zmq is made by :func:`make_socket`, so LINGER, HWMs,
``ROUTER_MANDATORY``, ``MAXMSGSIZE`` and TCP keepalive are set the same way
everywhere.  ZeroMQ errors are translated at this boundary.

No ZMTP heartbeats (``ZMQ_HEARTBEAT_IVL``): in libzmq 4.3.x the heartbeat
timer writes a PING on a connection whose input is stopped (its pipe is full
or was handed over) after the peer reset it, and the engine aborts the whole
process with ``Assertion failed: !_io_error (stream_engine_base.cpp)``
(zeromq/libzmq #3937, #4364, #4767).  A flooding client that resets its
connection, or an old worker re-dialling with a handed-over identity, was
enough.  Liveness comes from the protocol instead (worker HEARTBEAT both
ways, PING/PONG on peer links, job deadlines for clients) and dead TCP peers
of idle connections are reaped by the kernel's keepalive.
"""

from __future__ import annotations

import random
import socket
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import zmq

from ..protocol.limits import DEFAULT_MAX_MESSAGE_SIZE

__all__ = ["CurveKeys", "SocketLimits", "free_base_port", "make_socket", "selector_loop_policy"]


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
    #: TCP keepalive: seconds idle before the first probe, seconds between
    #: probes, probes lost before the kernel drops the connection.  Reaps the
    #: connections of peers that vanished without a FIN (power loss, cable)
    #: after about 25 s idle; the protocol's own heartbeats notice it sooner on
    #: links that matter.  0 idle: keepalive off.
    keepalive_idle_s: int = 10
    keepalive_interval_s: int = 5
    keepalive_count: int = 3


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
    # Never ZMQ_HEARTBEAT_IVL: see the module docstring (it aborts the process).
    if lim.keepalive_idle_s > 0:
        s.setsockopt(zmq.TCP_KEEPALIVE, 1)
        s.setsockopt(zmq.TCP_KEEPALIVE_IDLE, lim.keepalive_idle_s)
        s.setsockopt(zmq.TCP_KEEPALIVE_INTVL, lim.keepalive_interval_s)
        s.setsockopt(zmq.TCP_KEEPALIVE_CNT, lim.keepalive_count)
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


#: Lowest port free_base_port hands out: above the registered services most
#: machines run.
_PORT_FLOOR = 20_000

#: Port ranges this process handed out lately, (base, span): a free range is
#: free only until its broker binds, so two picks made before either binds
#: (the nodes of a test mesh) must not overlap.  Bounded: the oldest go.
_HANDED_OUT: deque[tuple[int, int]] = deque(maxlen=1024)


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux), else 32768."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768
    return low if low > _PORT_FLOOR + 1_000 else 32_768


def free_base_port(span: int = 4) -> int:
    """A base port with ``span`` consecutive free TCP ports on 127.0.0.1 (for
    tests, benchmarks and the demo: a broker's class ports)."""
    for _ in range(200):
        # Below the kernel's ephemeral range: a port in it can be taken between
        # this check and the broker's bind by any outgoing connection (the
        # suite makes thousands), or by a client connecting to itself.
        base = random.randrange(_PORT_FLOOR, _ephemeral_low() - span)
        if any(base < b + n and b < base + span for b, n in _HANDED_OUT):
            continue
        socks: list[socket.socket] = []
        try:
            for i in range(span):
                s = socket.socket()
                socks.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as libzmq binds
                s.bind(("127.0.0.1", base + i))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        _HANDED_OUT.append((base, span))
        return base
    raise RuntimeError("no free port range found")
