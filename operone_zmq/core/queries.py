"""Queries and stats: what a client may ask a broker (no I/O).

Rules:

* A QUERY is answered from the parts' own views (no part's state is copied
  or kept here); an unknown query is answered None (the face then sends
  BadRequest).
* "cancel", "qos" with ``allocate`` and "connect" act as well as answer; all
  other queries only read.
* The keys of "stats" are the broker's counters and gauges as documented in
  docs/protocol.md; their order is kept.
* A query whose args are wrong raises BadRequest naming the arg (the face
  answers ERROR bad_request); "jobs" and "job" follow the contract in
  docs/dashboard.md: every job of our clients (one entry, wherever it runs)
  and every job run here for another broker, in flight or recently finished.
* A client key that is not an operator (``owner``: its fingerprint) reads
  only its own jobs: "jobs" lists the jobs it submitted, "job" answers any
  other id as unknown, and "events" leaves out what would tell it of other
  keys' work or of the mesh's security (:data:`PUBLIC_EVENT_PREFIXES`).
"""

from __future__ import annotations

import math
from typing import Any, Final

from ..errors import BadRequest
from ..protocol.bodies import Query
from ..protocol.limits import MAX_ID_LEN, peer_address_problem
from .context import BrokerContext
from .eventlog import MAX_EVENTS_ANSWER, EventLog
from .jobrecords import STATES, JobRecord
from .legacy import LegacyHosts
from .links import PeerLinks
from .linkstate import LinkState
from .local import LocalJobs
from .origin import OriginTable
from .relay import Relay
from .tool_catalog import tool_catalog

__all__ = ["DEFAULT_JOBS_LIMIT", "MAX_JOBS_LIMIT", "PUBLIC_EVENT_PREFIXES", "Queries"]

#: Jobs QUERY jobs answers when the query names no limit, and the most it may
#: ask for (an answer stays well under the message size limit).
DEFAULT_JOBS_LIMIT: Final = 100
MAX_JOBS_LIMIT: Final = 500

#: The largest sending budget QUERY qos ``allocate`` takes, in MB/s (a
#: petabyte per second): above it the budget is no limit at all, and its
#: rate in bytes per second would overflow to infinity; so it is refused as
#: the mistake it is (to remove a budget, allocate 0).
MAX_ALLOCATION_MB_S: Final = 1e9

#: The events a key that is not an operator may read: the state of the mesh
#: it can also query (peers, topology, partitions, QoS).  Broadcast
#: contents (``message``), other keys' jobs (``job:*``), ``security:*`` and
#: ``lsa:*`` are an operator's.
PUBLIC_EVENT_PREFIXES: Final = ("peer:", "topology:", "partition:", "qos:")


