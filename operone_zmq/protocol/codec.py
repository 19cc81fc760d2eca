"""Wire protocol v1: message types, the header, and the strict frame codec.

A message is a list of frames (after the ROUTER routing id, when there is one)::

    [tag][header][body]            or    [tag][header][body][signature]

* ``tag`` is ``b"OZ"`` followed by one version byte (``0x01``).
* ``header`` is a msgpack array of exactly eight fields::

      [type, id, src, dst, ttl, ts, cls, corr]

  ======  ===========  ======================================================
  field   msgpack      meaning
  ======  ===========  ======================================================
  type    int          a :class:`MsgType` value
  id      str 1..64    message id; for job messages the job id
  src     str 0..64    origin node or client id ("" when not yet known)
  dst     str 0..64    destination node id ("" = the receiving broker)
  ttl     int 0..255   hops left; a relay decrements it and drops at 0
  ts      int          origin wall-clock time, milliseconds since the epoch
  cls     int 0..3     priority class (0 critical .. 3 low)
  corr    str or nil   id of the request this message answers
  ======  ===========  ======================================================

* ``body`` is opaque bytes whose layout depends on ``type`` (see
  :mod:`operone_zmq.protocol.bodies`); relays never decode it.
* ``signature`` is optional (message signing, see docs/security.md).

Rules: every decode checks frame count, tag, version, header shape, every
field's type and range, and sizes, and raises :class:`ProtocolError` (or a
subclass) on the first violation.  Encoding is the mirror image and assumes
its inputs are valid (they come from our own code).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Annotated, Any, Final, NamedTuple

import msgpack

from ..errors import MessageTooLarge, ProtocolError, UnsupportedVersion
from .bodies import decode_failure
from .frame import Frame
from .limits import MAGIC, MAX_FRAMES, MAX_HEADER_SIZE, MAX_ID_LEN, MAX_SIGNATURE_SIZE, TAG

__all__ = [
    "NO_ID",
    "TAG",
    "Header",
    "HeaderFields",
    "Message",
    "MsgType",
    "best_effort_id",
    "decode",
    "decode_header",
    "encode",
    "encode_header",
    "encode_relayed_header",
    "make_header",
    "sig_from_tag",
    "sig_into_tag",
]


class MsgType(enum.IntEnum):
    """Every message type of protocol v1 and its numeric code."""

    # peer links between brokers (the mesh)
    HELLO = 1
    WELCOME = 2
    PING = 3
    PONG = 4
    LSA = 5
    BYE = 6
    # several messages to one destination in one (revision 7; protocol/batch.py)
    BATCH = 7
    # jobs (client <-> broker <-> worker, and between brokers)
    JOB = 10
    RESULT = 11
    ERROR = 12
    CANCEL = 13
    PROGRESS = 14
    # data to every node
    BROADCAST = 20
    # worker <-> its local broker
    READY = 30
    HEARTBEAT = 31
    DISCONNECT = 32
    # client <-> broker, cluster state
    QUERY = 40
    REPLY = 41


_TYPES: Final = frozenset(int(t) for t in MsgType)


class Header(NamedTuple):
    """The eight header fields, in wire order."""

    type: int
    id: str
    src: str
    dst: str
    ttl: int
    ts: int
    cls: int
    corr: str | None


#: A header's eight fields as a plain tuple, in wire order (what the hot
#: paths encode, and hand on beside the bytes; a Header is one too).
HeaderFields = tuple[int, str, str, str, int, int, int, str | None]


class Message(NamedTuple):
    """A decoded message: its header and the untouched body and signature."""

    header: Header
    body: Frame
    sig: Frame | None = None


# msgpack.packb, not a shared Packer: a Packer keeps a buffer and is not
# safe to share between the threads of a worker pool.
_packb: Final[Callable[[Any], bytes]] = msgpack.packb
_unpackb: Final = msgpack.unpackb

# The header of a well-formed message is decoded and validated in one C call
# by msgspec (another implementation of msgpack), typed as the table above
# says; measured at 0.4-0.7 us against 1.9 us for msgpack plus the checks in
# Python.  Anything it refuses goes through the checks below, which name
# the first violation, so both accept and refuse exactly the same headers.
_fast_header: Callable[[Frame], tuple[Any, ...]] | None
try:
    import msgspec
except ImportError:  # pragma: no cover - msgspec is a dependency; this is a fallback
    _fast_header = None
else:
    _Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LEN)]
    _Name = Annotated[str, msgspec.Meta(max_length=MAX_ID_LEN)]
    _fast_header = msgspec.msgpack.Decoder(
        tuple[int, _Id, _Name, _Name, Annotated[int, msgspec.Meta(ge=0, le=255)], int,
              Annotated[int, msgspec.Meta(ge=0, le=3)], _Name | None]).decode
_new_header: Final = tuple.__new__
_new_message: Final = tuple.__new__

# Encoded by msgspec too: a tuple of ints, strs and nil is the same msgpack
# array either way (the smallest forms), 0.2 us against 2 us for
# msgpack.packb, once per message sent.  msgpack stays the fallback.
_fast_encode: Callable[[Any], bytes]
if _fast_header is not None:
    _fast_encode = msgspec.msgpack.Encoder().encode
else:  # pragma: no cover - msgspec is a dependency
    def _fast_encode(h: Any) -> bytes:
        return _packb(list(h))


def encode_header(h: Header | tuple[Any, ...]) -> bytes:
    """Encode a header tuple as the msgpack array of frame 1."""
    if type(h) is Header or type(h) is tuple:
        try:
            return _fast_encode(h)
        except (TypeError, ValueError, OverflowError):  # not ours: msgpack says why
            pass
    return _packb(list(h))


def make_header(t: int, mid: str, src: str, dst: str, ttl: int, ts: int, cls: int,
                corr: str | None) -> Header:
    """``Header(...)`` without the NamedTuple's ``__new__``, which stays
    interpreted Python in the compiled build (about 3,000 instructions)."""
    h: Header = _new_header(Header, (t, mid, src, dst, ttl, ts, cls, corr))
    return h


def encode_relayed_header(h: Header) -> bytes:
    """``h`` with its ttl lowered by one, encoded: what a relay sends on
    (a NamedTuple's ``_replace`` is interpreted Python, 4 us per hop)."""
    return encode_header((h.type, h.id, h.src, h.dst, h.ttl - 1, h.ts, h.cls, h.corr))


def encode(header: Header, body: bytes = b"", sig: bytes | None = None) -> list[Frame]:
    """Encode a message as its frames (without a routing id)."""
    if sig is None:
        return [TAG, encode_header(header), body]
    return [TAG, encode_header(header), body, sig]


def sig_into_tag(frames: list[Frame], start: int = 0) -> list[Frame]:
    """A 4-frame message (from ``start``) as 3: its signature's bytes after
    the tag in frame 0 (revision 9, docs/protocol.md section 3), for a
    neighbour that said ``sig_in_tag`` on the connection.  Each frame costs
    both ends more than this copy (libzmq seals each with CurveZMQ on its
    own, and the receiver reads each into an object): measured with
    callgrind on a relay, a routed JOB and its RESULT with their signature
    frames cost ~30k instructions more than without, ~9k of them the loop's
    and ~21k libzmq's I/O thread's."""
    tag = TAG + frames[start + 3]
    if start:
        return [*frames[:start], tag, frames[start + 1], frames[start + 2]]
    return [tag, frames[1], frames[2]]


def sig_from_tag(frames: list[Frame], start: int = 0) -> list[Frame]:
    """The 4 frames a 3-frame message (from ``start``) whose frame 0 is longer
    than a tag stands for: the tag, header, body, and what followed the tag
    as the signature frame (checked by :func:`decode` as if it had come as
    a frame: the tag's bytes, the signature's size)."""
    first = frames[start]
    return [*frames[:start], first[:3], frames[start + 1], frames[start + 2], first[3:]]


def _check_tag(tag: Frame) -> None:
    if tag != TAG:
        if len(tag) == 3 and tag[:2] == MAGIC:
            raise UnsupportedVersion(
                f"protocol version {tag[2]} is not supported (this node speaks version 1)"
            )
        raise ProtocolError("first frame is not an operone version tag (expected 4f 5a 01)")


def decode_header(raw: Frame) -> Header:
    """Decode and validate frame 1."""
    if len(raw) > MAX_HEADER_SIZE:
        raise MessageTooLarge(f"header is {len(raw)} bytes; the limit is {MAX_HEADER_SIZE}")
    if _fast_header is not None:
        try:
            fast = _fast_header(raw)
        except Exception:  # refused: the checks below say why
            pass
        else:
            if fast[0] in _TYPES:
                return _new_header(Header, fast)
    try:
        h = _unpackb(raw, use_list=False, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(decode_failure("header", exc)) from exc
    if type(h) is not tuple or len(h) != 8:
        raise ProtocolError("header must be a msgpack array of 8 fields")
    t, mid, src, dst, ttl, ts, cls, corr = h
    if type(t) is not int:
        raise ProtocolError("header type must be an integer message type code")
    if t not in _TYPES:
        raise ProtocolError(f"unknown message type {t}")
    if type(mid) is not str or not 0 < len(mid) <= MAX_ID_LEN:
        raise ProtocolError("header id must be a string of 1..64 characters")
    if type(src) is not str or len(src) > MAX_ID_LEN:
        raise ProtocolError("header src must be a string of at most 64 characters")
    if type(dst) is not str or len(dst) > MAX_ID_LEN:
        raise ProtocolError("header dst must be a string of at most 64 characters")
    if type(ttl) is not int or not 0 <= ttl <= 255:
        raise ProtocolError("header ttl must be an integer 0..255")
    if type(ts) is not int:
        raise ProtocolError("header ts must be an integer (ms since the epoch)")
    if type(cls) is not int or not 0 <= cls <= 3:
        raise ProtocolError("header cls must be a priority class 0..3")
    if corr is not None and (type(corr) is not str or len(corr) > MAX_ID_LEN):
        raise ProtocolError("header corr must be nil or a string of at most 64 characters")
    return Header(t, mid, src, dst, ttl, ts, cls, corr)


def decode(frames: list[Frame], start: int = 0) -> Message:
    """Decode the frames of one message, starting at index ``start`` (1 when
    ``frames[0]`` is a ROUTER routing id)."""
    n = len(frames) - start
    if n < 3 or n > MAX_FRAMES:
        raise ProtocolError(f"a message has 3 or 4 frames, got {max(n, 0)}")
    if frames[start] != TAG:
        _check_tag(frames[start])
    # decode_header, its fast path inlined (once per message on every hop).
    raw = frames[start + 1]
    header: Header | None = None
    if _fast_header is not None and len(raw) <= MAX_HEADER_SIZE:
        try:
            fast = _fast_header(raw)
        except Exception:  # refused: decode_header says why
            pass
        else:
            if fast[0] in _TYPES:
                header = _new_header(Header, fast)
    if header is None:
        header = decode_header(raw)
    if n == 4:
        sig = frames[start + 3]
        if len(sig) > MAX_SIGNATURE_SIZE:
            raise MessageTooLarge(
                f"signature is {len(sig)} bytes; the limit is {MAX_SIGNATURE_SIZE}"
            )
        return _new_message(Message, (header, frames[start + 2], sig))
    return _new_message(Message, (header, frames[start + 2], None))


#: The id of an ERROR about a message whose own id could not be read.
NO_ID: Final = "-"

#: Bytes of the header frame that best_effort_id reads: an 8-array header
#: (<= 5 bytes), a type (an int, <= 9 bytes) and an id of 64 characters of
#: at most 4 UTF-8 bytes each (<= 258 bytes) always fit, and a huge frame
#: costs nothing more.
_ID_WINDOW: Final = 512


def best_effort_id(frames: list[Frame], start: int = 0) -> str:
    """The id to put in an ERROR about the undecodable message ``frames``.

    The rule of docs/protocol.md section 6: when the second operone frame
    (``frames[start + 1]``) begins with a msgpack array of at least 2
    elements whose element 0 is an integer and element 1 a str of 1..64
    characters, that str; otherwise :data:`NO_ID`.  Nothing else about the
    message matters (its tag, frame count, the size of any frame, the other
    header fields), so a ``too_large``, ``version`` or ``protocol`` error
    can be matched to its request whenever the header's id is readable.
    """
    if len(frames) - start < 2:
        return NO_ID
    u = msgpack.Unpacker(raw=False, max_buffer_size=_ID_WINDOW)
    u.feed(frames[start + 1][:_ID_WINDOW])
    try:
        if u.read_array_header() < 2:
            return NO_ID
        t = u.unpack()
        mid = u.unpack()
    except Exception:  # msgpack raises several unrelated types
        return NO_ID
    if type(t) is int and type(mid) is str and 0 < len(mid) <= MAX_ID_LEN:
        return mid
    return NO_ID
