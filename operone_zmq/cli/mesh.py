"""``operone stats|peers|topology|route|connect|broadcast|discover``: the
mesh as this broker sees it, and changing its links."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..errors import OperoneError
from ._common import Obj, _client, _client_options, _fail, _query

__all__ = ["broadcast", "connect", "discover", "peers", "route", "stats", "topology"]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_client_options
@click.pass_obj
def stats(obj: Obj, as_json: bool, broker_addr: str | None, server_key: str | None) -> None:
    """Show the broker's counters: jobs, workers, errors."""
    config = obj.config()
    obj.logging(config)
    client = _client(obj, config, broker_addr, server_key)

    async def go() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with client as c:
            return await c.stats(), await c.workers()

    s, workers = asyncio.run(go())
    if as_json:
        click.echo(json.dumps({"stats": s, "workers": workers}, indent=2))
        return
    click.echo(f"node {s['node']}  up {s['uptime']:.0f}s")
    for k in ("workers", "slots", "running", "queued", "jobs_received", "jobs_completed",
              "jobs_failed", "jobs_timed_out", "jobs_cancelled", "workers_lost", "malformed"):
        click.echo(f"  {k:<16} {s.get(k)}")
    if s.get("errors"):
        click.echo("  errors:  " + ", ".join(f"{k}={v}" for k, v in sorted(s["errors"].items())))
    if s.get("peers"):
        click.echo(f"  peers    {', '.join(s['peers'])}  relayed {s.get('relayed', 0)}"
                   f"  forwarded {s.get('forwarded', 0)}")
    click.echo(f"  qos      refused {s.get('qos_refused', 0)}  dropped (link down)"
               f" {s.get('qos_dropped_link_down', 0)}")
    for peer, queues in (s.get("link_queues") or {}).items():
        click.echo(f"  queued to {peer}: " + ", ".join(f"{k}={v}" for k, v in queues.items()))
    for name, b in (s.get("send_backlog") or {}).items():
        if b:
            click.echo(f"  send backlog {name}: {b}")
    for w in workers:
        click.echo(f"  worker {w['name']:<24} pid {w['pid']:<7} running {w['running']}/"
                   f"{w['slots']}  done {w['done']}  tools {len(w['tools'])}")



@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_client_options
@click.pass_obj
def peers(obj: Obj, as_json: bool, broker_addr: str | None, server_key: str | None) -> None:
    """List this broker's peer links: state, how each was made (dialled to an
    address, accepted), RTT, traffic, last error."""
    links = _query(obj, broker_addr, server_key, lambda c: c.peers())
    if as_json:
        click.echo(json.dumps(links, indent=2))
        return
    if not links:
        click.echo("no peer links")
        return
    click.echo(f"{'NODE':<20} {'STATE':<10} {'TRANSPORTS':<36} {'RTT':<10} {'SENT':>7}"
               f" {'RECV':>7}  LAST ERROR")
    for p in links:
        # A link that is down has no current RTT: its last one would mislead.
        rtt = "-" if p["rtt_ms"] is None or p["state"] != "up" else f"{p['rtt_ms']:.2f} ms"
        ways = []
        for tr in p.get("transports") or []:
            kind, _, st = tr.partition(":")
            where = f" {p['address']}" if kind == "dialled" and p.get("address") else ""
            ways.append(f"{kind}{where} {st}")
        click.echo(f"{p['node']:<20} {p['state']:<10} {'; '.join(ways) or '-':<36} {rtt:<10}"
                   f" {p['sent']:>7} {p['received']:>7}  {p['last_error'] or ''}")


