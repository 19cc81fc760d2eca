"""ToolRouter: where should a job run?  (No I/O.)

Given what every node advertises (its LSA: tools, capabilities, load,
workers), the route cost to it, its health, and how many jobs this broker
has already placed there and not yet seen finish, pick the best node.

Rules, in order:

1. A node qualifies when it offers the tool, has every required capability,
   has at least one worker, is reachable, and is not excluded (nodes already
   tried by this job are excluded while any other node qualifies).
2. ``prefer_local``: if this node qualifies, it wins (the original's
   preferLocal).
3. Otherwise the lowest score wins; ties go to the smaller node id so the
   choice is deterministic::

       score = LOAD_WEIGHT * load                  (advertised busy fraction)
             + in_flight / max(1, workers)         (ours, spreads bursts)
             + route_cost_ms / COST_DIVISOR        (a far node costs more)
             + (100 - health) / HEALTH_DIVISOR     (a lossy link costs more)

   ``in_flight`` grows with every placement, so concurrent jobs spread over
   the qualifying nodes instead of piling onto the first.
4. If no node qualifies, the decision has no node and says why (no node
   offers the tool, or none with those capabilities, or none reachable).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["NodeInfo", "RouteDecision", "ToolRouter"]

#: One fully loaded node weighs as much as ten jobs in flight per worker.
LOAD_WEIGHT = 10.0
#: 10 ms of route cost weighs as much as one job in flight per worker.
COST_DIVISOR = 10.0
#: A health score 20 points down weighs as much as one job in flight.
HEALTH_DIVISOR = 20.0


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What the router knows about one node."""

    node: str
    tools: frozenset[str]
    caps: frozenset[str] = frozenset()
    load: float = 0.0
    workers: int = 1
    cost_ms: float = 0.0
    health: float = 100.0
    local: bool = False
    reachable: bool = True


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """The chosen node (or None) and why, as the original's route() returned."""

    node: str | None
    reason: str
    local: bool = False
    score: float | None = None
    candidates: tuple[str, ...] = field(default_factory=tuple)


class ToolRouter:
    """Scores nodes for a tool and picks one."""

    def score(self, n: NodeInfo, in_flight: int) -> float:
        """Lower is better."""
        return (LOAD_WEIGHT * n.load + in_flight / max(1, n.workers)
                + n.cost_ms / COST_DIVISOR + (100.0 - n.health) / HEALTH_DIVISOR)

    def route(
        self,
        tool: str,
        capabilities: Iterable[str] = (),
        nodes: Iterable[NodeInfo] = (),
        *,
        prefer_local: bool = False,
        exclude: Iterable[str] = (),
        in_flight: Mapping[str, int] | None = None,
    ) -> RouteDecision:
        """Pick a node for ``tool`` needing ``capabilities``."""
        caps = frozenset(capabilities)
        excluded = frozenset(exclude)
        flights = in_flight or {}
        offering = [n for n in nodes if tool in n.tools and n.workers > 0]
        if not offering:
            return RouteDecision(None, f"no node offers tool '{tool}'")
        capable = [n for n in offering if caps <= n.caps]
        if not capable:
            return RouteDecision(None, f"no node offers tool '{tool}' with capabilities"
                                       f" {sorted(caps)}")
        reachable = [n for n in capable if n.reachable]
        if not reachable:
            return RouteDecision(None, f"the nodes offering '{tool}' are unreachable: "
                                       + ", ".join(sorted(n.node for n in capable)))
        fresh = [n for n in reachable if n.node not in excluded]
        pool = fresh or reachable
        names = tuple(sorted(n.node for n in pool))
        if prefer_local:
            for n in pool:
                if n.local:
                    return RouteDecision(n.node, "prefer_local: this node offers it", True,
                                         None, names)
        best = min(pool, key=lambda n: (self.score(n, flights.get(n.node, 0)), n.node))
        s = self.score(best, flights.get(best.node, 0))
        if best.local and len(pool) == 1:
            reason = "fallback to local: no other node qualifies"
        elif best.local:
            reason = "this node scored best"
        else:
            reason = f"best score of {len(pool)} qualifying node(s)"
        if not fresh:
            reason += " (every qualifying node was tried already)"
        return RouteDecision(best.node, reason, best.local, round(s, 4), names)
