"""QoSManager: the original package's QoS API, measured and enforced.

Rules (the original's semantics unless a rule says otherwise):

- Policies are per message type (:mod:`operone_zmq.qos.policy`);
  :meth:`QoSManager.get_policy` of an unknown type returns :data:`DEFAULT_POLICY`.
- Metrics are per peer (a neighbour on a direct link): latency and jitter in
  ms, packet loss as a fraction 0..1 (never a percentage), bandwidth in MB/s
  of bytes *sent* to the peer, queue depth in messages.  A peer exists once
  anything is recorded for it; :meth:`QoSManager.get_metrics` of an unknown
  peer is ``None`` and its health score is 0, as in the original.
- :meth:`QoSManager.update_metrics` sets the given fields and leaves the others.
  :meth:`QoSManager.record_latency` adds an RTT to the peer's window of the last
  ``JITTER_WINDOW`` (20); latency becomes the window mean and jitter its
  population standard deviation.  Heartbeats feed the same window through
  :meth:`QoSManager.pong_received`, which also measures packet loss from
  sequence gaps and timeouts (:class:`LinkMetrics`).
- Bandwidth is measured from :meth:`QoSManager.record_sent` (and
  :meth:`QoSManager.consume`) over a sliding window; a value given to
  ``update_metrics(bandwidth=...)`` replaces it until bytes are recorded again
  (last writer wins, and a measured value is always read fresh).
- Violations are events, emitted synchronously: ``violation:latency`` with
  ``{"peer_id", "latency"}`` when a latency above :data:`LATENCY_VIOLATION_MS`
  is recorded or set, and ``violation:packet-loss`` with
  ``{"peer_id", "packet_loss"}`` when packet loss above
  :data:`PACKET_LOSS_VIOLATION` is measured or set.  As in the original the
  latency check uses the *latest* RTT, not the window mean, so one slow
  heartbeat is reported.  Unlike the original, an update only re-checks the
  fields it changes (setting the queue depth does not repeat an old latency
  violation), and a violation is an *edge*: it is emitted once when the
  value crosses its threshold, and ``recovered:latency`` /
  ``recovered:packet-loss`` (same payload) once when it is back at or below
  :data:`RECOVERY_FRACTION` of it; in between nothing is repeated.
- Throttling is enforced with token buckets, not advised: a peer's allocation
  (:meth:`QoSManager.allocate_bandwidth`) and each capped message type
  (``max_bandwidth``, per peer) have a :class:`TokenBucket`.
  :meth:`QoSManager.should_throttle` is true when a bucket has no tokens for
  the message, when the measured bandwidth is over the allocation or over the
  type's cap (the original's checks), or when the peer's queue is deeper than
  :data:`DEEP_QUEUE_DEPTH` and the type is ``normal`` or ``low``.
  :meth:`QoSManager.consume` takes the tokens when the message is sent.
- ``critical`` messages (heartbeats, handshakes) are never throttled by the
  peer's allocation, by other traffic or by queue depth, so a saturated link
  cannot starve its own liveness checks; their bytes are still charged to the
  allocation (which may go into debt), so the allocation holds overall.  Only
  an explicit ``max_bandwidth`` on a critical type itself limits it.
- Health score (0..100): start at 100; latency over 200 ms costs
  ``min(40, (latency - 200) / 10)``; packet loss costs ``loss * 100``; jitter
  over 50 ms costs ``min(20, (jitter - 50) / 2)``; clamp and round.
- Time comes from the injected ``clock`` (monotonic seconds); methods that take
  ``now`` use it instead when given.

No I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from operone_zmq.errors import Overloaded
from operone_zmq.qos._clock import monotonic
from operone_zmq.qos.bucket import TokenBucket
from operone_zmq.qos.metrics import DEFAULT_PING_TIMEOUT, LinkMetrics
from operone_zmq.qos.policy import (
    BYTES_PER_MB,
    DEFAULT_POLICIES,
    DEFAULT_POLICY,
    QoSPolicy,
    RetryPolicy,
)
from operone_zmq.qos.priority import Priority
from operone_zmq.routing.events import EventEmitter

__all__ = [
    "DEEP_QUEUE_DEPTH",
    "EVENT_LATENCY_RECOVERED",
    "EVENT_LATENCY_VIOLATION",
    "EVENT_PACKET_LOSS_RECOVERED",
    "EVENT_PACKET_LOSS_VIOLATION",
    "LATENCY_VIOLATION_MS",
    "MAX_PEERS",
    "MAX_POLICIES",
    "PACKET_LOSS_VIOLATION",
    "RECOVERY_FRACTION",
    "QoSManager",
    "QoSMetrics",
    "QoSPolicy",
    "RetryPolicy",
    "health_score",
    "metrics_report",
]

#: A latency above this many ms is a violation: the original's threshold, and
#: the heartbeat's latency goal.
LATENCY_VIOLATION_MS: Final = 1000.0

#: Packet loss above this fraction is a violation: the original's 5 %.
PACKET_LOSS_VIOLATION: Final = 0.05

#: Queue depth (messages waiting for a peer) above which ``normal`` and ``low``
#: messages are throttled so ``critical`` and ``high`` get through: the
#: original's threshold.
DEEP_QUEUE_DEPTH: Final = 50

#: Peers tracked at once.  QoS state is per direct link, and the mesh is
#: designed for 10,000 nodes; more than that is a leak (peers never removed).
MAX_PEERS = 10_000

#: Message types with a policy of their own.  Types are named by code, not by
#: the network; thousands means something builds type names from input.
MAX_POLICIES: Final = 1024

#: Name of the event emitted when latency is over :data:`LATENCY_VIOLATION_MS`.
EVENT_LATENCY_VIOLATION: Final = "violation:latency"

#: Emitted once when a latency violation ends.
EVENT_LATENCY_RECOVERED: Final = "recovered:latency"

#: Emitted once when a packet-loss violation ends.
EVENT_PACKET_LOSS_RECOVERED: Final = "recovered:packet-loss"

#: A violated metric has recovered when it is at or below this fraction of its
#: threshold (hysteresis: a value wandering around the threshold is one
#: violation, not one per heartbeat).
RECOVERY_FRACTION: Final = 0.8

#: Name of the event emitted when packet loss is over :data:`PACKET_LOSS_VIOLATION`.
EVENT_PACKET_LOSS_VIOLATION: Final = "violation:packet-loss"

# Health score parameters, the original's.
_HEALTH_MAX: Final = 100
_LATENCY_FREE_MS: Final = 200.0  # latency up to this costs nothing
_LATENCY_MS_PER_POINT: Final = 10.0
_LATENCY_MAX_PENALTY: Final = 40.0
_JITTER_FREE_MS: Final = 50.0  # jitter up to this costs nothing
_JITTER_MS_PER_POINT: Final = 2.0
_JITTER_MAX_PENALTY: Final = 20.0


def health_score(latency: float, jitter: float, packet_loss: float) -> int:
    """Return the 0..100 health score of a link with these metrics."""
    score = float(_HEALTH_MAX)
    if latency > _LATENCY_FREE_MS:
        score -= min(_LATENCY_MAX_PENALTY, (latency - _LATENCY_FREE_MS) / _LATENCY_MS_PER_POINT)
    score -= packet_loss * _HEALTH_MAX
    if jitter > _JITTER_FREE_MS:
        score -= min(_JITTER_MAX_PENALTY, (jitter - _JITTER_FREE_MS) / _JITTER_MS_PER_POINT)
    return max(0, min(_HEALTH_MAX, round(score)))


@dataclass(frozen=True, slots=True)
class QoSMetrics:
    """A snapshot of one peer's link quality."""

    peer_id: str
    latency: float  # ms
    jitter: float  # ms
    packet_loss: float  # fraction 0..1
    bandwidth: float  # MB/s sent
    queue_depth: int  # messages
    health_score: int  # 0..100
    last_update: float  # monotonic seconds


