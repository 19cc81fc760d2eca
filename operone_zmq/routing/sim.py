"""An in-memory simulator of link-state flooding between many brokers.

Each simulated node owns a real :class:`~operone_zmq.routing.lsdb.LinkStateDB`,
a :class:`~operone_zmq.routing.lsdb.Flooder` and a lazily computed
:class:`~operone_zmq.routing.dijkstra.RoutingTable`, exactly the objects a
broker uses; only the network is virtual.  Rules of the virtual network:

* Time is virtual (seconds, a float starting at 0) and moves only from one
  event to the next; events sit in a binary heap ordered by (time, sequence
  number), so runs are deterministic for a given seed.
* Every link has a fixed one-way delay drawn uniformly from ``delay`` when
  the topology is built; the link cost each end advertises is the round
  trip, ``2 * delay`` in ms, as a broker would measure it.
* A node does not send each accepted LSA at once: it queues it in its
  Flooder and flushes the queue ``pacing`` seconds after the first queued
  LSA (one message per neighbour carrying every queued LSA), as a broker
  that drains and batches its sockets does.  ``pacing=0`` flushes at the
  same virtual instant, after every delivery already due then.
* A message on a link that is cut, or to a node that is dead, by the time
  it arrives is lost.  Link and node failures are noticed by the
  neighbours after ``detect_delay`` seconds (the heartbeat timeout), which
  then re-originate their LSAs without the link.
* A link that comes up makes both ends re-originate and send each other
  their whole database (database exchange), so a healed partition
  converges even though each side may hold stale LSAs of the other.

The network has *converged* when, within every connected component of the
alive nodes, all databases are identical (same origins and seqs: compared
by :meth:`LinkStateDB.same_as`) and hold the newest LSA of every member
of the component.  Identical databases give identical graphs, and the
deterministic tie-break of :func:`shortest_paths` then gives every node the
same routing view; :meth:`Simulator.check_forwarding` verifies it by
walking sample routes hop by hop through each node's own routing table.

Measured link costs (:meth:`Simulator.measure_churn`).  The phases above
advertise fixed costs.  ``measure_churn`` instead lets every node ping each
neighbour once per ``ping_interval`` (each node at its own random phase)
and draw an RTT sample of ``2 * delay`` plus event-loop noise
(:class:`RttNoise`: uniform 1-5 ms, and with probability 5 % a spike of
5-30 ms more, as measured on one machine in issue 15).  Each node then
applies one of two policies and the phase counts LSAs originated and
sent, SPF runs and next-hop changes per node:

* ``"legacy"`` -- the broker before damping: cost = EWMA (weight 0.3) of
  the samples, re-originate when it moved by more than max(1 ms, 50 %) of
  the advertised cost, at most one LSA per 50 ms, SPF 50 ms after each
  topology change;
* ``"damped"`` -- :mod:`operone_zmq.routing.damping`: a :class:`CostBand`
  per link, an :class:`LsaPacer` and an :class:`SpfThrottle` per node, the
  routing table recomputed only when the throttle says so.

No I/O and no real time: ``scripts/simulate.py`` drives this module.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from operone_zmq.routing.damping import CostBand, LsaPacer, SpfThrottle
from operone_zmq.routing.dijkstra import Graph, RoutingTable
from operone_zmq.routing.lsa import DEFAULT_MAX_AGE, LSA, LinkInfo
from operone_zmq.routing.lsdb import MAX_LSDB_ENTRIES, Flooder, LinkStateDB

__all__ = [
    "DEFAULT_DELAY",
    "DEFAULT_PACING",
    "MAX_SIM_EVENTS",
    "MAX_SIM_NODES",
    "NOISE_PROFILES",
    "POLICIES",
    "ChurnReport",
    "RttNoise",
    "SimNode",
    "SimReport",
    "Simulator",
    "node_ids",
    "random_topology",
]

#: Nodes one simulation may have: one database entry per node per node,
#: so memory grows with the square (4.4 GB measured at 10,000 nodes, so
#: about 18 GB at this bound).
MAX_SIM_NODES: Final = 20_000

#: Events processed by one ``run`` before it gives up: a safety net against
#: a flooding bug that never dies out (10,000 nodes converge from a cold
#: start in about 1.2 million events).
MAX_SIM_EVENTS: Final = 50_000_000

#: One-way link delay range, seconds: 1 ms (same room) to 20 ms (across a
#: country), i.e. advertised RTT costs of 2 to 40 ms.
DEFAULT_DELAY: Final = (0.001, 0.020)

#: Flood pacing, seconds: how long a node gathers accepted LSAs before
#: sending them on in one message per neighbour.  5 ms is below any link
#: delay that matters and merges the bursts of a network-wide flood.
DEFAULT_PACING: Final = 0.005

_DELIVER: Final = 0
_FLUSH: Final = 1
_DETECT_DOWN: Final = 2
_TIMER: Final = 3
_PING: Final = 4
_PACE: Final = 5
_SPF: Final = 6

#: Policies :meth:`Simulator.measure_churn` knows (module docstring).
POLICIES: Final = ("legacy", "damped")

# The broker before damping (core/peers.py and core/broker.py at the time).
_LEGACY_ALPHA: Final = 0.3
_LEGACY_MIN_INTERVAL: Final = 0.05
_LEGACY_SPF_DELAY: Final = 0.05


@dataclass(frozen=True)
class RttNoise:
    """Event-loop noise added to a link's true RTT by each measurement (ms)."""

    low_ms: float = 1.0
    high_ms: float = 5.0
    spike_probability: float = 0.05
    spike_low_ms: float = 5.0
    spike_high_ms: float = 30.0

    def sample(self, rng: random.Random, base_ms: float) -> float:
        """Return one measured RTT for a link whose true RTT is ``base_ms``."""
        rtt = base_ms + rng.uniform(self.low_ms, self.high_ms)
        if rng.random() < self.spike_probability:
            rtt += rng.uniform(self.spike_low_ms, self.spike_high_ms)
        return rtt


