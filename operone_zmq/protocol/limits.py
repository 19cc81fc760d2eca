"""Named limits of wire protocol v1.

Every bound says why it has the value it has.  A decoder that meets a value
past one of these raises :class:`~operone_zmq.errors.ProtocolError` (or
:class:`~operone_zmq.errors.MessageTooLarge`) instead of allocating for it.
"""

from __future__ import annotations

from typing import Final

#: The first frame of every message: magic ``OZ`` and the version byte.
VERSION: Final = 1
TAG: Final = b"OZ\x01"
MAGIC: Final = b"OZ"

#: A header is eight small fields; 1 KiB leaves room for long ids and keeps a
#: hostile header from costing more than a page to reject.
MAX_HEADER_SIZE: Final = 1024

#: Node ids, client ids, tool names and message ids are short printable names;
#: 64 characters is generous for a hostname-derived id and bounds the tables.
MAX_ID_LEN: Final = 64

#: A hop limit like IP's: a mesh of thousands of nodes has a diameter far
#: below this, and a routing loop dies out after at most this many hops.
MAX_TTL: Final = 255
DEFAULT_TTL: Final = 32

#: Default cap on one whole message (all frames).  64 MiB holds a big tool
#: argument or result while bounding what one peer can make us buffer; the
#: node's ``limits.max_message_size`` may lower or raise it (ZMQ enforces it
#: too, through ZMQ_MAXMSGSIZE, before the bytes reach Python).
DEFAULT_MAX_MESSAGE_SIZE: Final = 64 * 1024 * 1024

#: Frames per message after the ROUTER's routing id: tag, header, body and
#: an optional signature.
MIN_FRAMES: Final = 3
MAX_FRAMES: Final = 4

#: A signature frame holds an Ed25519 signature (64 bytes) plus a key id.
MAX_SIGNATURE_SIZE: Final = 256

#: Tool argument maps and option lists in a JOB body.
MAX_CAPABILITIES: Final = 64
MAX_TOOLS_PER_WORKER: Final = 4096

#: A broker listens on its base port and the three after it (one ROUTER per
#: priority class), so this is the highest base port a neighbour can have.
MAX_PEER_BASE_PORT: Final = 65535 - 3

#: The longest host name written out (RFC 1035: 253 characters).
MAX_HOST_LEN: Final = 253

#: What a host to dial may hold: a name's letters, digits, '-', '.' and
#: '_', an IPv6 address's ':' and a zone's '%' (no brackets: the dialler adds
#: them).  Anything else (spaces, '/', '[', a non-ASCII name) cannot be an
#: address libzmq connects to.
_HOST_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:%")


def peer_address_problem(host: object, port: object) -> str | None:
    """Why ``host``:``port`` (a broker's base port) cannot be dialled, or
    None when it can be tried (QUERY ``connect``, ``connect_to_peer``)."""
    if (not isinstance(host, str) or not host or len(host) > MAX_HOST_LEN
            or not _HOST_CHARS.issuperset(host) or host[0] in "-."):
        return (f"host must be a host name or an IP address of at most {MAX_HOST_LEN}"
                f" characters (letters, digits, '-', '.', '_', ':', '%'), not {_shown(host)}")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= MAX_PEER_BASE_PORT:
        return (f"port must be a broker's base port, an integer between 1 and"
                f" {MAX_PEER_BASE_PORT} (it listens on port .. port + 3), not {_shown(port)}")
    return None


def _shown(value: object) -> str:
    """``repr(value)``, clipped: an error message never grows with the input."""
    try:
        text = repr(value)
    except ValueError:  # an int past sys.get_int_max_str_digits()
        return f"a {type(value).__name__} too long to show"
    return text if len(text) <= 80 else text[:77] + "..."


#: The longest a job may ask to run (a week), so deadlines stay finite.
MAX_JOB_TIMEOUT: Final = 7 * 24 * 3600.0

#: msgpack extension type code of an integer beyond 64 bits (its data: the
#: integer in signed big-endian two's complement).  Application ext codes are
#: 0..127; -1 is msgpack's own timestamp.  1 is the first free one.
EXT_BIGINT: Final = 1

#: Longest big integer carried (in bytes of its two's complement form): 64 KiB
#: is 524,288 bits, far beyond any useful number (fib(10000) needs 6,942 bits),
#: and bounds the work a hostile extension can cause (int.from_bytes is linear).
MAX_BIGINT_BYTES: Final = 64 * 1024

#: Elements of one msgpack array or map (pairs) in any body.  A longer
#: container is refused at its header, before anything is allocated for it:
#: a 55 MB JOB holding one array of 55 million empty arrays took seconds to
#: build and ~4 GB of objects.  A million values is far beyond any tool
#: argument or result here (bigger data travels as ``bin``, which costs one
#: allocation whatever its size).  Nesting is bounded by msgpack's own fixed
#: stack of :data:`MAX_DEPTH` levels.
MAX_CONTAINER_LEN: Final = 1_048_576

#: Arrays and maps in one body, all levels together.  Each container limit
#: above alone lets 64 containers of a million empty arrays each through (a
#: 64 MiB body that builds ~4 GB of list objects in the worker that decodes
#: it); an empty container is one byte on the wire but ~60 bytes built.  A
#: body of at most this many bytes cannot exceed it, so only bigger bodies
#: are counted (bin data, the way big payloads travel, is not a container).
MAX_BODY_CONTAINERS: Final = MAX_CONTAINER_LEN

#: Nesting depth msgpack's C decoder allows (its stack is fixed at 1024
#: levels); deeper data is refused as "nested too deeply".
MAX_DEPTH: Final = 1024

#: Named arguments of one JOB (its ``args`` map).  A tool declares at most
#: MAX_TOOL_PARAMS (256) parameters; 4,096 leaves room for ``**kwargs`` tools
#: while bounding the per-key work of reading a JOB envelope.
MAX_JOB_ARGS: Final = 4096

#: JOB bodies at most this large are decoded whole by a broker (a bomb of
#: this size builds at most 64 Ki objects: about a millisecond).  A larger
#: one is read as an *envelope*: its fields, with ``args`` stepped over in C
#: without building a single object (a broker never needs the arguments of a
#: job a worker runs), so one big JOB cannot stall the loop that answers
#: every other client's critical PING.
ENVELOPE_THRESHOLD: Final = 64 * 1024

#: Frames of one whole message a broker or worker reads before it stops
#: keeping them: 1 routing id + the 4 operone frames, and a few more so that
#: a too-long message can still be answered.  The rest is read and dropped.
MAX_MESSAGE_FRAMES: Final = 8
