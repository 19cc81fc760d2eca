"""Peer links of a broker: their state table and measurements (no I/O).

A link to a neighbour broker may have two transports:

* **dialled**: we connected one DEALER per class to the neighbour's class
  ROUTERs (socket indices chosen by the shell); we send through them;
* **accepted**: the neighbour dialled us; we reach it through our class
  ROUTERs, addressing the routing id its accepted HELLO came from.

**Dial incarnations.**  A dialler gives its four DEALERs one routing id per
dial, ``NODE#EPOCH.SEQ`` (:func:`incarnation_id`; EPOCH is random per broker
run, SEQ counts its dials), and dials afresh (new sockets, new id) whenever
the connection is lost or the link is declared dead.  libzmq hands a routing
id to the first connection that presents it and parks a later one under
the same id, unread, for good (libzmq 4.3.5; libzmq #2019, #4503): a
reconnect under a fixed id while the far end still holds the old connection
is a black hole.  With one id per dial two connections never share one; the
accepting side takes the node id from the part before ``#``, and a newer
incarnation's authenticated HELLO replaces the older session (an older
incarnation's late HELLO never replaces a newer one).  As EPOCH is random,
no other connection can present the accepted routing id, so sends to the
neighbour reach the connection whose key was checked for it.  A routing id
without ``#`` (a dialler that predates incarnations) is its node id.

The link is UP when either transport has completed the handshake; sends
prefer the dialled transport.  Link lifecycle (one table)::

    dialled:   DOWN --send HELLO--> HELLO_SENT --WELCOME--> UP
               HELLO_SENT --BYE(reason)--> DOWN (retry after a longer backoff)
               HELLO_SENT --no answer--> HELLO re-sent, backoff doubling to
                                         MAX_HELLO_BACKOFF
    accepted:  (HELLO from a verified key, checks passed) --> UP, WELCOME sent
               (HELLO refused) --> BYE(reason) sent, no link
    UP --silence for liveness x interval, transport lost, BYE--> DOWN
         (a dialled link then goes back to sending HELLO; an accepted-only
         link is forgotten until the neighbour says HELLO again)

Heartbeats: every UP link gets a PING on the critical class each interval;
the PONG gives the RTT.  ``rtt_ms`` (shown by ``operone peers``) is its
EWMA; the link cost advertised in our LSA is the link's
:class:`~operone_zmq.routing.damping.CostBand` (a quantised, damped band
value: 1, 20, 50, ... ms), which starts again at band 0 when the link goes
down.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

from ..protocol.frame import Frame
from ..routing.damping import CostBand

__all__ = [
    "DOWN",
    "HELLO_SENT",
    "INCARNATION_SEP",
    "MAX_HELLO_BACKOFF",
    "MIN_HELLO_BACKOFF",
    "REFUSED_BACKOFF",
    "UP",
    "PeerLink",
    "incarnation_id",
    "node_of_rid",
    "superseded",
    "unguessable_rid",
]

DOWN: Final = "down"
HELLO_SENT: Final = "hello_sent"
UP: Final = "up"

#: HELLO retries on a dialled link start this fast (s) and double up to the
#: maximum, so a peer that is down costs one small message per 10 s.
MIN_HELLO_BACKOFF: Final = 0.25
MAX_HELLO_BACKOFF: Final = 10.0
#: After a refusal (BYE) the next try waits at least this long (s).
REFUSED_BACKOFF: Final = 5.0

#: Separates the node id from the dial incarnation in a peer's routing id;
#: never part of a node id (security.keys.NAME_PATTERN).
INCARNATION_SEP: Final = b"#"


def incarnation_id(node: str, epoch: int, seq: int) -> bytes:
    """The routing id of dial ``seq`` of the broker run ``epoch``."""
    return node.encode() + INCARNATION_SEP + f"{epoch:016x}.{seq:x}".encode()


def unguessable_rid(rid: bytes) -> bool:
    """Is ``rid`` a dial incarnation with a 64-bit epoch (16 hex digits)?
    Only its holder and we know it: nobody can take it over (issue 11)."""
    epoch, dot, seq = rid.partition(INCARNATION_SEP)[2].partition(b".")
    return (len(epoch) == 16 and bool(dot) and bool(seq)
            and not epoch.strip(b"0123456789abcdef") and not seq.strip(b"0123456789abcdef"))


def node_of_rid(rid: bytes) -> bytes:
    """The node id part of a peer's routing id."""
    return rid.partition(INCARNATION_SEP)[0]


