"""``operone qos``: the quality of service of a link."""

from __future__ import annotations

import json

import click

from ._common import Obj, _client_options, _fail, _query

__all__ = ["qos"]


@click.command()
@click.argument("peer")
@click.option("--allocate", type=float, metavar="MB_PER_S",
              help="Set the bandwidth budget of the link to PEER (0: no limit).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_client_options
@click.pass_obj
def qos(obj: Obj, peer: str, allocate: float | None, as_json: bool, broker_addr: str | None,
        server_key: str | None) -> None:
    """QoS of the link to neighbour PEER: latency, jitter, loss, bandwidth, health."""
    m = _query(obj, broker_addr, server_key, lambda c: c.qos(peer, allocate))
    if as_json:
        click.echo(json.dumps(m, indent=2))
        return
    if "error" in m:
        _fail(f"{peer}: {m['error']}")
    click.echo(f"{peer}: health {m['health_score']}/100  latency {m['latency_ms']} ms"
               f"  jitter {m['jitter_ms']} ms  loss {m['packet_loss'] * 100:.1f}%"
               f"  sent {m['bandwidth_mb_s']} MB/s"
               f"  allocation {m['allocation_mb_s'] or 'none'}")
    if m.get("queued_by_class"):
        click.echo("  waiting for bandwidth: " + ", ".join(
            f"{k}={v}" for k, v in m["queued_by_class"].items()))
