"""Flood a broker frontend as a trusted client, then reset the connection.

Used by tests/integration/test_reliability.py::

    python flood_reset.py HOME PORT SECONDS

Sends pre-encoded echo JOBs through pyzmq's Cython send as fast as it can
(unbounded SNDHWM, so the broker's receive pipe fills and its engine stops
reading), prints ``sent N`` on stderr and SIGKILLs itself: the kernel answers
the broker's unread replies with a TCP reset.  This is the remote half of the
libzmq ``!_io_error`` abort of issue 9.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, cast

import zmq
import zmq.backend

from operone_zmq.config import Home
from operone_zmq.protocol.bodies import JobRequest
from operone_zmq.protocol.codec import Header, MsgType, encode
from operone_zmq.security.keys import load_keypair

#: Messages per burst between clock reads.
BURST = 1000


def main() -> None:
    home, port, seconds = Home(Path(sys.argv[1])), int(sys.argv[2]), float(sys.argv[3])
    kp = load_keypair(home.node_secret)
    assert kp.secret is not None
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 0)  # unbounded on purpose: the flood must not stall here
    s.setsockopt(zmq.CURVE_PUBLICKEY, kp.public)
    s.setsockopt(zmq.CURVE_SECRETKEY, kp.secret)
    s.setsockopt(zmq.CURVE_SERVERKEY, kp.public)
    s.connect(f"tcp://127.0.0.1:{port}")
    h = Header(int(MsgType.JOB), "flood.1", "flood", "", 8, int(time.time() * 1000), 0, None)
    f0, f1, f2 = encode(h, JobRequest("echo", {"x": 1}, timeout=5).pack())
    send = cast(Any, zmq.backend.Socket.send)
    more, last = zmq.SNDMORE | zmq.NOBLOCK, zmq.NOBLOCK
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(BURST):
            send(s, f0, more)
            send(s, f1, more)
            send(s, f2, last)
        n += BURST
    print(f"sent {n}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