#: Decimals of ``bandwidth_mb_s`` in a report: 6 is one byte per second, so a
#: link carrying only heartbeats (a few hundred B/s) does not read 0.
BANDWIDTH_DECIMALS: Final = 6


def metrics_report(m: QoSMetrics) -> dict[str, Any]:
    """The metrics as QUERY ``qos`` and ``get_qos_metrics()`` report them
    (docs/protocol.md section 5.11): latency and jitter in ms (3 decimals),
    packet loss 0..1 (4 decimals), bandwidth in MB/s to the byte per second
    (``bandwidth_mb_s``, 6 decimals) and in whole bytes per second
    (``bandwidth_bytes_s``), queue depth and health score."""
    return {
        "latency_ms": round(m.latency, 3),
        "jitter_ms": round(m.jitter, 3),
        "packet_loss": round(m.packet_loss, 4),
        "bandwidth_mb_s": round(m.bandwidth, BANDWIDTH_DECIMALS),
        "bandwidth_bytes_s": round(m.bandwidth * BYTES_PER_MB),
        "queue_depth": m.queue_depth,
        "health_score": m.health_score,
    }


class _Peer:
    """Mutable per-peer state of the manager."""

    __slots__ = (
        "allocation",
        "allocation_bucket",
        "bandwidth_manual",
        "bandwidth_measured",
        "jitter",
        "last_update",
        "latency",
        "latency_violated",
        "link",
        "loss_violated",
        "packet_loss",
        "type_buckets",
    )

    def __init__(self, now: float) -> None:
        self.link = LinkMetrics()
        self.latency = 0.0
        self.jitter = 0.0
        self.packet_loss = 0.0
        self.bandwidth_manual = 0.0
        self.bandwidth_measured = False
        self.last_update = now
        self.allocation: float | None = None  # MB/s
        self.allocation_bucket: TokenBucket | None = None
        self.type_buckets: dict[str, TokenBucket] = {}
        #: Whether a violation is in progress (events are edges).
        self.latency_violated = False
        self.loss_violated = False

    def bandwidth(self, now: float) -> float:
        if self.bandwidth_measured:
            return self.link.sent.rate(now) / BYTES_PER_MB
        return self.bandwidth_manual


