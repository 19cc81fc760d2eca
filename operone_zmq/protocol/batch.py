"""BATCH (v1 revision 7): several messages to one destination in one ZeroMQ message.

A BATCH is a normal 3-frame message (``[tag][header][body]``) whose header
has type :data:`~operone_zmq.protocol.codec.MsgType.BATCH` and whose body is
a msgpack array of the inner messages, each an array of 2 or 3 ``bin``:
``[header, body]`` or ``[header, body, signature]`` -- the frames the
message would have had alone, without its tag (the BATCH's tag covers it).

Rules (docs/protocol.md section 5.20):

* A node sends BATCH only to a connection that said it accepts one (a
  worker's READY ``batch: true``, a broker's PONG ``batch: true`` to a
  client, a client by sending a BATCH itself, a neighbour broker's HELLO or
  WELCOME ``batch: true`` on that link); everyone else gets singles.
* A receiver unpacks a BATCH and handles each inner message exactly as if it
  had arrived alone on the same connection; a BATCH that is not well formed
  (not an array of 2..3-bin arrays, more than :data:`MAX_BATCH` messages, a
  BATCH inside) is refused whole, like any malformed message.  An inner
  message that is bad is refused alone, by its own checks.
* The sender groups only what one flush of its outbox holds for one
  destination (socket and routing id), at most :data:`MAX_BATCH_SEND`
  messages and :data:`MAX_BATCH_BYTES` bytes per BATCH; a message larger than
  :data:`MAX_BATCHED_MESSAGE` goes alone (its body stays a zero-copy frame).

Pure: no sockets, no clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Final, cast

import msgpack

from ..errors import ProtocolError
from .bodies import decode_failure
from .codec import MsgType, encode_header
from .frame import Frame
from .limits import MAX_HEADER_SIZE, MAX_SIGNATURE_SIZE, TAG

__all__ = [
    "BATCH_PREFIX",
    "MAX_BATCH",
    "MAX_BATCHED_MESSAGE",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_SEND",
    "MIN_SIZE_TO_BATCH",
    "batch_header",
    "decode_batch",
    "encode_batch",
    "group",
    "is_batch",
    "pack_messages",
]

#: Inner messages one received BATCH may hold: bounds the work one message
#: can cause (each inner message costs what it would alone).
MAX_BATCH: Final = 64

#: Inner messages per BATCH this implementation sends: as many as a receiver
#: takes.  Measured with 100 no-op jobs in flight (broker and worker from
#: two trees side by side, reps alternated): 16 -> 64 cut their CPU per job
#: from 96 to 86 us and raised jobs/s by 11 %; p50 with one job in flight
#: does not change (a lone message is never held back for company).
MAX_BATCH_SEND: Final = MAX_BATCH

#: Bytes of inner frames per BATCH sent.  Far below any sensible
#: ``limits.max_message_size`` (ZMQ_MAXMSGSIZE is per frame, and a BATCH's
#: body is one frame), and small enough that batching never builds a big copy.
MAX_BATCH_BYTES: Final = 64 * 1024

#: An inner message whose header + body + signature exceed this is sent alone:
#: copying it into a BATCH would cost more than the send it saves, and a
#: large body stays a zero-copy frame.
MAX_BATCHED_MESSAGE: Final = 8 * 1024

#: The smallest ``limits.max_message_size`` with which a node offers or sends
#: BATCH: a BATCH's body frame is at most MAX_BATCH_BYTES of inner frames
#: plus their msgpack framing (at most 16 bytes per message), and libzmq drops
#: the connection of a peer that sends a frame past ZMQ_MAXMSGSIZE.  A node
#: configured below it keeps to single messages.
MIN_SIZE_TO_BATCH: Final = MAX_BATCH_BYTES + 1024

_BATCH: Final = int(MsgType.BATCH)
#: The first two bytes of every BATCH header: an 8-element fixarray and the
#: type 7 as a positive fixint (how every msgpack encoder writes them).
BATCH_PREFIX: Final = b"\x98\x07"

_packb: Final[Callable[[Any], bytes]] = msgpack.packb

_fast_batch: Callable[[Frame], list[list[Frame]]] | None
#: A BATCH body encoded: msgspec writes an array of arrays of bytes (or
#: views) as the same msgpack as msgpack.packb (the smallest forms; checked
#: in tests/unit/protocol/test_batch.py), without a Packer built per call.
_pack_body: Callable[[Any], bytes]
try:
    import msgspec
except ImportError:  # pragma: no cover - msgspec is a dependency; this is a fallback
    _fast_batch = None
    _pack_body = _packb
else:
    _pack_body = msgspec.msgpack.Encoder().encode
    # (Lists of bytes; typed as frames, which they are handed on as.)
    _fast_batch = cast(Callable[[Frame], list[list[Frame]]], msgspec.msgpack.Decoder(
        Annotated[list[Annotated[list[bytes], msgspec.Meta(min_length=2, max_length=3)]],
                  msgspec.Meta(min_length=1, max_length=MAX_BATCH)]).decode)


def batch_header(cls: int) -> bytes:
    """The header of a BATCH on priority class ``cls``: id ``"batch"``, no src
    or dst, ttl 0 (never forwarded), ts 0 (a link-level wrapper)."""
    return encode_header((_BATCH, "batch", "", "", 0, 0, cls, None))


_HEADERS: Final = tuple(batch_header(c) for c in range(4))


def is_batch(frames: list[Frame], start: int = 0) -> bool:
    """Whether ``frames`` (operone frames from ``start``) look like a BATCH;
    :func:`decode_batch` then checks it."""
    return len(frames) > start + 1 and frames[start + 1][:2] == BATCH_PREFIX


def encode_batch(messages: list[list[Frame]], cls: int = 0) -> list[Frame]:
    """A BATCH of ``messages`` (each ``[tag, header, body(, sig)]``); its frames
    without a routing id."""
    return [TAG, _HEADERS[cls], _pack_body([m[1:] for m in messages])]


def decode_batch(frames: list[Frame], start: int = 0) -> list[list[Frame]]:
    """The inner messages of the BATCH ``frames`` (from ``start``), each as the
    frames ``[tag, header, body(, sig)]`` it would have had alone.  Raises
    ProtocolError when the BATCH is not well formed (see the rules above);
    the inner messages themselves are checked by whoever handles them."""
    if len(frames) - start != 3:
        raise ProtocolError(f"a BATCH has 3 frames, got {len(frames) - start}")
    body = frames[start + 2]
    if _fast_batch is not None:
        # The shape checked in C (1..MAX_BATCH arrays of 2..3 bin); what
        # fails it is decoded again below, to say why as the spec says.
        try:
            fast = _fast_batch(body)
        except Exception:
            pass
        else:
            out: list[list[Frame]] = []
            for m in fast:
                h = m[0]
                if len(h) > MAX_HEADER_SIZE or (len(m) == 3 and len(m[2]) > MAX_SIGNATURE_SIZE):
                    raise ProtocolError(
                        "a message of a BATCH has a header or signature past its limit")
                if h[:2] == BATCH_PREFIX:
                    raise ProtocolError("a BATCH may not contain a BATCH")
                m.insert(0, TAG)
                out.append(m)
            return out
    try:
        # Every container in it is bounded (the messages by MAX_BATCH, each
        # message by 3), so nothing big is built before it is refused.
        items = msgpack.unpackb(body, raw=False, use_list=True, max_array_len=MAX_BATCH,
                                max_map_len=0, max_ext_len=0)
    except ValueError as exc:
        if "exceeds max_" not in str(exc):
            raise ProtocolError(decode_failure("BATCH", exc)) from exc
        raise ProtocolError(f"BATCH body must be an array of at most {MAX_BATCH} messages,"
                            " each an array of 2 or 3 bin") from exc
    except Exception as other:  # msgpack raises several unrelated types
        # (Its own name: see the loop below.)
        raise ProtocolError(decode_failure("BATCH", other)) from other
    if type(items) is not list or not items:
        raise ProtocolError("BATCH body must be a non-empty array of messages")
    # (Names of their own, typed Any until checked: compiled by mypyc, a
    # value bound to the fast path's ``list[Frame]`` names would be checked
    # against that type and a bad BATCH raise TypeError, not ProtocolError.)
    out = []
    item: Any
    for item in items:
        if (type(item) is not list or not 2 <= len(item) <= 3
                or any(type(f) is not bytes for f in item)):
            raise ProtocolError("each message of a BATCH must be an array of 2 or 3 bin"
                                " (header, body, optional signature)")
        head: bytes = item[0]
        if len(head) > MAX_HEADER_SIZE or (len(item) == 3 and len(item[2]) > MAX_SIGNATURE_SIZE):
            raise ProtocolError("a message of a BATCH has a header or signature past its limit")
        if head[:2] == BATCH_PREFIX:
            raise ProtocolError("a BATCH may not contain a BATCH")
        out.append([TAG, *item])
    return out


def pack_messages(msgs: list[list[Frame]], cls: int = 0) -> list[list[Frame]]:
    """What to send for ``msgs`` (each ``[tag, header, body(, sig)]``), all for
    one destination that accepts BATCH, in order: BATCHes of at most
    MAX_BATCH_SEND messages and MAX_BATCH_BYTES bytes, and alone any message
    past MAX_BATCHED_MESSAGE (or a lone one)."""
    return _split(msgs, 0, b"", cls)


def group(out: list[tuple[int, list[Frame]]],
          accepts: Callable[[int, bytes], bool],
          cls_of: Callable[[int], int],
          dealers_from: int | None = None) -> list[tuple[int, list[Frame]]]:
    """Turn one flush's outbox into what to send: the messages of a
    destination for which ``accepts(socket, routing id)`` holds, when there
    are several, go as :func:`pack_messages` says; anything else goes as it
    was.  Order is kept per destination.  ``cls_of(socket)``: the priority
    class of a socket, for the BATCH header.

    An entry is ``(socket, [routing id, tag, header, body(, sig)])`` on a
    ROUTER socket (its destination: socket and routing id), or ``(socket,
    [tag, header, body(, sig)])`` on a socket of index ``dealers_from`` or
    more (a DEALER: one destination per socket, asked as ``accepts(socket,
    b"")``; None: every socket is a ROUTER)."""
    if len(out) < 2:
        return out
    dests: dict[tuple[int, bytes], list[list[Frame]]] = {}
    no_rid = float("inf") if dealers_from is None else dealers_from
    for idx, frames in out:
        # (A routing id, the first frame, is always bytes.)
        key = (idx, b"") if idx >= no_rid else (idx, cast(bytes, frames[0]))
        lst = dests.get(key)
        if lst is None:
            dests[key] = [frames]
        else:
            lst.append(frames)
    if len(dests) == len(out):
        return out
    result: list[tuple[int, list[Frame]]] = []
    for (idx, rid), msgs in dests.items():
        if len(msgs) == 1 or not accepts(idx, rid):
            result.extend([(idx, m) for m in msgs])
        elif idx >= no_rid:
            result.extend([(idx, m) for m in _split(msgs, 0, b"", cls_of(idx))])
        else:
            result.extend([(idx, m) for m in _split(msgs, 1, rid, cls_of(idx))])
    return result


def _split(msgs: list[list[Frame]], off: int, rid: bytes, cls: int) -> list[list[Frame]]:
    """``msgs`` (operone frames from ``off``, after routing id ``rid`` when
    ``off`` is 1) as singles and BATCHes, in order."""
    result: list[list[Frame]] = []
    chunk: list[list[Frame]] = []
    size = 0
    for m in msgs:
        k = len(m) - off
        if (k == 3 or k == 4) and m[off] == TAG:
            n = len(m[off + 1]) + len(m[off + 2]) + (len(m[off + 3]) if k == 4 else 0)
        else:
            n = MAX_BATCHED_MESSAGE + 1  # not ours to wrap: as it is
        if n > MAX_BATCHED_MESSAGE:
            _emit(result, off, rid, chunk, cls)
            chunk = []
            size = 0
            result.append(m)
            continue
        if len(chunk) == MAX_BATCH_SEND or size + n > MAX_BATCH_BYTES:
            _emit(result, off, rid, chunk, cls)
            chunk = []
            size = 0
        chunk.append(m)
        size += n
    _emit(result, off, rid, chunk, cls)
    return result


def _emit(result: list[list[Frame]], off: int, rid: bytes, chunk: list[list[Frame]],
          cls: int) -> None:
    if len(chunk) == 1:
        result.append(chunk[0])
    elif chunk:
        body = _pack_body([m[off + 1:] for m in chunk])
        result.append([rid, TAG, _HEADERS[cls], body] if off else [TAG, _HEADERS[cls], body])
