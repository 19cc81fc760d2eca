"""``operone qos``: the quality of service of a link."""

from __future__ import annotations

import json
import math
from typing import Any

import click

from ._common import Obj, _client_options, _fail, _query

__all__ = ["MBPerSecond", "qos"]


class MBPerSecond(click.ParamType):  # type: ignore[type-arg]  # (generic from click 8.2)
    """A bandwidth in MB/s: a number >= 0, optionally followed by MB/s."""

    name = "MB/s"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, int | float):
            v = float(value)
        else:
            text = str(value).strip()
            for unit in ("MB/s", "mb/s", "MBps"):
                if text.endswith(unit):
                    text = text[: -len(unit)].strip()
                    break
            try:
                v = float(text)
            except ValueError:
                self.fail(f"{value!r} is not a bandwidth in MB/s (e.g. 20 or 20MB/s; other"
                          " units are not accepted)", param, ctx)
        if not math.isfinite(v) or v < 0:
            self.fail(f"{value!r}: a bandwidth is a number of MB/s >= 0 (0: no limit)",
                      param, ctx)
        return v


@click.command()
@click.argument("peer")
@click.option("--allocate", type=MBPerSecond(), metavar="MB/s",
              help="Set the bandwidth budget of the link to PEER in MB/s (10^6 bytes a"
                   " second; '20', '20MB/s', '0.5 MB/s'); 0: no limit.")
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