class QoSManager(EventEmitter):
    """Policies per message type, metrics and bandwidth buckets per peer, violation events."""

    def __init__(self, clock: Callable[[], float] = monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._policies: dict[str, QoSPolicy] = dict(DEFAULT_POLICIES)
        self._peers: dict[str, _Peer] = {}

    # --------------------------------------------------------------- policies
    def set_policy(self, message_type: str, policy: QoSPolicy) -> None:
        """Set the policy of *message_type*; its bandwidth buckets follow a new cap."""
        if not isinstance(policy, QoSPolicy):
            raise TypeError(f"policy must be a QoSPolicy, not {type(policy).__name__}")
        if message_type not in self._policies and len(self._policies) >= MAX_POLICIES:
            raise Overloaded(f"more than {MAX_POLICIES} message types with a policy")
        self._policies[message_type] = policy
        now = self._clock()
        rate = policy.max_bandwidth_bytes
        for state in self._peers.values():
            bucket = state.type_buckets.get(message_type)
            if bucket is None:
                continue
            if rate is None:
                del state.type_buckets[message_type]
            else:
                bucket.set_rate(rate, now)

    def get_policy(self, message_type: str) -> QoSPolicy:
        """Return the policy of *message_type*, or the normal default for unknown types."""
        return self._policies.get(message_type, DEFAULT_POLICY)

    def priority_of(self, message_type: str) -> Priority:
        """Return the priority class of *message_type*."""
        return self.get_policy(message_type).priority

    @property
    def policies(self) -> dict[str, QoSPolicy]:
        """A copy of every explicitly set policy, by message type."""
        return dict(self._policies)

    # ---------------------------------------------------------------- metrics
    # (The metrics are ``object`` parameters, checked before they are bound
    # to floats: compiled by mypyc, a ``float`` parameter is checked on the
    # call, so a text latency would raise TypeError instead of ValueError and
    # a boolean pass as 1.0.)
    def update_metrics(
        self,
        peer_id: str,
        *,
        latency: object = None,
        jitter: object = None,
        packet_loss: object = None,
        bandwidth: object = None,
        queue_depth: object = None,
    ) -> None:
        """Set the given metrics of *peer_id* and emit violations for the changed ones.

        Latency and jitter in ms, packet loss a fraction 0..1, bandwidth in
        MB/s (non-negative finite numbers), queue depth a non-negative
        integer; anything else raises :class:`ValueError` and sets nothing.
        """
        lat = None if latency is None else _check_metric("latency", latency)
        jit = None if jitter is None else _check_metric("jitter", jitter)
        loss = None if packet_loss is None else _check_fraction(packet_loss)
        bw = None if bandwidth is None else _check_metric("bandwidth", bandwidth)
        depth = None if queue_depth is None else _check_depth(queue_depth)
        now = self._clock()
        state = self._peer(peer_id, now)
        if lat is not None:
            state.latency = lat
        if jit is not None:
            state.jitter = jit
        if loss is not None:
            state.packet_loss = loss
        if bw is not None:
            state.bandwidth_manual = bw
            state.bandwidth_measured = False
        if depth is not None:
            state.link.queue_depth = depth
        state.last_update = now
        if lat is not None:
            self._check_latency(peer_id, lat)
        if loss is not None:
            self._check_loss(peer_id, loss)

    def record_latency(self, peer_id: str, rtt_ms: object) -> None:
        """Add an RTT sample (ms, a non-negative finite number) for *peer_id*:
        updates latency and jitter, checks the RTT."""
        rtt = _check_metric("rtt", rtt_ms)
        now = self._clock()
        state = self._peer(peer_id, now)
        state.link.record_rtt(rtt)
        self._after_rtt(peer_id, state, rtt, now)

    def record_packet_loss(self, peer_id: str, fraction: object) -> None:
        """Set the packet loss of *peer_id* (a fraction 0..1) and check it."""
        self.update_metrics(peer_id, packet_loss=fraction)

    def set_queue_depth(self, peer_id: str, depth: object) -> None:
        """Set how many messages wait to be sent to *peer_id*."""
        self.update_metrics(peer_id, queue_depth=depth)

    # ------------------------------------------------------------- heartbeats
    def ping_sent(self, peer_id: str, seq: int, now: float | None = None) -> None:
        """Register heartbeat *seq* sent to *peer_id*."""
        now = self._now(now)
        self._peer(peer_id, now).link.ping_sent(seq, now)

    def ping_restamped(self, peer_id: str, seq: int, sent_at: float) -> None:
        """Heartbeat *seq* really left at *sent_at* (the socket layer's time)."""
        state = self._peers.get(peer_id)
        if state is not None:
            state.link.restamp(seq, sent_at)

    def pong_received(self, peer_id: str, seq: int, now: float | None = None) -> float | None:
        """Answer heartbeat *seq* of *peer_id*: record its RTT and loss; return the RTT in ms."""
        state = self._peers.get(peer_id)
        if state is None:
            return None
        now = self._now(now)
        rtt = state.link.pong_received(seq, now)
        if rtt is None:
            return None
        self._after_rtt(peer_id, state, rtt, now)
        self._set_measured_loss(peer_id, state, now)
        return rtt

    def expire_pings(
        self, now: float | None = None, timeout: float = DEFAULT_PING_TIMEOUT
    ) -> dict[str, int]:
        """Count pings unanswered for *timeout* seconds as lost; return new losses by peer."""
        now = self._now(now)
        lost: dict[str, int] = {}
        for peer_id, state in list(self._peers.items()):
            n = state.link.expire(now, timeout)
            if n:
                lost[peer_id] = n
                self._set_measured_loss(peer_id, state, now)
        return lost

    # -------------------------------------------------------------- bandwidth
    def record_sent(self, peer_id: str, nbytes: int, now: float | None = None) -> None:
        """Count *nbytes* sent to *peer_id*; the bandwidth metric becomes measured."""
        now = self._now(now)
        state = self._peer(peer_id, now)
        state.link.sent.record(nbytes, now)
        state.bandwidth_measured = True
        state.last_update = now

    def record_received(self, peer_id: str, nbytes: int, now: float | None = None) -> None:
        """Count *nbytes* received from *peer_id*."""
        now = self._now(now)
        state = self._peer(peer_id, now)
        state.link.received.record(nbytes, now)
        state.last_update = now

    def allocate_bandwidth(self, peer_id: str, mb_per_s: object) -> None:
        """Limit what is sent to *peer_id* to *mb_per_s* MB/s (``None`` or 0: no limit).

        (*mb_per_s* is an ``object`` checked here: see :meth:`update_metrics`.)
        """
        allocation = None if mb_per_s is None else _check_metric("bandwidth allocation", mb_per_s)
        now = self._clock()
        state = self._peer(peer_id, now)
        if allocation is None or allocation == 0:
            state.allocation = None
            state.allocation_bucket = None
            return
        state.allocation = allocation
        rate = allocation * BYTES_PER_MB
        if state.allocation_bucket is None:
            state.allocation_bucket = TokenBucket(rate, None, now)
        else:
            state.allocation_bucket.set_rate(rate, now)

    def get_allocation(self, peer_id: str) -> float | None:
        """Return the bandwidth allocated to *peer_id* in MB/s, or ``None`` when unlimited."""
        state = self._peers.get(peer_id)
        return None if state is None else state.allocation

    def should_throttle(
        self, peer_id: str, message_type: str, size_bytes: int, now: float | None = None
    ) -> bool:
        """Whether a *size_bytes* message of *message_type* to *peer_id* must wait now."""
        state = self._peers.get(peer_id)
        if state is None:
            return False
        now = self._now(now)
        policy = self.get_policy(message_type)
        type_bucket = state.type_buckets.get(message_type)
        if type_bucket is not None and type_bucket.time_until(size_bytes, now) > 0:
            return True
        if policy.priority == Priority.CRITICAL:
            return False
        bandwidth = state.bandwidth(now)
        if state.allocation is not None and bandwidth > state.allocation:
            return True
        if policy.max_bandwidth is not None and bandwidth > policy.max_bandwidth:
            return True
        bucket = state.allocation_bucket
        if bucket is not None and bucket.time_until(size_bytes, now) > 0:
            return True
        return state.link.queue_depth > DEEP_QUEUE_DEPTH and policy.priority >= Priority.NORMAL

    def time_until(
        self, peer_id: str, message_type: str, size_bytes: int, now: float | None = None
    ) -> float:
        """Seconds until the token buckets let this message pass (0 when they do now)."""
        state = self._peers.get(peer_id)
        if state is None:
            return 0.0
        now = self._now(now)
        wait = 0.0
        type_bucket = state.type_buckets.get(message_type)
        if type_bucket is not None:
            wait = type_bucket.time_until(size_bytes, now)
        bucket = state.allocation_bucket
        if bucket is not None and self.priority_of(message_type) != Priority.CRITICAL:
            wait = max(wait, bucket.time_until(size_bytes, now))
        return wait

    def consume(
        self, peer_id: str, message_type: str, size_bytes: int, now: float | None = None
    ) -> bool:
        """Take the tokens for a message being sent and count its bytes; False if it must wait.

        Nothing is taken when it must wait.  Critical messages are charged to
        the peer's allocation without waiting for it.
        """
        if size_bytes < 0:
            raise ValueError(f"size must be a non-negative number of bytes, not {size_bytes!r}")
        now = self._now(now)
        state = self._peer(peer_id, now)
        policy = self.get_policy(message_type)
        type_bucket = state.type_buckets.get(message_type)
        cap = policy.max_bandwidth_bytes
        if type_bucket is None and cap is not None:
            type_bucket = TokenBucket(cap, None, now)
            state.type_buckets[message_type] = type_bucket
        critical = policy.priority == Priority.CRITICAL
        bucket = state.allocation_bucket
        if type_bucket is not None and type_bucket.time_until(size_bytes, now) > 0:
            return False
        if bucket is not None and not critical and bucket.time_until(size_bytes, now) > 0:
            return False
        if type_bucket is not None:
            type_bucket.charge(size_bytes, now)
        if bucket is not None:
            bucket.charge(size_bytes, now)
        state.link.sent.record(size_bytes, now)
        state.bandwidth_measured = True
        state.last_update = now
        return True

    # ---------------------------------------------------------------- queries
    def get_metrics(self, peer_id: str) -> QoSMetrics | None:
        """Return a snapshot of *peer_id*'s metrics, or ``None`` for an unknown peer."""
        state = self._peers.get(peer_id)
        if state is None:
            return None
        now = self._clock()
        return QoSMetrics(
            peer_id=peer_id,
            latency=state.latency,
            jitter=state.jitter,
            packet_loss=state.packet_loss,
            bandwidth=state.bandwidth(now),
            queue_depth=state.link.queue_depth,
            health_score=health_score(state.latency, state.jitter, state.packet_loss),
            last_update=state.last_update,
        )

    def get_health_score(self, peer_id: str) -> int:
        """Return *peer_id*'s health score 0..100 (0 for an unknown peer, as in the original)."""
        state = self._peers.get(peer_id)
        if state is None:
            return 0
        return health_score(state.latency, state.jitter, state.packet_loss)

    def link_metrics(self, peer_id: str) -> LinkMetrics | None:
        """Return the measurements behind *peer_id*'s metrics, or ``None`` for an unknown peer."""
        state = self._peers.get(peer_id)
        return None if state is None else state.link

    def peers(self) -> list[str]:
        """Return the peers with QoS state, in the order they appeared."""
        return list(self._peers)

    def remove_peer(self, peer_id: str) -> bool:
        """Forget everything about *peer_id*; return whether it was known."""
        return self._peers.pop(peer_id, None) is not None

    # ---------------------------------------------------------------- private
    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    def _peer(self, peer_id: str, now: float) -> _Peer:
        state = self._peers.get(peer_id)
        if state is None:
            if len(self._peers) >= MAX_PEERS:
                raise Overloaded(f"QoS state for more than {MAX_PEERS} peers; remove_peer() leaks?")
            state = self._peers[peer_id] = _Peer(now)
        return state

    def _after_rtt(self, peer_id: str, state: _Peer, rtt_ms: float, now: float) -> None:
        state.latency = state.link.latency
        state.jitter = state.link.jitter
        state.last_update = now
        self._check_latency(peer_id, rtt_ms)

    def _set_measured_loss(self, peer_id: str, state: _Peer, now: float) -> None:
        state.packet_loss = state.link.packet_loss
        state.last_update = now
        self._check_loss(peer_id, state.packet_loss)

    def _check_latency(self, peer_id: str, latency: float) -> None:
        state = self._peers.get(peer_id)
        if state is None:
            return
        if not state.latency_violated and latency > LATENCY_VIOLATION_MS:
            state.latency_violated = True
            self.emit(EVENT_LATENCY_VIOLATION, {"peer_id": peer_id, "latency": latency})
        elif state.latency_violated and latency <= LATENCY_VIOLATION_MS * RECOVERY_FRACTION:
            state.latency_violated = False
            self.emit(EVENT_LATENCY_RECOVERED, {"peer_id": peer_id, "latency": latency})

    def _check_loss(self, peer_id: str, packet_loss: float) -> None:
        state = self._peers.get(peer_id)
        if state is None:
            return
        if not state.loss_violated and packet_loss > PACKET_LOSS_VIOLATION:
            state.loss_violated = True
            self.emit(EVENT_PACKET_LOSS_VIOLATION, {"peer_id": peer_id, "packet_loss": packet_loss})
        elif (state.loss_violated
              and packet_loss <= PACKET_LOSS_VIOLATION * RECOVERY_FRACTION):
            state.loss_violated = False
            self.emit(EVENT_PACKET_LOSS_RECOVERED,
                      {"peer_id": peer_id, "packet_loss": packet_loss})


def _check_metric(name: str, value: object) -> float:
    """Return *value* as a float if it is a non-negative finite number (not a
    bool), else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, not {value!r}")
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a non-negative finite number, not {value!r}")
    return float(value)


def _check_fraction(value: object) -> float:
    fraction = _check_metric("packet_loss", value)
    if fraction > 1:
        raise ValueError(
            f"packet_loss is a fraction 0..1, not {value!r} (percentages are not accepted)"
        )
    return fraction


def _check_depth(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"queue_depth must be a non-negative integer, not {value!r}")
    return value
