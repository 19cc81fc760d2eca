"""Damping of link-state churn: cost bands, LSA pacing, SPF throttling, liveness.

A broker measures its links' RTT every heartbeat.  Advertising every wobble
of that measurement made each broker re-flood its LSA several times a
second at 50 brokers (100 % of LSA traffic was RTT-driven) and every LSA
made every broker rerun Dijkstra on the loop that also runs heartbeats.
The four classes here damp it the way link-state protocols do.  Each is a
pure state machine: ``now`` (monotonic seconds) in, decisions out.

:class:`CostBand` -- one per link: what cost to advertise.

* Samples go through a minimum-of-window filter (:data:`RTT_WINDOW` samples):
  queueing and event-loop delay only ever *add* to a round trip, so the
  minimum is the best estimate of the path's own delay.  A spike must last
  for the whole window to move the filtered value; a delay that goes away
  is seen on the first quick sample.
* The filtered RTT is quantised into bands whose edges are
  :data:`BAND_EDGES_MS` (a 1-2-5 series from 20 ms).  Band 0 is
  ``[0, 20)`` ms, band ``i`` is ``[edge[i-1], edge[i])``; the last band is
  open.  The advertised cost of band 0 is :data:`LAN_COST_MS` (1 ms, the
  link cost before any measurement, so a fresh LAN link's first samples
  change nothing); band ``i > 0`` advertises its lower edge.
* Hysteresis: from band ``i`` the cost moves up only when the filtered RTT
  reaches ``upper edge * (1 + margin)``, and down only when it falls below
  ``lower edge / (1 + margin)`` (default :data:`HYSTERESIS` 0.25).  It then
  enters the band that contains the value.  A measurement that wanders
  around an edge therefore never toggles the cost.
* Until the window is full the cost stays at its initial band 0 (one spiked
  first sample must not cost two LSAs); a WAN link therefore advertises its
  real band ``RTT_WINDOW`` heartbeats after it comes up.
* Why these edges: on one host or one LAN the measured RTT is dominated by
  the event loop (1-5 ms median and spikes of tens of ms on a quiet
  machine; samples of 1-20 ms and spikes to 200 ms with 50 brokers on 2
  cores; the wire itself is 0.05 ms), so everything below 20 ms is one
  band: "near".  Equal LAN paths then cost exactly the same and the
  deterministic tie-break of Dijkstra keeps choosing the same one: equal
  paths do not flap.  (``scripts/simulate.py --churn --noise loaded``
  shows the choice: with a first edge at 10 ms or a window of 3, 50 loaded
  brokers still flip 100-480 routes a minute; with 20 ms and 5 samples,
  about 2.)  Above that, each band is at most 2.5x its lower edge, so a
  route is never more than ~2.5x worse than the best one because of
  quantisation, and a 40 ms delay added to a 3 ms link (issue 15's test)
  moves the cost from 1 to 20 after ``RTT_WINDOW`` heartbeats.

:class:`LsaPacer` -- one per broker: when to originate our LSA.

* :meth:`LsaPacer.request` marks a change to advertise.  ``urgent`` changes
  (an adjacency up or down, tools or workers appearing, a stale copy of our
  own LSA seen) may go out :data:`URGENT_LS_INTERVAL` after the previous
  LSA; others (link cost bands, load) only :data:`MIN_LS_INTERVAL` after
  it (OSPF's MinLSInterval idea).  Everything requested meanwhile is
  coalesced into the one LSA sent at the end of the interval.
* Urgent changes are not exempt, only faster: when a switch dies, the ten
  links it carried go down within milliseconds and must still make one
  LSA, not ten.  They are fast because failover time is detection +
  this interval + flooding.
* A periodic refresh counts as an origination (:meth:`LsaPacer.sent`), and
  clears whatever was pending, since it carries the current state.

:class:`SpfThrottle` -- one per broker: when to rerun Dijkstra.

* As OSPF's ``timers throttle spf start hold max-wait``: the first change
  after a quiet period runs SPF :data:`SPF_START` s later (a burst of LSAs
  costs one run); a change while the previous run is recent waits until
  ``last run + hold``, where hold starts at :data:`SPF_HOLD` and doubles
  with each such run, up to :data:`SPF_MAX_WAIT`.  When no change arrives
  for twice the current hold after a run, hold is reset.
* ``trigger(now, urgent=True)`` -- reachability changed: a node or a
  link appeared or went away (``LinkStateDB.adjacency_version`` moved),
  not just a cost -- runs after the initial delay whatever the hold
  (failover must not wait for the back-off, and a new link must be usable
  at once); the run still counts for the back-off of later ones.  Cost
  churn is what the back-off is for; adjacency changes are bounded by
  liveness (3 s) and the HELLO back-off.

:class:`PeerLiveness` -- one per broker: which neighbours are silent.

* A neighbour is dead when nothing was *received* from it for ``silence``
  seconds of time the broker was listening.  ``heard(peer, at)`` takes the
  time the socket layer received the message (stamped by the shell right
  after ``recv``, before any processing), so a long batch of processing
  cannot make a message look late.
* :meth:`PeerLiveness.loop_ran` is called on every timer tick; a gap
  between ticks longer than ``period + STALL_GRACE`` means the broker
  itself was not running (a long recompute, the OS not scheduling it).
  The excess is a stall, and silence during a stall is not evidence: every
  neighbour's deadline moves by it.  Only a broker that was listening and
  heard nothing declares a neighbour dead.
* The shell must drain readable sockets before calling :meth:`dead` (a
  tick that finds input pending processes it first), so a PONG sitting in
  a socket buffer always counts.

No I/O; every method takes ``now``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import Final

__all__ = [
    "BAND_EDGES_MS",
    "HYSTERESIS",
    "LAN_COST_MS",
    "MAX_STALL_CREDIT",
    "MIN_LS_INTERVAL",
    "RTT_WINDOW",
    "SPF_HOLD",
    "SPF_MAX_WAIT",
    "SPF_START",
    "STALL_GRACE",
    "URGENT_LS_INTERVAL",
    "CostBand",
    "LsaPacer",
    "PeerLiveness",
    "SpfThrottle",
    "band_cost",
    "band_of",
]

#: Upper edges of the cost bands, ms (band 0 is below the first edge; the
#: last band is open).  A 1-2-5 series from 10 ms: see the module docstring.
BAND_EDGES_MS: Final[tuple[float, ...]] = (
    20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0,
)

#: Advertised cost of band 0 (ms): equal to the link cost before any RTT is
#: measured, so a LAN link's first measurement does not cause an LSA.
LAN_COST_MS: Final = 1.0

#: Fraction by which the filtered RTT must pass a band edge to change band.
#: 25 % is above the ~10-20 % spread of the minimum of a few samples on a
#: steady link, and small enough that a real change of one band is followed.
HYSTERESIS: Final = 0.25

#: RTT samples in the minimum filter.  At one heartbeat a second a spike
#: must last 5 s to move a cost, and an added delay is followed after 5 s
#: (a removed one after 1).  A link that stops answering is liveness's
#: business (3 s), not the cost's, so following slowdowns more slowly than
#: that is the right trade against flapping under load.
RTT_WINDOW: Final = 5

#: Seconds between two non-urgent LSAs of one node (cost bands, load):
#: OSPF's MinLSInterval is 5 s.  At 50 brokers this bounds metric-driven
#: origination to 0.2 LSA/s per broker whatever the measurements do.
MIN_LS_INTERVAL: Final = 5.0

#: Seconds between two LSAs when the change is urgent (adjacency up/down,
#: tools or workers, a stale copy of ours): the broker's previous
#: LSA_MIN_INTERVAL, short against the 3 s detection time.
URGENT_LS_INTERVAL: Final = 0.05

#: SPF initial delay after a quiet period, s (the broker's previous SPF_DELAY).
SPF_START: Final = 0.05
#: First hold between two SPF runs under repeated changes, s; doubles per run.
SPF_HOLD: Final = 0.2
#: Longest hold, s: under sustained churn SPF runs at most every 2 s, still
#: below the 3 s liveness timeout, so routing lags detection by at most that.
SPF_MAX_WAIT: Final = 2.0

#: A timer tick this much later than its period (s) counts as a stall of the
#: broker itself.  Below it is ordinary scheduling noise.
STALL_GRACE: Final = 0.25

#: Most stall credit one neighbour can accumulate, as a multiple of
#: ``silence``: a broker that keeps stalling must still, eventually, notice
#: that a neighbour is gone.
MAX_STALL_CREDIT: Final = 3.0


def _check_time(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return value


def band_of(rtt_ms: float, edges: Sequence[float] = BAND_EDGES_MS) -> int:
    """Return the band containing ``rtt_ms`` (0 below the first edge)."""
    for i, edge in enumerate(edges):
        if rtt_ms < edge:
            return i
    return len(edges)


def band_cost(band: int, edges: Sequence[float] = BAND_EDGES_MS) -> float:
    """Return the cost advertised for ``band``: LAN_COST_MS for band 0, else its lower edge."""
    if not 0 <= band <= len(edges):
        raise ValueError(f"band must be in [0, {len(edges)}], got {band}")
    return LAN_COST_MS if band == 0 else float(edges[band - 1])


class CostBand:
    """The advertised cost of one link: min-of-window RTT, quantised, with hysteresis."""

    __slots__ = ("_edges", "_margin", "_samples", "band", "changes")

    def __init__(
        self,
        edges: Sequence[float] = BAND_EDGES_MS,
        *,
        margin: float = HYSTERESIS,
        window: int = RTT_WINDOW,
    ) -> None:
        if not edges or any(b <= a for a, b in pairwise(edges)):
            raise ValueError("band edges must be a non-empty increasing sequence")
        if edges[0] <= LAN_COST_MS:
            raise ValueError(f"the first band edge must be above {LAN_COST_MS} ms")
        if not 0.0 <= margin < 1.0:
            raise ValueError("margin must be in [0, 1)")
        if window < 1:
            raise ValueError("window must be at least 1")
        self._edges = tuple(float(e) for e in edges)
        self._margin = margin
        self._samples: deque[float] = deque(maxlen=window)
        #: Current band (0 until the first sample).
        self.band = 0
        #: How many times the advertised cost changed.
        self.changes = 0

    @property
    def cost(self) -> float:
        """The cost to advertise, ms."""
        return band_cost(self.band, self._edges)

    @property
    def measured(self) -> float | None:
        """The filtered RTT (minimum of the window), ms, or None before any sample."""
        return min(self._samples) if self._samples else None

    def sample(self, rtt_ms: float) -> bool:
        """Fold in one RTT sample (ms); return whether the advertised cost changed."""
        if not math.isfinite(rtt_ms) or rtt_ms < 0:
            raise ValueError(f"an RTT must be a finite number >= 0, got {rtt_ms!r}")
        samples = self._samples
        samples.append(rtt_ms)
        if len(samples) < (samples.maxlen or 1):
            return False
        value = min(samples)
        edges = self._edges
        band = self.band
        up = edges[band] * (1 + self._margin) if band < len(edges) else math.inf
        down = edges[band - 1] / (1 + self._margin) if band > 0 else -math.inf
        new = band_of(value, edges) if value >= up or value < down else band
        if new == band:
            return False
        self.band = new
        self.changes += 1
        return True


class LsaPacer:
    """When to originate our LSA: coalesce changes, MinLSInterval between LSAs."""

    __slots__ = ("_interval", "_last", "_pending", "_urgent", "_urgent_interval")

    def __init__(
        self,
        interval: float = MIN_LS_INTERVAL,
        urgent_interval: float = URGENT_LS_INTERVAL,
    ) -> None:
        if not 0 <= urgent_interval <= interval:
            raise ValueError("need 0 <= urgent_interval <= interval")
        self._interval = interval
        self._urgent_interval = urgent_interval
        self._last = -math.inf
        self._pending = False
        self._urgent = False

    @property
    def pending(self) -> bool:
        """Whether a change waits to be advertised."""
        return self._pending

    def request(self, now: float, *, urgent: bool = False) -> None:
        """Mark a change to advertise (``urgent``: adjacency, tools, stale self)."""
        _check_time(now, "now")
        self._pending = True
        self._urgent = self._urgent or urgent

    def next_deadline(self) -> float | None:
        """When the pending change may be originated, or None if nothing is pending."""
        if not self._pending:
            return None
        return self._last + (self._urgent_interval if self._urgent else self._interval)

    def due(self, now: float) -> bool:
        """Whether to originate now."""
        at = self.next_deadline()
        return at is not None and now >= at

    def sent(self, now: float) -> None:
        """Record that our LSA was originated now (a change or a refresh)."""
        self._last = _check_time(now, "now")
        self._pending = False
        self._urgent = False


class SpfThrottle:
    """When to rerun SPF: initial delay, exponential hold under churn, reset when quiet."""

    __slots__ = ("_due", "_hold", "_last_run", "_max_wait", "_start", "_start_hold", "runs")

    def __init__(
        self, start: float = SPF_START, hold: float = SPF_HOLD, max_wait: float = SPF_MAX_WAIT
    ) -> None:
        if not 0 <= start <= max_wait or not 0 < hold <= max_wait:
            raise ValueError("need 0 <= start <= max_wait and 0 < hold <= max_wait")
        self._start = start
        self._start_hold = hold
        self._max_wait = max_wait
        self._hold = hold
        self._last_run = -math.inf
        self._due: float | None = None
        #: SPF runs so far.
        self.runs = 0

    @property
    def hold(self) -> float:
        """The current hold between runs, s."""
        return self._hold

    def trigger(self, now: float, *, urgent: bool = False) -> None:
        """A topology change was seen: schedule a run (if none is scheduled).
        ``urgent`` (an adjacency changed): no later than the initial delay."""
        _check_time(now, "now")
        if self._due is not None:
            if urgent:
                self._due = min(self._due, now + self._start)
            return
        if urgent:
            self._due = now + self._start
            if now - self._last_run < 2 * self._hold:
                self._hold = min(2 * self._hold, self._max_wait)
            return
        since = now - self._last_run
        if since >= 2 * self._hold:
            self._hold = self._start_hold  # quiet: back to the initial delay
            self._due = now + self._start
        else:
            self._due = max(now + self._start, self._last_run + self._hold)
            self._hold = min(2 * self._hold, self._max_wait)

    def next_deadline(self) -> float | None:
        """When the scheduled run is due, or None."""
        return self._due

    def due(self, now: float) -> bool:
        """Whether to run SPF now."""
        return self._due is not None and now >= self._due

    def ran(self, now: float) -> None:
        """Record that SPF ran now."""
        self._last_run = _check_time(now, "now")
        self._due = None
        self.runs += 1


class PeerLiveness:
    """Neighbours silent for ``silence`` s of time we were listening (see the module rules)."""

    __slots__ = ("_credit", "_heard", "_last_tick", "period", "silence", "stalls")

    def __init__(self, silence: float, period: float) -> None:
        if not 0 < period <= silence:
            raise ValueError("need 0 < period <= silence")
        self.silence = silence
        self.period = period
        self._heard: dict[str, float] = {}
        self._credit: dict[str, float] = {}
        self._last_tick: float | None = None
        #: Stalls of our own loop seen so far.
        self.stalls = 0

    def heard(self, peer: str, at: float) -> None:
        """A message from ``peer`` was received by the socket layer at ``at``."""
        _check_time(at, "at")
        if at >= self._heard.get(peer, -math.inf):
            self._heard[peer] = at
            self._credit[peer] = 0.0

    def forget(self, peer: str) -> None:
        """Stop tracking ``peer`` (its link is gone)."""
        self._heard.pop(peer, None)
        self._credit.pop(peer, None)

    def loop_ran(self, now: float) -> float:
        """Record a timer tick; return the stall (s) it revealed, 0 if none."""
        _check_time(now, "now")
        last = self._last_tick
        self._last_tick = now
        if last is None:
            return 0.0
        stall = now - last - self.period - STALL_GRACE
        if stall <= 0:
            return 0.0
        self.stalls += 1
        cap = MAX_STALL_CREDIT * self.silence
        for peer in self._credit:
            self._credit[peer] = min(cap, self._credit[peer] + stall)
        return stall

    def silent_for(self, peer: str, now: float) -> float:
        """Seconds of listening time with nothing from ``peer`` (inf if never heard)."""
        at = self._heard.get(peer)
        if at is None:
            return math.inf
        return max(0.0, now - at - self._credit.get(peer, 0.0))

    def dead(self, now: float, peers: Iterable[str] | None = None) -> list[str]:
        """Return the tracked peers (or those of ``peers``) silent for ``silence`` s, sorted."""
        names = self._heard if peers is None else peers
        heard = self._heard
        return sorted(p for p in names if p in heard and self.silent_for(p, now) >= self.silence)
