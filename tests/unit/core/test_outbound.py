"""Outbound: QoS-shaped sends to the links of a table, and their class queues.

Through its own methods, on a context, a table of links and a QoS manager as
PeerLinks gives them (sends through PeerLinks: tests/unit/core/test_links.py
and test_qos_core.py).
"""

from __future__ import annotations

from operone_zmq.core.context import BrokerContext, BrokerLimits
from operone_zmq.core.outbound import Outbound
from operone_zmq.core.peers import UP, PeerLink
from operone_zmq.protocol import TAG
from operone_zmq.qos.manager import QoSManager

NOW = 1000.0
RID = b"n2#1.1"


def _outbound(link: PeerLink) -> tuple[BrokerContext, Outbound]:
    ctx = BrokerContext("n1", BrokerLimits(), NOW, lambda: NOW, "", "c", "")
    return ctx, Outbound(ctx, {link.node: link}, QoSManager(clock=lambda: ctx.now))


def _fill(out: Outbound, link: PeerLink, cls: int, n: int) -> None:
    for i in range(n):
        assert out.send(link, cls, [TAG, b"h", bytes([i]) * 50_000])


def test_what_waits_goes_critical_class_first_in_order_on_the_preferred_transport() -> None:
    link = PeerLink("n2", dial=[5, 6, 7, 8], dial_state=UP, rid=RID, accepted_up=True)
    ctx, out = _outbound(link)
    out.allocate_bandwidth("n2", 0.001)
    _fill(out, link, 3, 3)
    _fill(out, link, 1, 3)
    assert sum(out.queue_lengths()["n2"].values()) >= 5
    ctx.out.clear()
    out.allocate_bandwidth("n2", None)
    assert out.release_at == NOW  # a reset looks again at once
    out.release_due(NOW)
    assert out.queue_lengths() == {}
    socks = [s for s, _ in ctx.out]
    assert socks == sorted(socks) and set(socks) <= {6, 8}  # high, then low: dialled
    for cls_sock in (6, 8):
        firsts = [f[2][0] for s, f in ctx.out if s == cls_sock]
        assert firsts == sorted(firsts)  # order kept within a class
    link.dial_state = "down"
    assert out.send(link, 2, [TAG, b"h", b"x"])
    assert ctx.out[-1] == (2, [RID, TAG, b"h", b"x"])  # the accepted transport


def test_the_queues_of_a_link_found_down_are_dropped_and_counted() -> None:
    link = PeerLink("n2", rid=RID, accepted_up=True)
    ctx, out = _outbound(link)
    out.allocate_bandwidth("n2", 0.001)
    _fill(out, link, 3, 4)
    waiting = out.queue_lengths()["n2"]["low"]
    assert waiting >= 3 and out.release_at < float("inf")
    link.accepted_up = False
    sent = len(ctx.out)
    assert not out.send(link, 3, [TAG, b"h", b"x"])
    ctx.now = out.release_at
    out.release_due(ctx.now)
    assert link.queues == {} and len(ctx.out) == sent
    assert ctx.counters["qos_dropped_link_down"] == waiting