class Queries:
    """Answers QUERY messages and builds the stats."""

    def __init__(self, ctx: BrokerContext, local: LocalJobs, links: PeerLinks,
                 linkstate: LinkState, origin: OriginTable, legacy: LegacyHosts,
                 relay: Relay, started: float) -> None:
        self._ctx = ctx
        self._local = local
        self._workers = local.pool
        self._links = links
        self._linkstate = linkstate
        self._origin = origin
        self._legacy = legacy
        self._relay = relay
        self.started = started
        #: Recent events (the shell logs each batch it emits), for QUERY events.
        self.events = EventLog()

    def stats(self, now: float) -> dict[str, Any]:
        """Counters and gauges, as answered to QUERY "stats"."""
        ctx = self._ctx
        local = self._local
        workers = self._workers
        running, slots = workers.load()
        return {
            "node": ctx.node_id,
            "uptime": round(now - self.started, 3),
            "workers": workers.worker_count(),
            "slots": slots,
            "running": running,
            "queued": local.queued,
            "jobs_in_progress": len(local),
            "tools": workers.tools(),
            "peers": self._links.up_nodes(),
            "known_nodes": len(self._linkstate.lsdb),
            "origin_jobs_in_progress": len(self._origin),
            "link_queues": self._links.queue_lengths(),
            "legacy_hosts": self._legacy.stats(),
            "in_flight_by_node": self._origin.in_flight(),
            **ctx.counters,
            "errors": dict(ctx.errors),
        }

    # ------------------------------------------------------------------ jobs
    def _live(self, r: JobRecord, target: str | None) -> str:
        """The state of an origin job in flight: queued until it runs (here:
        as the local table says; elsewhere: forwarded counts as running)."""
        if target is None:
            return "queued"
        if target == self._ctx.node_id:
            return self._local.state_of(r.id) or "queued"
        return "running"

    def jobs(self, args: dict[str, Any], owner: str | None = None) -> list[dict[str, Any]]:
        """QUERY jobs: newest first, in flight and recently finished (only
        those submitted with key ``owner``, when given)."""
        state, node, limit = args.get("state"), args.get("node"), args.get("limit")
        if state is not None and state not in STATES:
            raise BadRequest(f"jobs: args.state must be one of {', '.join(STATES)},"
                             f" not {state!r}")
        if node is not None and not isinstance(node, str):
            raise BadRequest("jobs: args.node must be a node id (a string)")
        if limit is None:
            limit = DEFAULT_JOBS_LIMIT
        elif (not isinstance(limit, int) or isinstance(limit, bool)
              or not 1 <= limit <= MAX_JOBS_LIMIT):
            raise BadRequest(f"jobs: args.limit must be an integer 1..{MAX_JOBS_LIMIT},"
                             f" not {limit!r}")
        maps: list[dict[str, Any]] = []
        for r, target in self._origin.jobs():
            if owner is None or r.owner == owner:
                maps.append(r.as_map(self._live(r, target)))
        if owner is None:
            maps += (r.as_map() for r in self._local.for_others())
            maps += (r.as_map() for r in self._origin.finished)
            maps += (r.as_map() for r in self._local.finished)
        else:
            maps += (r.as_map() for r in self._origin.finished if r.owner == owner)
        if state is not None:
            maps = [m for m in maps if m["state"] == state]
        if node is not None:
            maps = [m for m in maps if m["node"] == node]
        maps.sort(key=lambda m: m["started"], reverse=True)
        return maps[:limit]

    def job(self, args: dict[str, Any], owner: str | None = None) -> dict[str, Any]:
        """QUERY job: one job's map with its details; ``{"id", "state": None}``
        when this broker does not know it (any more), or when ``owner`` is
        given and did not submit it."""
        jid = args.get("id")
        if not isinstance(jid, str):
            raise BadRequest("job: args.id must be a job id (a string)")
        found = self._origin.record(jid)
        if found is not None and (owner is None or found[0].owner == owner):
            r, target = found
            return r.as_map(None if r.finished is not None else self._live(r, target),
                            detail=True)
        if owner is not None:
            return {"id": jid, "state": None}
        for r in self._local.for_others():
            if r.id == jid:
                return r.as_map(detail=True)
        r2 = self._local.finished.get(jid)
        if r2 is not None:
            return r2.as_map(detail=True)
        return {"id": jid, "state": None}

    def answer(self, q: Query, now: float, *, owner: str | None = None) -> Any:
        """The answer to a QUERY, or None when the query is unknown (raises
        BadRequest when its args are wrong); ``owner`` (the fingerprint of a
        key that is not an operator): "cancel" cancels only that key's jobs,
        and "jobs", "job" and "events" show only what it may read."""
        what = q.what
        if what == "stats":
            return self.stats(now)
        if what == "workers":
            return self._workers.describe_workers()
        if what == "tools":
            if q.args.get("detail") is True:
                remote = {n["id"]: n["tools"] for n in self._linkstate.topology_graph()["nodes"]
                          if n.get("reachable") and not n.get("local")}
                return tool_catalog(self._ctx.node_id, self._workers.catalog_workers(), remote)
            return self._workers.tool_counts()
        if what == "events":
            since, limit = q.args.get("since", 0), q.args.get("limit", MAX_EVENTS_ANSWER)
            for name, v in (("since", since), ("limit", limit)):
                if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    raise BadRequest(f"events: args.{name} must be an integer >= 0,"
                                     f" not {v!r}")
            answer = self.events.since(since, max(1, min(limit, MAX_EVENTS_ANSWER)))
            if owner is not None:
                answer["events"] = [e for e in answer["events"]
                                    if e["event"].startswith(PUBLIC_EVENT_PREFIXES)]
            return answer
        if what == "jobs":
            return self.jobs(q.args, owner)
        if what == "job":
            return self.job(q.args, owner)
        if what == "ping":
            return {"node": self._ctx.node_id}
        if what == "peers":
            return self._links.describe(now)
        if what == "topology":
            return self._linkstate.topology_graph()
        if what == "route":
            dest = q.args.get("dest")
            if not isinstance(dest, str):
                return {"error": "route needs args.dest"}
            return self._linkstate.route_info(dest)
        if what == "network":
            return self._linkstate.network_stats()
        if what == "broadcasts":
            return self._relay.kept_broadcasts()
        if what == "qos":
            peer = q.args.get("peer")
            if not isinstance(peer, str):
                return {"error": "qos needs args.peer"}
            alloc = q.args.get("allocate")
            if alloc is not None:
                self._links.allocate_bandwidth(peer, _allocation(alloc))
            return self._links.qos_metrics(peer) or {"peer": peer, "error": "no such peer link"}
        if what == "cancel":
            jid = q.args.get("job")
            if not isinstance(jid, str):
                return {"error": "cancel needs args.job"}
            reason = q.args.get("reason")
            self._ctx.now = now
            return {"job": jid, "cancelled": self._origin.cancel(
                jid, reason if isinstance(reason, str) else "", owner=owner)}
        if what == "placement":
            tool, caps = q.args.get("tool"), q.args.get("caps", [])
            if not isinstance(tool, str) or not isinstance(caps, list):
                return {"error": "placement needs args.tool (and args.caps, a list)"}
            d = self._origin.decide(tool, tuple(str(c) for c in caps),
                                    prefer_local=bool(q.args.get("prefer_local")))
            return {"node": d.node, "reason": d.reason, "local": d.local, "score": d.score,
                    "candidates": list(d.candidates)}
        if what == "connect":
            node, host, port = q.args.get("node"), q.args.get("host"), q.args.get("port")
            if not (isinstance(node, str) and isinstance(host, str) and isinstance(port, int)):
                return {"error": "connect needs args node (str), host (str), port (int)"}
            if not node or len(node) > MAX_ID_LEN:
                return {"error": f"connect: node must be a node id of 1 to {MAX_ID_LEN}"
                                 " characters"}
            problem = peer_address_problem(host, port)
            if problem is not None:
                return {"error": f"connect: {problem}"}
            self._ctx.actions.append(("dial", node, host, port))
            return {"node": node, "status": "dialling"}
        return None


def _allocation(value: object) -> float | None:
    """QUERY qos ``allocate``: a budget in MB/s (> 0), or None to remove it
    (<= 0); BadRequest for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"qos allocate must be a number of MB/s, not {value!r}")
    if not math.isfinite(value) or value > MAX_ALLOCATION_MB_S:
        raise BadRequest(f"qos allocate must be a finite number of MB/s up to"
                         f" {MAX_ALLOCATION_MB_S:g}, not {value!r} (0 removes the budget)")
    return float(value) if value > 0 else None