#: Noise profiles for :meth:`Simulator.measure_churn`: ``quiet`` is a
#: 4-broker mesh on one machine (issue 15: median 3 ms, spikes to 28 ms);
#: ``loaded`` is 50 brokers on 2 cores (issue 15: 8-214 ms under load).
NOISE_PROFILES: Final = {
    "quiet": RttNoise(),
    "loaded": RttNoise(1.0, 20.0, 0.2, 10.0, 200.0),
}


@dataclass(frozen=True)
class ChurnReport:
    """What :meth:`Simulator.measure_churn` counted, per alive node."""

    policy: str
    nodes: int
    seconds: float
    #: Own LSAs originated per node per second (refreshes included).
    originated_per_s: float
    #: LSAs sent per node per second (flooded copies included).
    sent_per_s: float
    #: SPF (routing table) computations per node per second.
    spf_per_s: float
    #: Next-hop changes per node per minute, over all destinations.
    route_flips_per_min: float

    def summary(self) -> str:
        """Return a one-line human-readable summary."""
        return (
            f"{self.policy:<7} {self.nodes:>5} nodes, {self.seconds:g} s: "
            f"{self.originated_per_s:.3f} LSAs originated/s/node, "
            f"{self.sent_per_s:.2f} LSAs sent/s/node, {self.spf_per_s:.2f} SPF/s/node, "
            f"{self.route_flips_per_min:.2f} route flips/min/node"
        )


