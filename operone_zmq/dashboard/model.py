"""What the dashboard knows, built from a broker's QUERY answers (no I/O).

One poll of the broker gives an :class:`Answers`; :class:`DashboardState`
folds successive polls into what the page shows: the mesh (nodes and edges,
with down nodes and links marked), per-link QoS with a short bounded
history, up/down transitions as the dashboard saw them, and jobs when the
broker reports them (QUERY ``jobs``, docs/dashboard.md).  Time is passed in
(``now``, wall-clock seconds, because the page shows it as a time of day).

Everything here is plain data in, plain JSON-able data out: the asyncio
poller (``poller.py``) and the HTTP server (``server.py``) only move it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "HISTORY_POINTS",
    "JOB_FIELDS",
    "JOB_STATES",
    "MAX_JOBS",
    "MAX_LINKS",
    "MAX_SEEN_JOBS",
    "Answers",
    "DashboardState",
    "DurationHistogram",
    "normalise_jobs",
]

#: Job states of the QUERY ``jobs`` contract (docs/dashboard.md).
JOB_STATES = ("queued", "running", "done", "failed", "cancelled")

#: Fields of one job in the QUERY ``jobs`` contract; a missing one is None.
JOB_FIELDS = ("id", "tool", "node", "state", "attempts", "started", "finished", "duration",
              "submitter", "error")

#: Points of history kept per link: two minutes at the default 1 s poll, the
#: "short history" of the Links page; older points are dropped.
HISTORY_POINTS = 120

#: Links whose history is kept; past it the least recently seen is dropped.
#: A mesh of PCs has tens of links: this only stops a broker that reports
#: garbage from growing the dashboard without end.
MAX_LINKS = 256

#: Nodes whose up/down transitions are remembered (same reason as MAX_LINKS,
#: a little larger because every node of the mesh is tracked, not just peers).
MAX_NODES = 1024

#: Jobs kept from one answer of QUERY ``jobs`` (the page shows a table; the
#: broker is asked for at most this many anyway).
MAX_JOBS = 500

#: Finished job ids remembered so that each job's duration enters the
#: histogram once: many more than one answer of ``jobs`` holds.
MAX_SEEN_JOBS = 10_000

#: Bucket bounds of the job duration histogram, seconds (Prometheus' default
#: buckets, stretched to minutes since tools may run long).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 120.0, 300.0, 600.0)


def _num(v: Any) -> float | None:
    """``v`` as a float when it is a real number (bools are not), else None."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    return None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


@dataclass(slots=True)
class Answers:
    """One poll of a broker: each field is the REPLY value of that QUERY, or
    None when the broker did not answer it.  ``jobs`` is None both when the
    query failed and when the broker does not know it: ``jobs_supported``
    tells which (None: not asked)."""

    stats: dict[str, Any] | None = None
    peers: list[Any] | None = None
    topology: dict[str, Any] | None = None
    network: dict[str, Any] | None = None
    qos: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: list[Any] | None = None
    jobs_supported: bool | None = None


def normalise_jobs(answer: Any) -> list[dict[str, Any]] | None:
    """The jobs of a QUERY ``jobs`` answer in the contract's shape (every
    field present, None when missing or of the wrong type), at most MAX_JOBS;
    None when the answer is not a list (the broker does not report jobs)."""
    if not isinstance(answer, list):
        return None
    out: list[dict[str, Any]] = []
    for j in answer[:MAX_JOBS]:
        if not isinstance(j, dict) or not isinstance(j.get("id"), str):
            continue
        job = {k: j.get(k) for k in JOB_FIELDS}
        for k in ("tool", "node", "state", "submitter"):
            job[k] = _str(job[k])
        for k in ("started", "finished", "duration"):
            job[k] = _num(job[k])
        a = job["attempts"]
        job["attempts"] = a if isinstance(a, int) and not isinstance(a, bool) else None
        e = job["error"]
        if e is not None and not isinstance(e, str | dict):
            job["error"] = str(e)
        out.append(job)
    return out


class DurationHistogram:
    """Durations of the finished jobs the dashboard has seen in QUERY
    ``jobs`` answers, each job counted once (cumulative, like a Prometheus
    histogram: it only grows while the dashboard runs)."""

    def __init__(self, buckets: tuple[float, ...] = DURATION_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)  # observations <= each bound (not cumulative)
        self.count = 0
        self.sum = 0.0
        self._seen: set[str] = set()
        self._order: deque[str] = deque()

    def observe_jobs(self, jobs: list[dict[str, Any]]) -> int:
        """Count the finished jobs of ``jobs`` not seen before; how many."""
        n = 0
        for j in jobs:
            jid, d = j.get("id"), _num(j.get("duration"))
            if (not isinstance(jid, str) or d is None or d < 0
                    or j.get("state") not in ("done", "failed", "cancelled")
                    or jid in self._seen):
                continue
            self._seen.add(jid)
            self._order.append(jid)
            if len(self._order) > MAX_SEEN_JOBS:
                self._seen.discard(self._order.popleft())
            self.count += 1
            self.sum += d
            for i, b in enumerate(self.buckets):
                if d <= b:
                    self.counts[i] += 1
                    break
            n += 1
        return n

    def cumulative(self) -> list[tuple[str, int]]:
        """``(upper bound, observations <= it)`` pairs, ending with +Inf."""
        out: list[tuple[str, int]] = []
        acc = 0
        for b, c in zip(self.buckets, self.counts, strict=True):
            acc += c
            out.append((repr(b), acc))
        out.append(("+Inf", self.count))
        return out


