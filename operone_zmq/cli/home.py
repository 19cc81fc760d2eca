"""``operone init``: create a node's home (config, key pair, trust store)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import click

from ..config import init_home
from ._common import Obj

__all__ = ["init"]

_HOSTNAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+")


def _check_host(host: str) -> None:
    """An address to bind: an IP address or a host name, without a port."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return
    except ValueError:
        pass
    if ":" in host:
        raise click.BadParameter(f"{host!r}: give the address alone and the port with"
                                 " --port", param_hint="--host")
    if not _HOSTNAME.fullmatch(host):
        raise click.BadParameter(f"{host!r} is neither an IP address nor a host name",
                                 param_hint="--host")


@click.command()
@click.option("--node-id", help="This node's id (default: from the hostname).")
@click.option("--host", help="Address the broker binds (default 127.0.0.1).")
@click.option("--port", "base_port", type=int, help="First of the four class ports (7700).")
@click.option("--fs-root", type=click.Path(path_type=Path),
              help="Directory the fs.* tools may use (default: disabled).")
@click.option("--workers", "workers_count", type=int, help="Workers 'node start' runs.")
@click.option("--force", is_flag=True, help="Replace an existing config and key pair.")
@click.pass_obj
def init(obj: Obj, node_id: str | None, host: str | None, base_port: int | None,
         fs_root: Path | None, workers_count: int | None, force: bool) -> None:
    """Create the node's key pair, trust store and config file."""
    fields: dict[str, Any] = {}
    if host:
        _check_host(host)
        fields["host"] = host
    if base_port:
        fields["base_port"] = base_port
    if fs_root:
        fs_root.mkdir(parents=True, exist_ok=True)
        fields["tools_fs_root"] = str(fs_root.expanduser().absolute())
    if workers_count is not None:
        fields["workers_count"] = workers_count
    config, kp = init_home(obj.home, node_id, force=force, **fields)
    click.echo(f"initialised node '{config.node.id}' in {obj.home.path}")
    click.echo(f"  config:      {obj.home.config_file}")
    click.echo(f"  public key:  {obj.home.node_public} (fingerprint {kp.fingerprint})")
    click.echo(f"  ports:       {config.node.host}:{config.node.base_port}..+3")