class _Legacy:
    """Cost measurement of the broker before damping, for one node."""

    __slots__ = ("advertised", "ewma")

    def __init__(self) -> None:
        self.ewma: dict[str, float] = {}
        self.advertised: dict[str, float] = {}

    def sample(self, nb: str, rtt: float) -> bool:
        old = self.ewma.get(nb)
        cur = rtt if old is None else old + _LEGACY_ALPHA * (rtt - old)
        self.ewma[nb] = cur
        adv = self.advertised.get(nb, 1.0)
        return abs(cur - adv) > max(1.0, 0.5 * adv)

    def cost(self, nb: str) -> float | None:
        cur = self.ewma.get(nb)
        if cur is None:
            return None
        self.advertised[nb] = cur
        return round(cur, 3)


class _Damped:
    """Cost bands of one node."""

    __slots__ = ("bands",)

    def __init__(self) -> None:
        self.bands: dict[str, CostBand] = {}

    def sample(self, nb: str, rtt: float) -> bool:
        band = self.bands.get(nb)
        if band is None:
            band = self.bands[nb] = CostBand()
        return band.sample(rtt)

    def cost(self, nb: str) -> float | None:
        band = self.bands.get(nb)
        return None if band is None else band.cost


def node_ids(n: int) -> list[str]:
    """Return ``n`` node ids that sort in numeric order (``n0000``, ``n0001``...)."""
    width = max(4, len(str(n - 1)))
    return [f"n{i:0{width}d}" for i in range(n)]


