"""``operone cp``: copy a file to a node."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from ._common import Obj, _client, _client_options

__all__ = ["cp"]


@click.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("dest", metavar="NODE:PATH")
@click.option("--chunk", type=int, default=256 * 1024, show_default=True,
              help="Bytes per chunk.")
@_client_options
@click.pass_obj
def cp(obj: Obj, source: Path, dest: str, chunk: int, broker_addr: str | None,
       server_key: str | None) -> None:
    """Copy SOURCE to NODE:PATH (under that node's fs_root): chunked on the low
    class, throttled by policy, resumed after a broken link, checksummed."""
    node, colon, path = dest.partition(":")
    if not colon or not node or not path:
        raise click.BadParameter("must be NODE:PATH", param_hint="DEST")
    config = obj.config()
    obj.logging(config)
    size = source.stat().st_size
    client = _client(obj, config, broker_addr, server_key)

    async def go() -> Any:
        async with client as c:
            with click.progressbar(length=size, label=f"{source.name} -> {dest}",
                                   file=sys.stderr) as bar:
                done = [0]

                def progress(have: int, total: int) -> None:
                    bar.update(have - done[0])
                    done[0] = have

                return await c.copy_file(str(source), node, path, chunk_size=chunk,
                                         on_progress=progress)

    r = asyncio.run(go())
    click.echo(f"copied {r.size} bytes to {r.node}:{r.path} in {r.seconds:.2f} s"
               f" ({r.size / max(r.seconds, 1e-9) / 1e6:.2f} MB/s), sha256 {r.sha256}"
               + (f", resumed from byte {r.resumed_from}" if r.resumed_from else "")
               + (f", {r.attempts} attempts" if r.attempts > 1 else ""))
