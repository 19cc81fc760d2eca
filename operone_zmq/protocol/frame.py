"""The type of a message frame as it is received, handled and sent on.

Pure: no sockets, no clock.
"""

from __future__ import annotations

from typing import TypeAlias

__all__ = ["Frame"]

#: One frame of a message: ``bytes``, or -- a frame after the first of at
#: least ``aio.pump.ZERO_COPY_RECV`` bytes, received without a copy -- a
#: read-only memoryview of the zmq.Frame it came in, which the pump sends on
#: by reference.  Code that reads frames uses only what both have: len,
#: slicing, ``==``, hashing and the buffer protocol (msgpack, msgspec,
#: hashlib and nacl take either).  Compiled by mypyc (an optional build),
#: annotations are checked at run time, and this union is what lets a view
#: through where ``bytes`` would raise TypeError.
Frame: TypeAlias = "bytes | memoryview"