def random_topology(
    n: int, degree: float = 4.0, *, links: int | None = None, seed: int = 0
) -> tuple[list[str], list[tuple[str, str]]]:
    """Return ``(nodes, edges)`` of a random connected graph.

    A random recursive tree (node i joins a uniformly chosen earlier node)
    makes it connected; random extra edges then bring the edge count to
    ``links`` (default ``n * degree / 2``, i.e. average degree ``degree``).
    Deterministic for a given seed.
    """
    if n < 1:
        raise ValueError("need at least one node")
    rng = random.Random(seed)
    nodes = node_ids(n)
    target = int(n * degree / 2) if links is None else links
    target = max(n - 1, min(target, n * (n - 1) // 2))
    pairs: set[tuple[int, int]] = set()
    for i in range(1, n):
        j = rng.randrange(i)
        pairs.add((j, i))
    while len(pairs) < target:
        a = rng.randrange(n)
        b = rng.randrange(n)
        if a != b:
            pairs.add((a, b) if a < b else (b, a))
    edges = [(nodes[a], nodes[b]) for a, b in sorted(pairs)]
    return nodes, edges


class SimNode:
    """One simulated broker: database, flooder, routing table and counters."""

    __slots__ = (
        "alive",
        "flips",
        "flooder",
        "flush_at",
        "id",
        "lsas_received",
        "lsas_sent",
        "lsdb",
        "messages_received",
        "messages_sent",
        "neighbors",
        "originated",
        "pace_at",
        "pacer",
        "policy",
        "spf_at",
        "table",
        "throttle",
        "timer_at",
    )

    def __init__(self, node_id: str, initial_seq: int = 1) -> None:
        self.id = node_id
        self.lsdb = LinkStateDB(node_id, initial_seq=initial_seq, max_entries=MAX_LSDB_ENTRIES)
        self.flooder = Flooder()
        self.table = RoutingTable(self.lsdb)
        #: neighbour -> one-way delay in seconds, for links that are up.
        self.neighbors: dict[str, float] = {}
        self.alive = True
        self.flush_at: float | None = None
        self.timer_at: float | None = None
        self.messages_sent = 0
        self.messages_received = 0
        self.lsas_sent = 0
        self.lsas_received = 0
        # Measured-cost policy (measure_churn), or None for fixed costs.
        self.policy: _Legacy | _Damped | None = None
        self.pacer: LsaPacer | None = None
        self.throttle: SpfThrottle | None = None
        self.pace_at: float | None = None
        self.spf_at: float | None = None
        self.originated = 0
        self.flips = 0


@dataclass(frozen=True)
class SimReport:
    """What one simulated phase (start, cut, kill, heal) cost and how long it took."""

    #: What was done ("start", "cut n0001-n0007"...).
    action: str
    #: Alive nodes at the end.
    nodes: int
    #: Links up at the end.
    links: int
    #: Whether the network converged (see the module docstring).
    converged: bool
    #: Virtual seconds from the action to the last database change.
    convergence_time: float
    #: Messages (LSA batches) sent per alive node during the phase.
    messages_per_node: float
    #: LSAs sent per alive node during the phase (a message carries several).
    lsas_per_node: float
    #: Events processed.
    events: int
    #: Real seconds the phase took to simulate (0 without a ``wall_clock``).
    wall_seconds: float

    def summary(self) -> str:
        """Return a one-line human-readable summary."""
        return (
            f"{self.action}: {self.nodes} nodes, {self.links} links, "
            f"{'converged' if self.converged else 'NOT converged'} in "
            f"{self.convergence_time * 1000:.1f} ms virtual; "
            f"{self.messages_per_node:.1f} messages/node, {self.lsas_per_node:.1f} LSAs/node; "
            f"{self.events} events, {self.wall_seconds:.2f} s wall"
        )


class Simulator:
    """A virtual network of :class:`SimNode` exchanging LSAs over delayed links."""

    def __init__(
        self,
        nodes: list[str],
        edges: list[tuple[str, str]],
        *,
        seed: int = 0,
        delay: tuple[float, float] = DEFAULT_DELAY,
        pacing: float = DEFAULT_PACING,
        detect_delay: float = 0.0,
        max_age: float = DEFAULT_MAX_AGE,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        if len(nodes) > MAX_SIM_NODES:
            raise ValueError(f"at most {MAX_SIM_NODES} nodes")
        self.rng = random.Random(seed)
        self.delay = delay
        self.pacing = pacing
        self.detect_delay = detect_delay
        self.max_age = max_age
        self._wall_clock = wall_clock
        #: Virtual time, seconds.
        self.now = 0.0
        self.nodes: dict[str, SimNode] = {n: SimNode(n) for n in nodes}
        #: Links that are physically up: (a, b) with a < b -> one-way delay.
        self.links: dict[tuple[str, str], float] = {}
        self._queue: list[tuple[float, int, int, Any, Any, Any]] = []
        self._seq = 0
        self._active = 0  # queued events other than refresh/expiry timers
        self._last_change = 0.0
        # Links of killed nodes, restored by restart_node.
        self._dead_links: dict[str, dict[str, float]] = {}
        #: Events processed so far.
        self.events = 0
        for a, b in edges:
            self._link_up(a, b, self.rng.uniform(*delay))

    @classmethod
    def random(
        cls,
        n: int,
        degree: float = 4.0,
        *,
        seed: int = 0,
        delay: tuple[float, float] = DEFAULT_DELAY,
        pacing: float = DEFAULT_PACING,
        detect_delay: float = 0.0,
        max_age: float = DEFAULT_MAX_AGE,
        wall_clock: Callable[[], float] | None = None,
    ) -> Simulator:
        """Build a simulator over :func:`random_topology` ``(n, degree, seed)``.

        The keywords are :class:`Simulator`'s, spelled out (mypyc cannot build
        a classmethod taking ``**kwargs`` after keyword-only arguments).
        """
        nodes, edges = random_topology(n, degree, seed=seed)
        return cls(nodes, edges, seed=seed, delay=delay, pacing=pacing,
                   detect_delay=detect_delay, max_age=max_age, wall_clock=wall_clock)

    # ------------------------------------------------------------ plumbing
    def _push(self, at: float, kind: int, a: Any, b: Any = None, c: Any = None) -> None:
        self._seq += 1
        if kind < _TIMER:
            self._active += 1
        heapq.heappush(self._queue, (at, self._seq, kind, a, b, c))

    def _link_up(self, a: str, b: str, delay: float) -> None:
        if a == b:
            raise ValueError(f"self-loop on {a}")
        na, nb = self.nodes[a], self.nodes[b]
        self.links[(a, b) if a < b else (b, a)] = delay
        na.neighbors[b] = delay
        nb.neighbors[a] = delay
        na.flooder.add_neighbor(b)
        nb.flooder.add_neighbor(a)

    def _originate(self, node: SimNode) -> None:
        policy = node.policy
        if policy is None:
            links = tuple(
                LinkInfo(nb, round(2000.0 * d, 3)) for nb, d in sorted(node.neighbors.items())
            )
        else:
            links = tuple(
                LinkInfo(nb, c if (c := policy.cost(nb)) is not None else 1.0)
                for nb in sorted(node.neighbors)
            )
        node.originated += 1
        if node.pacer is not None:
            node.pacer.sent(self.now)
        lsa = node.lsdb.originate(
            links, ("echo",), (), 0.0, 1, self.now, name=node.id, max_age=self.max_age
        )
        self._last_change = self.now
        node.flooder.installed((lsa,), None)
        self._schedule_flush(node)
        self._schedule_timer(node)

    def _schedule_flush(self, node: SimNode) -> None:
        if node.flush_at is None and len(node.flooder):
            node.flush_at = self.now + self.pacing
            self._push(node.flush_at, _FLUSH, node)

    def _schedule_timer(self, node: SimNode) -> None:
        deadline = node.lsdb.next_deadline()
        if deadline is not None and (node.timer_at is None or deadline < node.timer_at):
            node.timer_at = deadline
            self._push(deadline, _TIMER, node)

    def _flush(self, node: SimNode) -> None:
        node.flush_at = None
        if not node.alive:
            return
        now = self.now
        nodes = self.nodes
        for nb, batch in node.flooder.take().items():
            delay = node.neighbors.get(nb)
            if delay is None:
                continue
            node.messages_sent += 1
            node.lsas_sent += len(batch)
            self._push(now + delay, _DELIVER, node.id, nodes[nb], batch)

    def _deliver(self, sender: str, node: SimNode, batch: list[LSA]) -> None:
        me = node.id
        if not node.alive or ((sender, me) if sender < me else (me, sender)) not in self.links:
            return  # lost: the node died or the link was cut while it was in flight
        node.messages_received += 1
        node.lsas_received += len(batch)
        lsdb = node.lsdb
        topology = lsdb.topology_version
        adjacency = lsdb.adjacency_version
        result = lsdb.install_many(batch, self.now, sender)
        if node.throttle is not None and lsdb.topology_version != topology:
            self._spf_trigger(node, urgent=lsdb.adjacency_version != adjacency)
        flooder = node.flooder
        if result.accepted:
            flooder.installed(result.accepted, sender)
            self._last_change = self.now
        if result.duplicates:
            flooder.already_has(result.duplicates, sender)
        if result.older:
            ours = [lsdb.get(lsa.origin) for lsa in result.older]
            flooder.queue_for(sender, [lsa for lsa in ours if lsa is not None])
        if lsdb.needs_reorigination:
            self._originate(node)
        self._schedule_flush(node)
        if result.accepted:
            self._schedule_timer(node)

    def _timer(self, node: SimNode) -> None:
        if node.timer_at != self.now:
            return  # superseded by an earlier timer
        node.timer_at = None
        if not node.alive:
            return
        if node.lsdb.expire(self.now):
            self._last_change = self.now
        if node.lsdb.refresh_due(self.now):
            self._originate(node)
        self._schedule_timer(node)

    # ------------------------------------------------- measured link costs
    def _spf_trigger(self, node: SimNode, *, urgent: bool = False) -> None:
        throttle = node.throttle
        if throttle is None:
            return
        throttle.trigger(self.now, urgent=urgent)
        at = throttle.next_deadline()
        if at is not None and node.spf_at != at:
            node.spf_at = at
            self._push(at, _SPF, node)

    def _spf(self, node: SimNode) -> None:
        throttle = node.throttle
        if throttle is None or node.spf_at != self.now or not node.alive:
            return
        node.spf_at = None
        if throttle.due(self.now):
            before = {d: p.next_hop for d, p in node.table.routes().items()}
            node.table.recompute()
            after = node.table.routes()
            node.flips += sum(
                1 for d, p in after.items() if d in before and before[d] != p.next_hop
            )
            throttle.ran(self.now)

    def _ping(self, node: SimNode, noise: RttNoise, interval: float) -> None:
        if not node.alive or node.policy is None or node.pacer is None:
            return
        rng = self.rng
        changed = False
        for nb, delay in sorted(node.neighbors.items()):
            changed |= node.policy.sample(nb, noise.sample(rng, 2000.0 * delay))
        if changed:
            node.pacer.request(self.now)
        self._pace(node)
        self._push(self.now + interval, _PING, node, noise, interval)

    def _pace(self, node: SimNode) -> None:
        pacer = node.pacer
        if pacer is None or not node.alive:
            return
        if node.pace_at == self.now:
            node.pace_at = None
        if pacer.due(self.now):
            self._originate(node)
            return
        at = pacer.next_deadline()
        if at is not None and (node.pace_at is None or at < node.pace_at):
            node.pace_at = at
            self._push(at, _PACE, node)

    def measure_churn(
        self,
        seconds: float,
        policy: str,
        *,
        noise: RttNoise | None = None,
        ping_interval: float = 1.0,
        warmup: float = 30.0,
    ) -> ChurnReport:
        """Let every node measure its links for ``warmup + seconds`` under ``policy``
        (``"legacy"`` or ``"damped"``, see the module docstring); return what the
        last ``seconds`` cost.  Call after :meth:`start`."""
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}")
        noise = noise if noise is not None else RttNoise()
        for node in self.nodes.values():
            if policy == "legacy":
                node.policy = _Legacy()
                node.pacer = LsaPacer(_LEGACY_MIN_INTERVAL, _LEGACY_MIN_INTERVAL)
                node.throttle = SpfThrottle(_LEGACY_SPF_DELAY, 1e-9, _LEGACY_SPF_DELAY)
            else:
                node.policy = _Damped()
                node.pacer = LsaPacer()
                node.throttle = SpfThrottle()
            node.table = RoutingTable(node.lsdb, auto=False)
            node.table.recompute()
            if node.alive:
                self._push(self.now + self.rng.uniform(0, ping_interval), _PING, node, noise,
                           ping_interval)
        self.run(until=self.now + warmup)
        alive = [n for n in self.nodes.values() if n.alive]
        count = max(1, len(alive))
        orig0 = sum(n.originated for n in alive)
        sent0 = sum(n.lsas_sent for n in alive)
        spf0 = sum(n.table.computations for n in alive)
        flips0 = sum(n.flips for n in alive)
        self.run(until=self.now + seconds)
        report = ChurnReport(
            policy=policy,
            nodes=len(alive),
            seconds=seconds,
            originated_per_s=(sum(n.originated for n in alive) - orig0) / count / seconds,
            sent_per_s=(sum(n.lsas_sent for n in alive) - sent0) / count / seconds,
            spf_per_s=(sum(n.table.computations for n in alive) - spf0) / count / seconds,
            route_flips_per_min=(sum(n.flips for n in alive) - flips0) / count / seconds * 60,
        )
        # Stop measuring: pending ping events find no policy and end.
        for node in self.nodes.values():
            node.policy = None
            node.pacer = None
            node.throttle = None
            node.table = RoutingTable(node.lsdb)
        return report

    def _detect_down(self, node: SimNode, neighbor: str) -> None:
        if not node.alive or neighbor not in node.neighbors:
            return
        del node.neighbors[neighbor]
        node.flooder.remove_neighbor(neighbor)
        self._originate(node)

    # ----------------------------------------------------------------- run
    def run(self, until: float | None = None, max_events: int = MAX_SIM_EVENTS) -> int:
        """Process events in time order and return how many.

        With ``until``, run every event up to that virtual time (refresh and
        expiry timers included) and leave the clock there.  Without it, run
        until nothing but timers is left: flooding has died out.
        """
        queue = self._queue
        pop = heapq.heappop
        processed = 0
        while queue and processed < max_events:
            if until is None:
                if self._active == 0:
                    break
            elif queue[0][0] > until:
                break
            at, _, kind, a, b, c = pop(queue)
            self.now = at
            processed += 1
            if kind == _DELIVER:
                self._active -= 1
                self._deliver(a, b, c)
            elif kind == _FLUSH:
                self._active -= 1
                self._flush(a)
            elif kind == _TIMER:
                self._timer(a)
            elif kind == _PING:
                self._ping(a, b, c)
            elif kind == _PACE:
                self._pace(a)
            elif kind == _SPF:
                self._spf(a)
            else:
                self._active -= 1
                self._detect_down(a, b)
        if until is not None and until > self.now:
            self.now = until
        self.events += processed
        return processed

    def _wall(self) -> float:
        return self._wall_clock() if self._wall_clock is not None else 0.0

    def _phase(self, action: str, do: Callable[[], None]) -> SimReport:
        nodes = self.nodes.values()
        sent0 = sum(n.messages_sent for n in nodes)
        lsas0 = sum(n.lsas_sent for n in nodes)
        events0 = self.events
        wall0 = self._wall()
        start = self.now
        self._last_change = start
        do()
        self.run()
        alive = sum(1 for n in nodes if n.alive)
        count = max(1, alive)
        return SimReport(
            action=action,
            nodes=alive,
            links=len(self.links),
            converged=self.converged(),
            convergence_time=self._last_change - start,
            messages_per_node=(sum(n.messages_sent for n in nodes) - sent0) / count,
            lsas_per_node=(sum(n.lsas_sent for n in nodes) - lsas0) / count,
            events=self.events - events0,
            wall_seconds=self._wall() - wall0,
        )

    # -------------------------------------------------------------- actions
    def start(self) -> SimReport:
        """Bring every node up at once, each originating its first LSA; run to convergence."""

        def do() -> None:
            for node in self.nodes.values():
                if node.alive:
                    self._originate(node)

        return self._phase("start", do)

    def cut_link(self, a: str, b: str) -> SimReport:
        """Cut the link ``a``--``b``; run until the network has reconverged.

        Messages in flight on it are lost; each end notices after
        ``detect_delay`` and re-originates.
        """
        key = (a, b) if a < b else (b, a)
        if key not in self.links:
            raise KeyError(f"no link {a}-{b}")

        def do() -> None:
            del self.links[key]
            self._push(self.now + self.detect_delay, _DETECT_DOWN, self.nodes[a], b)
            self._push(self.now + self.detect_delay, _DETECT_DOWN, self.nodes[b], a)

        return self._phase(f"cut {a}-{b}", do)

    def kill_node(self, node_id: str) -> SimReport:
        """Kill a node (it stops answering); run until the survivors have reconverged."""
        victim = self.nodes[node_id]

        def do() -> None:
            victim.alive = False
            self._dead_links[node_id] = dict(victim.neighbors)
            for nb in sorted(victim.neighbors):
                del self.links[(nb, node_id) if nb < node_id else (node_id, nb)]
                self._push(self.now + self.detect_delay, _DETECT_DOWN, self.nodes[nb], node_id)
            victim.neighbors.clear()

        return self._phase(f"kill {node_id}", do)

    def restart_node(self, node_id: str, *, initial_seq: int = 1) -> SimReport:
        """Restart a killed node with an empty database, starting at ``initial_seq``,
        and bring its old links back up; run to convergence.

        With a small ``initial_seq`` this exercises the stale-self rule: the
        mesh still holds the previous incarnation's newer LSA.
        """
        old = self.nodes[node_id]
        if old.alive:
            raise ValueError(f"{node_id} is alive; kill it first")
        links = self._dead_links.pop(node_id, {})

        def do() -> None:
            node = SimNode(node_id, initial_seq)
            node.messages_sent, node.lsas_sent = old.messages_sent, old.lsas_sent
            node.messages_received, node.lsas_received = old.messages_received, old.lsas_received
            self.nodes[node_id] = node
            for nb, delay in sorted(links.items()):
                if self.nodes[nb].alive:
                    self._link_up(node_id, nb, delay)
                    other = self.nodes[nb]
                    other.flooder.sync(node_id, other.lsdb.lsas())
                    self._originate(other)
            self._originate(node)

        return self._phase(f"restart {node_id}", do)

    def add_link(self, a: str, b: str, delay: float | None = None) -> SimReport:
        """Bring up the link ``a``--``b`` (database exchange both ways); run to convergence."""
        key = (a, b) if a < b else (b, a)
        if key in self.links:
            raise KeyError(f"link {a}-{b} is already up")
        if not (self.nodes[a].alive and self.nodes[b].alive):
            raise ValueError("both ends must be alive")

        def do() -> None:
            self._link_up(a, b, self.rng.uniform(*self.delay) if delay is None else delay)
            for x, y in ((a, b), (b, a)):
                node = self.nodes[x]
                node.flooder.sync(y, node.lsdb.lsas())
                self._originate(node)

        return self._phase(f"link {a}-{b}", do)

    def advance(self, seconds: float) -> int:
        """Let ``seconds`` of virtual time pass (refreshes, expiries and the
        flooding they cause); return the events processed."""
        return self.run(until=self.now + seconds)

    # -------------------------------------------------------------- queries
    def physical_graph(self) -> Graph:
        """Return the graph of alive nodes and links that are up (RTTs as costs)."""
        graph = Graph()
        for node in self.nodes.values():
            if node.alive:
                graph.add_node(node.id)
        for (a, b), d in self.links.items():
            graph.add_edge(a, b, 2000.0 * d)
        return graph

    def components(self) -> list[list[str]]:
        """Return the connected components of the alive nodes."""
        return self.physical_graph().components()

    def converged(self) -> bool:
        """Return whether every component's databases agree and are complete (module docstring)."""
        for component in self.components():
            first = self.nodes[component[0]].lsdb
            for node_id in component[1:]:
                if not self.nodes[node_id].lsdb.same_as(first):
                    return False
            for node_id in component:
                own = self.nodes[node_id].lsdb.get(node_id)
                if own is None or first.get(node_id) is not own:
                    return False
        return True

    def check_forwarding(self, pairs: list[tuple[str, str]]) -> None:
        """Walk each ``(source, dest)`` route hop by hop through every node's own
        routing table; raise AssertionError on a loop, a dead end or a disagreement."""
        for source, dest in pairs:
            route = self.nodes[source].table.route(dest)
            if route is None:
                raise AssertionError(f"{source} has no route to {dest}")
            walked = [source]
            here = source
            while here != dest:
                nxt = self.nodes[here].table.next_hop(dest)
                if nxt is None or nxt not in self.nodes[here].neighbors:
                    raise AssertionError(f"dead end at {here} on the way {source}->{dest}")
                walked.append(nxt)
                if len(walked) > len(self.nodes):
                    raise AssertionError(f"forwarding loop {source}->{dest}: {walked[:20]}")
                here = nxt
            if tuple(walked) != route.path:
                raise AssertionError(
                    f"{source}->{dest}: source chose {route.path}, hops forwarded {walked}"
                )

    def sample_pairs(self, count: int) -> list[tuple[str, str]]:
        """Return ``count`` random (source, dest) pairs of alive nodes in the same component."""
        pairs: list[tuple[str, str]] = []
        components = [c for c in self.components() if len(c) > 1]
        for _ in range(count if components else 0):
            a, b = self.rng.sample(self.rng.choice(components), 2)
            pairs.append((a, b))
        return pairs