def _order(rid: bytes) -> tuple[bytes, int] | None:
    inc = rid.partition(INCARNATION_SEP)[2]
    epoch, dot, seq = inc.partition(b".")
    if not dot:
        return None
    try:
        return epoch, int(seq, 16)
    except ValueError:
        return None


def superseded(rid: bytes, current: bytes) -> bool:
    """True when ``rid`` is an older dial of the same broker run than
    ``current`` (a late message of a connection its dialler replaced)."""
    a, b = _order(rid), _order(current)
    return a is not None and b is not None and a[0] == b[0] and a[1] < b[1]


#: EWMA weight of a new RTT sample in the link cost.
RTT_ALPHA: Final = 0.3
#: Link cost before any RTT is measured (ms): small, so new links are usable.
DEFAULT_COST_MS: Final = 1.0
#: Unanswered PINGs remembered per link (older ones count as lost).
MAX_OUTSTANDING_PINGS: Final = 64


@dataclass(slots=True)
class PeerLink:
    """One neighbour broker and how we reach it."""

    node: str
    name: str = ""
    address: str = ""
    #: Our DEALER socket per class, when we dialled this neighbour.
    dial: list[int] | None = None
    dial_state: str = DOWN
    #: Its routing id on our class ROUTERs (the accepted incarnation), when it
    #: dialled us.
    rid: bytes | None = None
    accepted_up: bool = False
    #: The Curve key the neighbour authenticated with (z85), accepted side.
    key: str | None = None
    token: str | None = None
    #: It takes our messages for it unsigned (HELLO/WELCOME ``direct``, rev. 5).
    direct: bool = False
    #: It accepts BATCH (revision 7): on the dialled transport its WELCOME of
    #: the current handshake said so, on the accepted one its accepted HELLO
    #: (each set afresh by every handshake of its transport).
    dial_batch: bool = False
    accepted_batch: bool = False
    #: It takes a signature in frame 0 after the tag (revision 9), per
    #: transport as ``dial_batch`` and ``accepted_batch``.
    dial_sig_in_tag: bool = False
    accepted_sig_in_tag: bool = False
    up_since: float = 0.0
    heard: float = 0.0
    next_hello: float = 0.0
    backoff: float = MIN_HELLO_BACKOFF
    last_error: str = ""
    # measurements
    rtt_ms: float | None = None
    #: What cost our LSA advertises for this link (damped; see the module docstring).
    band: CostBand = field(default_factory=CostBand)
    ping_seq: int = 0
    pings: dict[int, float] = field(default_factory=dict)
    pings_sent: int = 0
    pongs: int = 0
    sent: int = 0
    received: int = 0
    #: Messages waiting for QoS tokens, per class (bounded by the broker).
    queues: dict[int, deque[list[Frame]]] = field(default_factory=dict)

    @property
    def up(self) -> bool:
        return self.dial_state == UP or self.accepted_up

    @property
    def cost(self) -> float:
        """The link cost to advertise (ms): the band value of the damped RTT."""
        return self.band.cost

    def record_rtt(self, rtt_ms: float) -> bool:
        """Fold one RTT sample into the EWMA and the cost band; return whether
        the cost to advertise changed."""
        if self.rtt_ms is None:
            self.rtt_ms = rtt_ms
        else:
            self.rtt_ms += RTT_ALPHA * (rtt_ms - self.rtt_ms)
        return self.band.sample(max(0.0, rtt_ms))

    def reset_band(self) -> None:
        """The link went down: its next life measures its cost afresh."""
        self.band = CostBand()

    def describe(self, now: float) -> dict[str, object]:
        """What ``operone peers`` shows about this link."""
        transports = []
        if self.dial is not None:
            transports.append(f"dialled:{self.dial_state}")
        if self.rid is not None:
            transports.append("accepted:" + ("up" if self.accepted_up else "down"))
        lost = self.pings_sent - self.pongs
        return {
            "node": self.node,
            "name": self.name or self.node,
            "address": self.address,
            "state": UP if self.up else (self.dial_state if self.dial is not None else DOWN),
            "transports": transports,
            "up_for": round(now - self.up_since, 3) if self.up else 0.0,
            "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 3),
            "cost": round(self.cost, 3),
            "pings": self.pings_sent,
            "lost_pings": max(0, lost - len(self.pings)),
            "sent": self.sent,
            "received": self.received,
            "last_error": self.last_error,
        }
