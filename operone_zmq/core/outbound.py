"""What a broker sends its neighbours, shaped by QoS per (link, class) (no I/O).

:class:`~.links.PeerLinks` owns the table of links; this part puts messages
on a link's transport and holds back what QoS does not let go yet:

* A send goes on the link's preferred transport: the dialled DEALER of its
  class when that transport is up, else the neighbour's accepted routing id
  on our frontend ROUTER of the class.  ``urgent`` sends (heartbeats) go to
  ``ctx.urgent``, which the shell sends before anything else.
* Over the link's allocation or the class's policy rate (the token buckets
  of :class:`~operone_zmq.qos.manager.QoSManager`, message type
  :data:`QOS_CLASS_TYPES` of the class) a message waits in the link's class
  queue, behind any of its class already waiting (order kept); past
  :data:`MAX_LINK_QUEUE` waiting, sends are refused (``qos_refused``).
* What waits is released critical class first when the buckets allow
  (:meth:`Outbound.release_due`, at the earliest moment one is due); a link
  found down then drops its queues (``qos_dropped_link_down``).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final

from ..protocol.frame import Frame
from ..qos.manager import QoSManager, metrics_report
from .context import CLASS_NAMES, BrokerContext
from .peers import UP, PeerLink

__all__ = ["MAX_LINK_QUEUE", "QOS_CLASS_TYPES", "Outbound"]

#: QoS message type whose policy shapes each class on peer links: heartbeats
#: and handshakes are critical (never throttled), jobs and results high, other
#: traffic normal, and the low class is bulk data ("file-transfer", 5 MB/s
#: by default).
QOS_CLASS_TYPES: Final = ("heartbeat", "tool-call", "message", "file-transfer")

#: Messages waiting per (link, class) for tokens; past it, sends are refused
#: (the origin hears Overloaded) instead of buffering without end.
MAX_LINK_QUEUE = 10_000


class Outbound:
    """The QoS-shaped sends to the links of a table, and their class queues."""

    def __init__(self, ctx: BrokerContext, links: dict[str, PeerLink],
                 qos: QoSManager) -> None:
        self._ctx = ctx
        #: The table of links (:attr:`~.links.PeerLinks.links`, the same dict),
        #: read only here.
        self._links = links
        self.qos = qos
        #: When a queued message is next due (inf: nothing waits).
        self.release_at = float("inf")

    def send(self, link: PeerLink, cls: int, frames: list[Frame], *,
             urgent: bool = False) -> bool:
        """Send on the link's preferred transport, shaped by QoS; False when it
        has no transport up or its queue for the class is full.  ``urgent``
        (heartbeats): when nothing of the class waits, it goes to
        ``ctx.urgent``, which the shell sends before anything else, at once."""
        if not link.up:
            return False
        q = link.queues.get(cls)
        size = 0
        for f in frames:
            size += len(f)
        if q:  # others of this class wait already: keep the order
            if len(q) >= MAX_LINK_QUEUE:  # read at each send: tests lower it
                self._ctx.counters["qos_refused"] += 1
                return False
            q.append(frames)
            return True
        now = self._ctx.now
        if not self.qos.consume(link.node, QOS_CLASS_TYPES[cls], size, now):
            # Over the link's allocation or the class's policy rate: wait.
            link.queues.setdefault(cls, deque()).append(frames)
            self.qos.set_queue_depth(link.node, sum(len(x) for x in link.queues.values()))
            self.release_at = min(self.release_at, now + self.qos.time_until(
                link.node, QOS_CLASS_TYPES[cls], size, now))
            return True
        self._put_on_wire(link, cls, frames, urgent)
        return True

    def _put_on_wire(self, link: PeerLink, cls: int, frames: list[Frame],
                     urgent: bool = False) -> None:
        out = self._ctx.urgent if urgent else self._ctx.out
        if link.dial is not None and link.dial_state == UP:
            out.append((link.dial[cls], frames))
        elif link.rid is not None:
            out.append((cls, [link.rid, *frames]))
        link.sent += 1

    def release_due(self, now: float) -> None:
        """Send what the token buckets allow, when a queued message is due."""
        if self.release_at <= now:
            self._release_queued(now)

    def _release_queued(self, now: float) -> None:
        """Send what the token buckets allow now from the links' class queues."""
        self.release_at = float("inf")
        for link in self._links.values():
            if not link.queues:
                continue
            if not link.up:
                dropped = sum(len(q) for q in link.queues.values())
                self._ctx.counters["qos_dropped_link_down"] += dropped
                link.queues.clear()
                continue
            for cls in sorted(link.queues):  # critical first
                q = link.queues[cls]
                mtype = QOS_CLASS_TYPES[cls]
                while q:
                    size = sum(len(f) for f in q[0])
                    if not self.qos.consume(link.node, mtype, size, now):
                        self.release_at = min(self.release_at, now + max(
                            0.001, self.qos.time_until(link.node, mtype, size, now)))
                        break
                    self._put_on_wire(link, cls, q.popleft())
                if not q:
                    del link.queues[cls]
            self.qos.set_queue_depth(link.node, sum(len(x) for x in link.queues.values()))

    def allocate_bandwidth(self, peer: str, mb_per_s: float | None) -> None:
        """Limit what this broker sends to neighbour ``peer`` (MB/s; None: no limit)."""
        self.qos.allocate_bandwidth(peer, mb_per_s)
        # What waits was timed by the old allocation (a tiny one: minutes):
        # look again now, or it stays stuck after a reset.
        link = self._links.get(peer)
        if link is not None and link.queues:
            self.release_at = min(self.release_at, self._ctx.now)

    def queue_lengths(self) -> dict[str, dict[str, int]]:
        """node -> class name -> messages waiting, for the links where some wait."""
        return {n: {CLASS_NAMES[c]: len(q) for c, q in lk.queues.items()}
                for n, lk in self._links.items() if lk.queues}

    def qos_metrics(self, peer: str) -> dict[str, Any] | None:
        """The QoS metrics of the link to ``peer`` (the original's getQoSMetrics)."""
        m = self.qos.get_metrics(peer)
        if m is None:
            return None
        link = self._links.get(peer)
        return {
            "peer": peer, **metrics_report(m),
            "allocation_mb_s": self.qos.get_allocation(peer),
            "queued_by_class": {CLASS_NAMES[c]: len(q) for c, q in link.queues.items()}
            if link is not None else {},
        }
