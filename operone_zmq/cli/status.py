"""``operone status|tools``: the mesh at a glance, and what it can run."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import click
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from ._common import Obj, _client_options, _fail, _query

__all__ = ["status", "tools"]

#: Seconds between the two stats samples of a one-shot `status` (its jobs/s).
RATE_SAMPLE = 1.0
#: Peers whose QoS `status` asks for (one QUERY each), like the dashboard.
MAX_QOS_PEERS = 64


def connectivity(net: dict[str, Any]) -> str:
    """'connected' for a mesh in one piece, else how many pieces."""
    parts = int(net.get("partitions", 1) or 1)
    return "connected" if parts <= 1 else f"partitioned into {parts} parts"


async def snapshot(c: Any) -> dict[str, Any]:
    """Everything `status` shows, from one broker."""
    stats, peers, graph, net = await asyncio.gather(
        c.query("stats"), c.query("peers"), c.query("topology"), c.query("network"))
    qos: dict[str, Any] = {}
    for p in peers[:MAX_QOS_PEERS]:
        if p.get("state") == "up":
            with_qos = await c.query("qos", {"peer": p["node"]})
            if "error" not in with_qos:
                qos[p["node"]] = with_qos
    return {"stats": stats, "peers": peers, "graph": graph, "network": net, "qos": qos,
            "at": time.time()}


def _rate(prev: dict[str, Any] | None, cur: dict[str, Any]) -> float | None:
    if prev is None:
        return None
    dt = cur["stats"]["uptime"] - prev["stats"]["uptime"]
    if dt <= 0:
        return None
    done = (cur["stats"].get("jobs_completed", 0) + cur["stats"].get("jobs_failed", 0)
            - prev["stats"].get("jobs_completed", 0) - prev["stats"].get("jobs_failed", 0))
    return max(0.0, float(done) / float(dt))


def track_since(since: dict[str, tuple[bool, float]], snap: dict[str, Any]) -> None:
    """Note when each node was first seen in its current state (up/unreachable)."""
    now = snap["at"]
    for n in snap["graph"]["nodes"]:
        up = bool(n.get("reachable", True))
        old = since.get(n["id"])
        if old is None or old[0] != up:
            since[n["id"]] = (up, now)


def render(snap: dict[str, Any], rate: float | None,
           since: dict[str, tuple[bool, float]] | None = None) -> RenderableType:
    """The status screen of one snapshot (``rate``: jobs/s, None when unknown;
    ``since``: when a watch saw each node's state begin)."""
    s, net, graph = snap["stats"], snap["network"], snap["graph"]
    errors = s.get("errors") or {}
    head = Text()
    head.append(f"operone mesh seen from {s['node']}", style="bold")
    head.append(f"   {net.get('total_nodes')} nodes reachable of {net.get('known_nodes')}"
                f" known, {connectivity(net)}")
    head.append(f"\njobs/s {'-' if rate is None else f'{rate:.1f}'}"
                f"   in flight {s.get('origin_jobs_in_progress', 0)} (ours)"
                f" + {s.get('jobs_in_progress', 0)} running here"
                f"   queued {s.get('queued', 0)}"
                f"   done {s.get('jobs_completed', 0)}  failed {s.get('jobs_failed', 0)}"
                f"   errors {sum(errors.values())}"
                + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) + ")"
                   if errors else ""))
    nodes = Table(title="nodes", title_justify="left", expand=False)
    for col in ("node", "kind", "state", "workers", "load", "tools", "capabilities"):
        nodes.add_column(col)
    if since is not None:
        nodes.add_column("since")
    for n in sorted(graph["nodes"], key=lambda n: n["id"]):
        up = n.get("reachable", True)
        tools = n.get("tools") or []
        row: list[Any] = [
            ("* " if n.get("local") else "  ") + n["id"], n.get("kind", "broker"),
            Text("up" if up else "unreachable", style="green" if up else "red"),
            str(n.get("workers", 0)), f"{float(n.get('load', 0.0)):.2f}",
            f"{len(tools)}: {', '.join(tools[:5])}{' ...' if len(tools) > 5 else ''}",
            ", ".join(n.get("capabilities") or []) or "-"]
        if since is not None:
            at = since.get(n["id"])
            row.append("-" if at is None else time.strftime("%H:%M:%S",
                                                            time.localtime(at[1])))
        nodes.add_row(*row)
    links = Table(title="links", title_justify="left", expand=False)
    for col in ("peer", "state", "address", "rtt ms", "jitter ms", "loss", "health"):
        links.add_column(col)
    for p in sorted(snap["peers"], key=lambda p: p["node"]):
        q = snap["qos"].get(p["node"]) or {}
        up = p["state"] == "up"
        rtt = "-" if not up or p.get("rtt_ms") is None else f"{p['rtt_ms']:.2f}"
        links.add_row(p["node"], Text(p["state"], style="green" if up else "red"),
                      p.get("address") or "(accepted)", rtt,
                      f"{q['jitter_ms']:.2f}" if up and "jitter_ms" in q else "-",
                      f"{q['packet_loss'] * 100:.1f}%" if up and "packet_loss" in q else "-",
                      str(q["health_score"]) if up and "health_score" in q else "-")
    parts: list[RenderableType] = [head, nodes]
    parts.append(links if snap["peers"] else Text("no peer links"))
    return Group(*parts)