def _dot(graph: dict[str, Any], links: list[dict[str, Any]] | None = None) -> str:
    """Graphviz DOT of the mesh: bold = this node, box = SSH host, gray dashed
    = unreachable; a link of this node that is down is a dashed red edge."""
    local = graph.get("local")
    lines = ["graph operone {", '  node [fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10];']
    for n in graph["nodes"]:
        caps = ", ".join(n.get("capabilities") or [])
        label = f'{n["id"]}\\n{len(n["tools"])} tools, {n["workers"]} workers'
        if caps:
            label += f"\\ncaps: {caps}"
        if not n.get("reachable", True):
            label += "\\n(unreachable)"
        attrs = [f'label="{label}"']
        if n.get("kind") == "ssh":
            attrs.append("shape=box")
        if n.get("local"):
            attrs.append("style=bold")
        if not n.get("reachable", True):
            attrs += ["color=gray", "fontcolor=gray", 'style="dashed"']
        lines.append(f'  "{n["id"]}" [{", ".join(attrs)}];')
    drawn = set()
    for e in graph["edges"]:
        drawn.add(frozenset((e["source"], e["target"])))
        lines.append(f'  "{e["source"]}" -- "{e["target"]}" [label="{e["latency"]:.2f} ms"];')
    for p in links or []:
        if p["state"] != "up" and local and frozenset((local, p["node"])) not in drawn:
            lines.append(f'  "{local}" -- "{p["node"]}" [style=dashed, color=red,'
                         f' label="{p["state"]}"];')
    lines += ["  subgraph cluster_legend {", '    label="legend"; fontname="Helvetica";',
              '    "this node" [style=bold]; "SSH host" [shape=box];',
              '    "unreachable" [color=gray, fontcolor=gray, style=dashed];',
              '    "this node" -- "SSH host" [label="link: RTT ms"];',
              '    "this node" -- "unreachable" [style=dashed, color=red, label="link down"];',
              "  }", "}"]
    return "\n".join(lines)


@click.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json", "dot", "png", "svg"]),
              default="table", help="png and svg need Graphviz (its dot command).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write png/svg here (default: stdout).")
@_client_options
@click.pass_obj
def topology(obj: Obj, fmt: str, output: Path | None, broker_addr: str | None,
             server_key: str | None) -> None:
    """Show the mesh as this broker sees it (table, JSON, Graphviz DOT, PNG, SVG)."""
    async def three(c: Any) -> tuple[Any, Any, Any]:
        return await c.topology(), await c.network_stats(), await c.peers()

    if fmt in ("png", "svg") and shutil.which("dot") is None:
        _fail("--format png|svg needs Graphviz's dot command (apt install graphviz, brew"
              " install graphviz); --format dot prints the graph for it")
    graph, net, links = _query(obj, broker_addr, server_key, three)
    if fmt == "json":
        click.echo(json.dumps({"graph": graph, "stats": net}, indent=2))
        return
    if fmt == "dot":
        click.echo(_dot(graph, links))
        return
    if fmt in ("png", "svg"):
        r = subprocess.run(["dot", f"-T{fmt}"], input=_dot(graph, links).encode(),
                           capture_output=True, timeout=60)
        if r.returncode != 0:
            _fail(f"dot failed: {r.stderr.decode(errors='replace').strip()}")
        if output is not None:
            output.write_bytes(r.stdout)
        else:
            sys.stdout.buffer.write(r.stdout)
        return
    parts = int(net.get("partitions", 1) or 1)
    state = "connected" if parts <= 1 else f"partitioned into {parts} parts"
    click.echo(f"{net['total_nodes']} reachable nodes ({net['known_nodes']} known),"
               f" {net['direct_connections']} direct links, diameter"
               f" {net['network_diameter']} hops, average latency {net['average_latency']} ms,"
               f" {state}")
    for n in sorted(graph["nodes"], key=lambda n: n["id"]):
        mark = "*" if n.get("local") else " "
        unreachable = "" if n.get("reachable", True) else "  (unreachable)"
        caps = ",".join(n.get("capabilities") or []) or "-"
        click.echo(f"{mark} {n['id']:<20} {n.get('kind', 'broker'):<7} workers {n['workers']:<3}"
                   f" load {n['load']:<5} caps {caps:<12} tools {','.join(n['tools'][:6])}"
                   f"{'...' if len(n['tools']) > 6 else ''}{unreachable}")
    for e in graph["edges"]:
        click.echo(f"  {e['source']} -- {e['target']}  {e['latency']:.2f} ms")


@click.command()
@click.argument("dest")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_client_options
@click.pass_obj
def route(obj: Obj, dest: str, as_json: bool, broker_addr: str | None,
          server_key: str | None) -> None:
    """Show the route to node DEST: path, hops, latency."""
    r = _query(obj, broker_addr, server_key, lambda c: c.route(dest))
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    if not r.get("reachable"):
        _fail(f"no route to '{dest}'" + (" (known but unreachable)" if r.get("known") else ""))
    click.echo(" -> ".join(r["path"]) + f"   ({r['hops']} hops, {r['total_latency']} ms)")


