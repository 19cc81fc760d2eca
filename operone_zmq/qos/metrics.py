"""Measured link quality: RTT, jitter, packet loss, bandwidth and queue depth.

Rules:

- Everything is *measured*, nothing guessed, and time comes in as ``now``
  (monotonic seconds).  RTTs are in milliseconds, rates in bytes per second,
  packet loss is a fraction from 0 to 1 (never a percentage).
- RTT: the last :data:`JITTER_WINDOW` *on-time* samples are kept.  ``latency``
  is the mean of that window (smooth enough to rank links and score health,
  yet it follows a change within one window); ``min_rtt`` its minimum (the
  path's own delay: queueing and event-loop delay only add); ``last_rtt`` is
  the latest sample (late or not); ``jitter`` is the *population* standard
  deviation of the window (10, 20, 10, 20 gives 5.0, as in the original);
  fewer than two samples give a jitter of 0.  A late pong (below) is not in
  the window, so a TCP retransmission counts as loss, not as jitter.
- Over TCP a lost segment is not lost but retransmitted, at least 200 ms
  later (Linux's minimum RTO): a pong answered more than :data:`LATE_MARGIN_MS`
  after the window's fastest (``min_rtt``) is **late** and counts as lost
  (:meth:`LinkMetrics.pong_received` with ``late=True``, and ``pings_late``).
  So ``packet_loss`` is the fraction of heartbeat round trips that needed a
  retransmission or were never answered: with a loss rate p per segment in
  each direction, about 2p.  A delay that really moved up by more than the
  margin is not loss for long: after :data:`LATE_RUN` late pongs in a row,
  they are taken as the new delay (the window restarts from them and they
  count as answered).
- Packet loss comes from heartbeat sequence numbers.  :meth:`LinkMetrics.ping_sent`
  registers a sequence number; :meth:`LinkMetrics.pong_received` answers it and
  returns the RTT; a pong whose sequence number is unknown (never sent, already
  answered, or already declared lost) is ignored and returns ``None``.
- A ping is *lost* when it is not answered within a timeout
  (:meth:`LinkMetrics.expire`) or, on an ordered link (the default: one ZeroMQ
  connection delivers in order or not at all), as soon as a later ping is
  answered: that is a sequence gap.  A late pong for a ping already counted as
  lost is ignored.  At most :data:`MAX_OUTSTANDING_PINGS` pings wait for an
  answer; sending one more counts the oldest as lost.
- ``packet_loss`` is lost / resolved over the last :data:`LOSS_WINDOW` resolved
  pings (answered or lost); pings still waiting count for neither.
- :class:`BandwidthMeter` counts bytes in buckets of :data:`BANDWIDTH_RESOLUTION`
  seconds over a sliding window of :data:`BANDWIDTH_WINDOW` seconds and reports
  bytes per second over the time the window covers; during the first window
  after a link comes up it under-reports (it divides by the whole window).
- Queue depth is a plain field the send path sets (:attr:`LinkMetrics.queue_depth`).

No I/O, no clock of its own.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final

__all__ = [
    "BANDWIDTH_RESOLUTION",
    "BANDWIDTH_WINDOW",
    "DEFAULT_PING_TIMEOUT",
    "JITTER_WINDOW",
    "LATE_MARGIN_MS",
    "LATE_RUN",
    "LOSS_WINDOW",
    "MAX_OUTSTANDING_PINGS",
    "BandwidthMeter",
    "LinkMetrics",
]

#: RTT samples kept per link: the original kept the last 20; at one heartbeat a
#: second that is the last 20 s, long enough to smooth noise, short enough to
#: follow a change of route.
JITTER_WINDOW: Final = 20

#: Resolved pings over which packet loss is computed: 100 gives a resolution of
#: 1 %, fine enough to see the 5 % violation threshold, and at one heartbeat a
#: second it forgets a burst of loss within two minutes.
LOSS_WINDOW: Final = 100

#: Pings that may wait for a pong at once; more than a loss window of pings in
#: flight means the link is dead anyway, and the bound keeps memory fixed.
MAX_OUTSTANDING_PINGS: Final = LOSS_WINDOW

#: A pong later than the window's fastest RTT by more than this (ms) needed a
#: TCP retransmission: Linux retransmits after at least 200 ms, and a queueing
#: or event-loop spike of 150 ms on a LAN heartbeat is rare.
LATE_MARGIN_MS: Final = 150.0

#: Late pongs in a row after which they are the link's new delay, not loss.
LATE_RUN: Final = 3

#: Seconds after which an unanswered ping counts as lost, when the caller does
#: not say: the original's "handshake" class tolerated 5 s of latency.
DEFAULT_PING_TIMEOUT: Final = 5.0

#: Length of the bandwidth window in seconds: long enough to average bursts of
#: 64 KiB chunks, short enough to follow a transfer starting or stopping.
BANDWIDTH_WINDOW: Final = 5.0

#: Width of one bandwidth bucket in seconds: 50 buckets per window keep memory
#: fixed and the window edge accurate to 2 %.
BANDWIDTH_RESOLUTION: Final = 0.1


class BandwidthMeter:
    """Bytes per second over a sliding window, bucketed to bound memory."""

    __slots__ = ("_buckets", "_resolution", "_slots", "_total", "_total_bytes", "_window")

    def __init__(
        self, window: float = BANDWIDTH_WINDOW, resolution: float = BANDWIDTH_RESOLUTION
    ) -> None:
        if not (window > 0 and resolution > 0 and resolution <= window):
            raise ValueError(
                f"need 0 < resolution <= window, got window={window!r}, resolution={resolution!r}"
            )
        self._window = float(window)
        self._resolution = float(resolution)
        self._slots = max(1, round(window / resolution))
        # (bucket index, bytes) oldest first; at most ``_slots`` entries.
        self._buckets: deque[list[int]] = deque()
        self._total = 0
        self._total_bytes = 0

    @property
    def total_bytes(self) -> int:
        """Bytes recorded since this meter was created."""
        return self._total_bytes

    def record(self, nbytes: int, now: float) -> None:
        """Count *nbytes* bytes moved at *now*."""
        if nbytes < 0:
            raise ValueError(f"byte count must be non-negative, not {nbytes!r}")
        index = self._index(now)
        if self._buckets and self._buckets[-1][0] >= index:
            # Same bucket, or a clock that ran backwards: add to the newest bucket.
            self._buckets[-1][1] += nbytes
        else:
            self._buckets.append([index, nbytes])
        self._total += nbytes
        self._total_bytes += nbytes
        self._evict(index)

    def rate(self, now: float) -> float:
        """Return bytes per second over the window ending at *now*."""
        index = self._index(now)
        self._evict(index)
        oldest_start = (index - self._slots + 1) * self._resolution
        span = max(now - oldest_start, self._resolution)
        return self._total / span

    def _index(self, now: float) -> int:
        return math.floor(now / self._resolution)

    def _evict(self, index: int) -> None:
        limit = index - self._slots
        while self._buckets and self._buckets[0][0] <= limit:
            self._total -= self._buckets.popleft()[1]


class LinkMetrics:
    """Measured quality of one link: RTT window, heartbeat loss, bandwidth, queue depth."""

    __slots__ = (
        "_last",
        "_late_run",
        "_late_total",
        "_lost_total",
        "_outcomes",
        "_outstanding",
        "_rtts",
        "_sent_total",
        "ordered",
        "queue_depth",
        "received",
        "sent",
    )

    def __init__(self, *, ordered: bool = True) -> None:
        #: Whether a pong for a later ping proves that earlier pings were lost.
        self.ordered = ordered
        #: Messages waiting to be sent on this link (set by the send path).
        self.queue_depth = 0
        #: Bytes sent to the peer.
        self.sent = BandwidthMeter()
        #: Bytes received from the peer.
        self.received = BandwidthMeter()
        self._rtts: deque[float] = deque(maxlen=JITTER_WINDOW)
        # seq -> send time, in send order (dicts keep insertion order).
        self._outstanding: dict[int, float] = {}
        # True = lost, False = answered; the last LOSS_WINDOW resolved pings.
        self._outcomes: deque[bool] = deque(maxlen=LOSS_WINDOW)
        self._sent_total = 0
        self._lost_total = 0
        self._late_total = 0
        self._last: float | None = None
        #: The RTTs of the late pongs in a row so far.
        self._late_run: list[float] = []

    # -------------------------------------------------------------------- RTT
    def record_rtt(self, rtt_ms: float) -> None:
        """Add one round-trip time sample, in milliseconds."""
        if not (rtt_ms >= 0 and math.isfinite(rtt_ms)):
            raise ValueError(f"RTT must be a non-negative number of ms, not {rtt_ms!r}")
        self._rtts.append(float(rtt_ms))
        self._last = float(rtt_ms)

    @property
    def rtt_samples(self) -> tuple[float, ...]:
        """The RTT window, oldest first."""
        return tuple(self._rtts)

    @property
    def last_rtt(self) -> float | None:
        """The latest RTT in ms, or ``None`` before the first sample."""
        return self._last

    @property
    def latency(self) -> float:
        """Mean RTT of the window in ms (0 before the first sample)."""
        if not self._rtts:
            return 0.0
        return math.fsum(self._rtts) / len(self._rtts)

    @property
    def min_rtt(self) -> float | None:
        """The fastest on-time RTT of the window in ms (None before a sample)."""
        return min(self._rtts) if self._rtts else None

    @property
    def jitter(self) -> float:
        """Population standard deviation of the RTT window in ms (0 under two samples)."""
        n = len(self._rtts)
        if n < 2:
            return 0.0
        mean = math.fsum(self._rtts) / n
        return math.sqrt(math.fsum((x - mean) ** 2 for x in self._rtts) / n)

    # ------------------------------------------------------------------- loss
    def ping_sent(self, seq: int, now: float) -> None:
        """Register heartbeat *seq* as sent at *now* (a repeated *seq* is ignored)."""
        if seq in self._outstanding:
            return
        if len(self._outstanding) >= MAX_OUTSTANDING_PINGS:
            oldest = next(iter(self._outstanding))
            del self._outstanding[oldest]
            self._resolve(lost=True)
        self._outstanding[seq] = float(now)
        self._sent_total += 1

    def restamp(self, seq: int, sent_at: float) -> None:
        """Ping *seq* really left at *sent_at* (stamped at the socket)."""
        if seq in self._outstanding:
            self._outstanding[seq] = float(sent_at)

    def pong_received(self, seq: int, now: float) -> float | None:
        """Answer heartbeat *seq*; return its RTT in ms and record it, or ``None`` if unknown."""
        if seq not in self._outstanding:
            return None
        if self.ordered:
            # Everything sent before this ping and still unanswered was lost
            # (the dict is in send order).
            earlier: list[int] = []
            for s in self._outstanding:
                if s == seq:
                    break
                earlier.append(s)
            for s in earlier:
                del self._outstanding[s]
                self._resolve(lost=True)
        sent_at = self._outstanding.pop(seq)
        rtt_ms = max(0.0, (now - sent_at) * 1000.0)
        fastest = self.min_rtt
        if fastest is not None and rtt_ms > fastest + LATE_MARGIN_MS:
            # Retransmitted on the way (TCP): a loss, not a slow sample.
            self._late_run.append(rtt_ms)
            if len(self._late_run) < LATE_RUN:
                self._late_total += 1
                self._resolve(lost=True)
                self._last = rtt_ms
                return rtt_ms
            # The delay moved: these are its new level, answered in time.
            run, self._late_run = self._late_run, []
            flipped = 0
            while flipped < len(run) - 1 and self._outcomes and self._outcomes[-1]:
                self._outcomes.pop()
                flipped += 1
            self._lost_total -= flipped
            self._late_total -= flipped
            self._outcomes.extend([False] * flipped)
            self._rtts.clear()
            for x in run[:-1]:
                self._rtts.append(x)
        else:
            self._late_run.clear()
        self._resolve(lost=False)
        self.record_rtt(rtt_ms)
        return rtt_ms

    def expire(self, now: float, timeout: float = DEFAULT_PING_TIMEOUT) -> int:
        """Count pings unanswered for more than *timeout* seconds as lost; return how many."""
        expired = [s for s, t in self._outstanding.items() if now - t > timeout]
        for s in expired:
            del self._outstanding[s]
            self._resolve(lost=True)
        return len(expired)

    @property
    def packet_loss(self) -> float:
        """Fraction (0..1) of the last resolved pings that were lost."""
        if not self._outcomes:
            return 0.0
        return sum(self._outcomes) / len(self._outcomes)

    @property
    def pings_outstanding(self) -> int:
        """Pings sent and neither answered nor declared lost yet."""
        return len(self._outstanding)

    @property
    def pings_sent(self) -> int:
        """Pings registered since this link was created."""
        return self._sent_total

    @property
    def pings_late(self) -> int:
        """Pongs counted as lost for being late (a retransmission) since creation."""
        return self._late_total

    @property
    def pings_lost(self) -> int:
        """Pings declared lost since this link was created."""
        return self._lost_total

    def _resolve(self, *, lost: bool) -> None:
        self._outcomes.append(lost)
        if lost:
            self._lost_total += 1
