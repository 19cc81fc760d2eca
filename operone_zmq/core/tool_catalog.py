"""The answer to QUERY ``tools`` with ``{"detail": true}``: what a client can run, and how.

A pure function of what the broker knows: the READY of each local worker
(tool names, descriptions, parameters, capabilities) and the tool names other
reachable nodes advertise in their LSAs.  docs/protocol.md section 5.11
specifies the shape; no I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..protocol.bodies import ToolInfo

__all__ = ["LocalWorker", "tool_catalog"]

#: One local worker as the catalog needs it: (worker name, its capabilities,
#: the tools of its READY).
LocalWorker = tuple[str, Iterable[str], Iterable[ToolInfo]]


def tool_catalog(
    node: str,
    workers: Iterable[LocalWorker],
    remote: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, Any]:
    """Build ``{"node": node, "tools": [entry, ...]}``, entries sorted by tool name.

    Each entry: ``name``; ``description``, ``params`` (a list of
    ``{"name", "type", "required"[, "default"]}``, or None when no worker
    here advertised them) and ``kwargs`` taken from the first local worker,
    by name, that advertised parameters (else the first that offers the
    tool; ``""``, None and False for a tool only other nodes offer);
    ``caps``: the union of the capabilities of the local workers offering
    it; ``workers``: those workers' names; ``nodes``: the node ids offering
    it (``node`` itself when a local worker does, and the nodes of
    ``remote``, a map of reachable node id to its advertised tool names);
    all lists sorted.
    """
    local: dict[str, list[tuple[str, frozenset[str], ToolInfo]]] = {}
    for name, worker_caps, infos in workers:
        capset = frozenset(worker_caps)
        for info in infos:
            local.setdefault(info.name, []).append((name, capset, info))
    nodes: dict[str, set[str]] = {t: {node} for t in local}
    for other, tools in (remote or {}).items():
        if other == node:
            continue
        for t in tools:
            nodes.setdefault(t, set()).add(other)
    entries = []
    for tool in sorted(nodes):
        offers = sorted(local.get(tool, []), key=lambda o: o[0])
        described = [o[2] for o in offers if o[2].params is not None] or [o[2] for o in offers]
        first = described[0] if described else None
        union: set[str] = set()
        for o in offers:
            union |= o[1]
        entries.append({
            "name": tool,
            "description": first.description if first else "",
            "params": None if first is None or first.params is None
            else [p.to_wire() for p in first.params],
            "kwargs": bool(first and first.any_args),
            "caps": sorted(union),
            "workers": sorted({o[0] for o in offers}),
            "nodes": sorted(nodes[tool]),
        })
    return {"node": node, "tools": entries}
