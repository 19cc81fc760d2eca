"""``operone events [-f]``: a broker's recent events, and following new ones."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import click

from ._common import Obj, _client, _client_options, _fail

__all__ = ["events"]

#: Seconds between polls of QUERY events while following.
FOLLOW_INTERVAL = 0.5


def _line(e: dict[str, Any]) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(e["time"]))
    data = e.get("data")
    if isinstance(data, dict):
        text = " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}"
                        for k, v in data.items())
    else:
        text = "" if data is None else json.dumps(data)
    return f"{when} {e['event']:<22} {text}"


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing events as they happen.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--since", type=click.IntRange(min=0), default=0,
              help="Only events after this sequence number.")
@_client_options
@click.pass_obj
def events(obj: Obj, follow: bool, as_json: bool, since: int, broker_addr: str | None,
           server_key: str | None) -> None:
    """The broker's recent events (peer:connected, peer:disconnected,
    topology:updated, partition:*, qos:violation, message, ...); -f follows."""
    from ..errors import BadRequest

    config = obj.config()
    obj.logging(config)
    client = _client(obj, config, broker_addr, server_key)

    def show(e: dict[str, Any]) -> None:
        click.echo(json.dumps(e) if as_json else _line(e))

    async def go() -> None:
        try:
            await follow_events()
        except asyncio.CancelledError:  # Ctrl-C ends following; not an error
            return

    async def follow_events() -> None:
        seq = since
        async with client as c:
            while True:
                try:
                    a = await c.query("events", {"since": seq}, timeout=10.0)
                except BadRequest as exc:
                    if "unknown query" in str(exc):
                        _fail("this broker does not report events (it is older than this"
                              " command)")
                    raise
                if a["events"] and a["events"][0]["seq"] > seq + 1 and seq:
                    click.echo(f"({a['events'][0]['seq'] - seq - 1} events missed)", err=True)
                for e in a["events"]:
                    show(e)
                seq = a["next"]
                if not follow:
                    if not a["events"] and not since:
                        click.echo("no events yet", err=True)
                    return
                if not a["events"]:
                    await asyncio.sleep(FOLLOW_INTERVAL)

    asyncio.run(go())