@click.command()
@click.argument("peer", metavar="NODE@HOST:PORT")
@click.option("--wait", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Seconds to wait for the link to come up (0: do not wait).")
@click.option("--replace", is_flag=True,
              help="Replace a working link to NODE that was dialled at another address.")
@_client_options
@click.pass_obj
def connect(obj: Obj, peer: str, wait: float, replace: bool, broker_addr: str | None,
            server_key: str | None) -> None:
    """Tell the running broker to link to another broker.

    A working link to the same node at another address is kept unless
    --replace (a mistyped port must not cut a good link); a refusal (no
    trusted key for the node, ...) is shown as soon as the broker reports it."""
    from ..aio.broker import PeerAddress
    from ..errors import BadRequest

    addr = PeerAddress.parse(peer)
    want = f"{addr.host}:{addr.port}"

    async def go(c: Any) -> dict[str, Any]:
        old = {p["node"]: p for p in await c.peers()}.get(addr.node)
        if (old is not None and old["state"] == "up" and old.get("address")
                and old["address"] != want and not replace):
            return {"node": addr.node, "state": "kept", "address": old["address"]}
        try:  # where the broker's event log is now, to see a refusal at once
            seq: int | None = (await c.query("events", {"since": 2**62}))["next"]
        except BadRequest:
            seq = None  # an older broker: no event log; wait for the link only
        await c.connect_peer(addr.node, addr.host, addr.port)
        deadline = time.monotonic() + wait
        while True:
            links: dict[str, dict[str, Any]] = {p["node"]: p for p in await c.peers()}
            p = links.get(addr.node)
            if p is not None and p["state"] == "up" and p.get("address") in (want, ""):
                return p
            if seq is not None:
                a = await c.query("events", {"since": seq})
                seq = a["next"]
                for e in a["events"]:
                    d = e.get("data") or {}
                    if e["event"] == "peer:refused" and d.get("node") == addr.node:
                        return {"node": addr.node, "state": "refused",
                                "last_error": d.get("reason")}
            if time.monotonic() >= deadline:
                return p or {"node": addr.node, "state": "down", "last_error": "no answer"}
            await asyncio.sleep(0.1)

    p = _query(obj, broker_addr, server_key, go)
    if p["state"] == "kept":
        _fail(f"'{addr.node}' is linked and up at {p['address']}; not replacing that link"
              f" with {want} (--replace to do it)")
    if p["state"] == "refused":
        _fail(f"link to '{addr.node}' refused: {p.get('last_error')}")
    if p["state"] != "up" and wait > 0:
        _fail(f"link to '{addr.node}' is {p['state']}: {p.get('last_error') or 'no answer'}")
    click.echo(f"{addr.node}: {p['state']}")


@click.command()
@click.argument("message")
@click.option("--type", "mtype", default="notification", show_default=True)
@_client_options
@click.pass_obj
def broadcast(obj: Obj, message: str, mtype: str, broker_addr: str | None,
              server_key: str | None) -> None:
    """Send MESSAGE (JSON or text) to every broker of the mesh."""
    try:
        data: Any = json.loads(message)
    except json.JSONDecodeError:
        data = message
    n = _query(obj, broker_addr, server_key,
               lambda c: c.broadcast({"type": mtype, "data": data}))
    click.echo(f"broadcast sent to {n} neighbour(s); every reachable broker gets it once")



@click.command()
@click.option("--timeout", type=float, default=3.0, show_default=True,
              help="Seconds to listen.")
@click.option("--all-clusters", is_flag=True, help="Also list other clusters' brokers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def discover(obj: Obj, timeout: float, all_clusters: bool, as_json: bool) -> None:
    """List the brokers zeroconf finds on the network now, and whether each
    one's key is trusted here."""
    from ..aio.discovery import browse
    from ..security.keys import TrustStore

    config = obj.config()
    obj.logging(config)
    peers = asyncio.run(browse(timeout, cluster=None if all_clusters else config.node.cluster))
    store = TrustStore(obj.home.trust_dir)
    rows = [{"node": p.node, "cluster": p.cluster, "address": p.address,
             "fingerprint": p.fingerprint,
             "trusted": store.name_of(p.public_key.encode("ascii")) == p.node}
            for p in peers]
    for p, row in zip(peers, rows, strict=True):
        if not row["trusted"]:  # so that its hint, operone keys accept NODE, works
            try:
                store.add_pending(p.node, p.public_key.encode("ascii"),
                                  source=f"discovered at {p.address}")
            except OperoneError as exc:
                click.echo(f"warning: {p.node} not recorded as pending: {exc}", err=True)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no brokers found")
    for r in rows:
        state = "trusted" if r["trusted"] else f"pending: operone keys accept {r['node']}"
        click.echo(f"{r['node']:<20} {r['address']:<30} {r['cluster']:<12} {r['fingerprint']}"
                   f"  {state}")
