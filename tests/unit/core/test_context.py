"""BrokerContext: ids, headers and errors from this node."""

from __future__ import annotations

from coreparts import WALL, Parts

from operone_zmq.errors import Overloaded
from operone_zmq.protocol import MsgType, decode, decode_header
from operone_zmq.protocol.bodies import ErrorBody


def test_ids_are_fresh_and_prefixed_by_the_node() -> None:
    parts = Parts()
    a, b = parts.ctx.next_id(), parts.ctx.next_id()
    assert a != b
    assert a.startswith("n1.") and b.startswith("n1.")


def test_header_is_from_this_node_stamped_by_the_wall_clock() -> None:
    parts = Parts()
    h = decode_header(parts.ctx.header(int(MsgType.PING), "m1", "n2", 1, "c"))
    assert (h.src, h.dst, h.id, h.cls, h.corr) == ("n1", "n2", "m1", 1, "c")
    assert h.ts == int((WALL + parts.clock()) * 1000)


def test_send_error_counts_the_code_and_answers_the_routing_id() -> None:
    parts = Parts()
    parts.ctx.send_error(2, b"\x00c", "j1", "cli", 2, Overloaded("full"))
    parts.ctx.send_error(2, b"\x00c", "j2", "cli", 2, Overloaded("full"))
    assert parts.ctx.errors == {"overloaded": 2}
    (sock, frames), _ = parts.take()
    assert sock == 2 and frames[0] == b"\x00c"
    msg = decode(frames, 1)
    assert msg.header.type == MsgType.ERROR
    assert ErrorBody.unpack(msg.body).node == "n1"


def test_the_shell_may_swap_the_outbox() -> None:
    parts = Parts()
    """Parts reach the lists through the context, so a swapped list is used."""
    parts.core.out = []
    parts.core.events = []
    parts.ctx.send_error(2, b"\x00c", "j1", "cli", 2, Overloaded("full"))
    assert len(parts.core.out) == 1