def _console() -> Console:
    c = Console()
    return c if c.is_terminal else Console(width=160)


@click.command()
@click.option("--watch", is_flag=True, help="Redraw every --interval seconds (Ctrl-C ends).")
@click.option("--interval", type=click.FloatRange(0.2, 3600), default=2.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_client_options
@click.pass_obj
def status(obj: Obj, watch: bool, interval: float, as_json: bool, broker_addr: str | None,
           server_key: str | None) -> None:
    """The mesh at a glance: nodes, links (RTT, jitter, loss, health), jobs/s,
    jobs in flight, errors, partitions.  A one-shot status samples the
    counters for a second to show jobs/s."""
    if watch:
        from ._watch import watch_loop

        last: list[dict[str, Any]] = []
        since: dict[str, tuple[bool, float]] = {}  # since this watch started

        async def frame(c: Any) -> RenderableType:
            snap = await snapshot(c)
            rate = _rate(last[-1] if last else None, snap)
            last[:] = [snap]
            track_since(since, snap)
            return Text(json.dumps(snap)) if as_json else render(snap, rate, since)

        watch_loop(obj, broker_addr, server_key, frame, interval, plain=as_json)
        return

    async def once(c: Any) -> tuple[dict[str, Any], float | None]:
        first = await c.query("stats")
        await asyncio.sleep(RATE_SAMPLE)
        snap = await snapshot(c)
        return snap, _rate({"stats": first}, snap)

    snap, rate = _query(obj, broker_addr, server_key, once)
    if as_json:
        click.echo(json.dumps({**snap, "jobs_per_second": rate}, indent=2))
        return
    _console().print(render(snap, rate))


@click.command()
@click.option("--node", metavar="NODE", help="Only the tools NODE offers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_client_options
@click.pass_obj
def tools(obj: Obj, node: str | None, as_json: bool, broker_addr: str | None,
          server_key: str | None) -> None:
    """Every tool on the mesh: its parameters, description, capabilities and
    the nodes offering it (parameters are known for this node's workers)."""
    catalog = _query(obj, broker_addr, server_key,
                     lambda c: c.query("tools", {"detail": True}))
    if not isinstance(catalog, dict) or not isinstance(catalog.get("tools"), list):
        _fail("this broker does not describe its tools (it is older than this command)")
    entries = [t for t in catalog["tools"] if node is None or node in t["nodes"]]
    if as_json:
        click.echo(json.dumps({"node": catalog["node"], "tools": entries}, indent=2))
        return
    if not entries:
        click.echo("no tools" + (f" on {node}" if node else ""))
        return
    for t in entries:
        if t["params"] is None:
            sig = "(...)"
        else:
            ps = [p["name"] + ("" if p.get("required") else "?") + f": {p.get('type', 'any')}"
                  for p in t["params"]]
            if t.get("kwargs"):
                ps.append("**kwargs")
            sig = "(" + ", ".join(ps) + ")"
        click.echo(f"{t['name']}{sig}")
        if t.get("description"):
            click.echo(f"    {t['description']}")
        caps = f"   caps {', '.join(t['caps'])}" if t.get("caps") else ""
        click.echo(f"    on {', '.join(t['nodes'])}{caps}")