@dataclass(slots=True)
class _Seen:
    up: bool
    since: float
    last: float


class DashboardState:
    """Successive polls of one broker, folded into what the page shows."""

    def __init__(self, broker: str) -> None:
        self.broker = broker
        self.answers = Answers()
        self.up = False
        self.error = "not polled yet"
        self.up_since: float | None = None
        self.last_ok: float | None = None
        self.polls = 0
        self.failed_polls = 0
        self.history: dict[str, deque[dict[str, Any]]] = {}
        self._link_seen: dict[str, float] = {}
        self._nodes: dict[str, _Seen] = {}
        self._links: dict[str, _Seen] = {}
        self.durations = DurationHistogram()

    # ------------------------------------------------------------ updates
    def poll_ok(self, a: Answers, now: float) -> None:
        """Fold in one answered poll taken at ``now``."""
        self.polls += 1
        if not self.up:
            self.up_since = now
        self.up, self.error, self.last_ok = True, "", now
        self.answers = a
        for n in self._mesh_nodes(a):
            self._transition(self._nodes, n["id"], n.get("reachable") is True, now, MAX_NODES)
        for p in _list(a.peers):
            if isinstance(p, dict) and isinstance(p.get("node"), str):
                self._transition(self._links, p["node"], p.get("state") == "up", now,
                                 MAX_LINKS)
        self._add_history(a, now)
        if a.jobs is not None:
            self.durations.observe_jobs(a.jobs)

    def poll_failed(self, error: str, now: float) -> None:
        """The broker did not answer a poll at ``now`` (``error`` says why)."""
        self.polls += 1
        self.failed_polls += 1
        if self.up:
            self.up_since = now
        self.up, self.error = False, error or "no answer"

    @staticmethod
    def _transition(table: dict[str, _Seen], key: str, up: bool, now: float,
                    limit: int) -> None:
        s = table.get(key)
        if s is None:
            if len(table) >= limit:
                del table[min(table, key=lambda k: table[k].last)]
            table[key] = _Seen(up, now, now)
            return
        if s.up != up:
            s.up, s.since = up, now
        s.last = now

    def _add_history(self, a: Answers, now: float) -> None:
        queues = _dict(_dict(a.stats).get("link_queues"))
        for peer, m in a.qos.items():
            if not isinstance(m, dict) or "error" in m:
                continue
            h = self.history.get(peer)
            if h is None:
                if len(self.history) >= MAX_LINKS:
                    oldest = min(self._link_seen, key=self._link_seen.__getitem__)
                    self.history.pop(oldest, None)
                    self._link_seen.pop(oldest, None)
                h = self.history[peer] = deque(maxlen=HISTORY_POINTS)
            q = _dict(queues.get(peer)) or _dict(m.get("queued_by_class"))
            h.append({
                "t": round(now, 3),
                "rtt_ms": _num(m.get("latency_ms")),
                "jitter_ms": _num(m.get("jitter_ms")),
                "loss": _num(m.get("packet_loss")),
                "health": _num(m.get("health_score")),
                "bandwidth_mb_s": _num(m.get("bandwidth_mb_s")),
                "queued": int(sum(v for v in q.values() if _num(v) is not None)),
            })
            self._link_seen[peer] = now

    # ------------------------------------------------------------- views
    @staticmethod
    def _mesh_nodes(a: Answers) -> list[dict[str, Any]]:
        """Nodes of the topology answer, plus peers the LSDB no longer lists
        (a dead peer's LSA may be gone: it is still shown, as down)."""
        topo = _dict(a.topology)
        nodes: list[dict[str, Any]] = []
        ids: set[str] = set()
        for n in _list(topo.get("nodes")):
            if isinstance(n, dict) and isinstance(n.get("id"), str) and n["id"] not in ids:
                ids.add(n["id"])
                nodes.append(n)
        for p in _list(a.peers):
            if isinstance(p, dict) and isinstance(p.get("node"), str) and p["node"] not in ids:
                ids.add(p["node"])
                nodes.append({"id": p["node"], "name": p.get("name") or p["node"],
                              "reachable": p.get("state") == "up", "local": False})
        return nodes

    def snapshot(self, now: float, *, full_history: bool = True) -> dict[str, Any]:
        """Everything the page shows, JSON-able.  Missing values are None
        (the page shows "-").  ``full_history`` False: each link's history
        holds only its newest point (``"full": false``), for the pushes after
        the first one, which the page appends to what it has."""
        a = self.answers
        stats = _dict(a.stats)
        topo = _dict(a.topology)
        local = _str(topo.get("local")) or _str(stats.get("node"))
        peers = {p["node"]: p for p in _list(a.peers)
                 if isinstance(p, dict) and isinstance(p.get("node"), str)}
        nodes = []
        for n in self._mesh_nodes(a):
            nid = n["id"]
            is_local = bool(n.get("local")) or nid == local
            seen = self._nodes.get(nid)
            up = n.get("reachable") is True
            peer = peers.get(nid)
            since = seen.since if seen else None
            if peer is not None and up and _num(peer.get("up_for")):
                since = now - float(peer["up_for"])  # the broker knows better than we do
            q = a.qos.get(nid) if isinstance(a.qos.get(nid), dict) else None
            health = _num(q.get("health_score")) if q and "error" not in q else None
            nodes.append({
                "id": nid,
                "name": _str(n.get("name")) or nid,
                "kind": _str(n.get("kind")),
                "workers": _num(n.get("workers")),
                "load": _num(n.get("load")),
                "tools": [t for t in _list(n.get("tools")) if isinstance(t, str)],
                "capabilities": [c for c in _list(n.get("capabilities")) if isinstance(c, str)],
                "up": up,
                "local": is_local,
                "since": None if since is None else round(since, 3),
                "uptime": _num(stats.get("uptime")) if is_local else None,
                "health": 100.0 if is_local and up else health,
            })
        edges: list[dict[str, Any]] = []
        keys: set[tuple[str, str]] = set()
        reachable = {n["id"] for n in nodes if n["up"]}
        for e in _list(topo.get("edges")):
            if not isinstance(e, dict):
                continue
            s, t = _str(e.get("source")), _str(e.get("target"))
            if s is None or t is None:
                continue
            key = (min(s, t), max(s, t))
            if key in keys:
                continue
            keys.add(key)
            other = t if s == local else s if t == local else None
            link_up = (peers[other].get("state") == "up") if other in peers else True
            lat = _num(e.get("latency"))
            if other is not None and other in peers:  # measured now, not the advertised cost
                q = a.qos.get(other)
                measured = (_num(q.get("latency_ms")) if isinstance(q, dict) else None) \
                    or _num(peers[other].get("rtt_ms"))
                lat = measured if measured is not None else lat
            edges.append({"source": key[0], "target": key[1], "latency_ms": lat,
                          "bandwidth": _num(e.get("bandwidth")), "loss": _num(e.get("loss")),
                          "up": link_up and s in reachable and t in reachable})
        if local is not None:
            for nid, p in peers.items():
                key = (min(local, nid), max(local, nid))
                if key not in keys:
                    keys.add(key)
                    edges.append({"source": key[0], "target": key[1],
                                  "latency_ms": _num(p.get("rtt_ms")), "bandwidth": None,
                                  "loss": None, "up": p.get("state") == "up"})
        queues = _dict(stats.get("link_queues"))
        links = []
        for nid, p in sorted(peers.items()):
            q = a.qos.get(nid)
            m = q if isinstance(q, dict) and "error" not in q else {}
            by_class = _dict(queues.get(nid)) or _dict(m.get("queued_by_class"))
            seen = self._links.get(nid)
            links.append({
                "peer": nid,
                "address": _str(p.get("address")),
                "state": _str(p.get("state")),
                "up": p.get("state") == "up",
                "since": None if seen is None else round(seen.since, 3),
                "transports": [t for t in _list(p.get("transports")) if isinstance(t, str)],
                "rtt_ms": _num(m.get("latency_ms", p.get("rtt_ms"))),
                "jitter_ms": _num(m.get("jitter_ms")),
                "loss": _num(m.get("packet_loss")),
                "bandwidth_mb_s": _num(m.get("bandwidth_mb_s")),
                "health": _num(m.get("health_score")),
                "queued_by_class": {str(k): int(v) for k, v in by_class.items()
                                    if _num(v) is not None},
                "last_error": _str(p.get("last_error")) or None,
                "history": (list(self.history.get(nid, ())) if full_history
                            else list(self.history.get(nid, ()))[-1:]),
            })
        jobs_counts = {k: _num(stats.get(f"jobs_{k}")) for k in
                       ("received", "completed", "failed", "timed_out", "cancelled")}
        return {
            "now": round(now, 3),
            "full": full_history,
            "history_points": HISTORY_POINTS,
            "broker": {"address": self.broker, "up": self.up, "error": self.error or None,
                       "since": self.up_since, "last_ok": self.last_ok, "node": local,
                       "polls": self.polls, "failed_polls": self.failed_polls},
            "nodes": sorted(nodes, key=lambda n: n["id"]),
            "edges": sorted(edges, key=lambda e: (e["source"], e["target"])),
            "links": links,
            "network": _dict(a.network),
            "jobs_summary": {**jobs_counts, "running": _num(stats.get("running")),
                             "queued": _num(stats.get("queued")),
                             "errors": _dict(stats.get("errors"))},
            "jobs_supported": a.jobs_supported,
        }
