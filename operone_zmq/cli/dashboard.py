"""``operone dashboard``: serve the live web dashboard of this node's broker."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import click

from ._common import Obj, _client_options, _fail, _write_ready

__all__ = ["dashboard"]

#: The dashboard's default port (the broker's are 7700..7703).
DEFAULT_PORT = 7780


@click.command("dashboard")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to serve on; anything but loopback requires the access token.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port to serve on (0: any free port).")
@click.option("--require-token", is_flag=True,
              help="Require the access token even on a loopback address.")
@click.option("--interval", type=click.FloatRange(0.1, 60.0), default=1.0, show_default=True,
              help="Seconds between polls of the broker.")
@click.option("--ready-file", type=click.Path(path_type=Path),
              help="Write a JSON line (url, port, token) here once serving.")
@_client_options
@click.pass_obj
def dashboard(obj: Obj, host: str, port: int, require_token: bool, interval: float,
              ready_file: Path | None, broker_addr: str | None, server_key: str | None) -> None:
    """Serve a live web dashboard of the mesh and Prometheus /metrics.

    The dashboard is an ordinary client of the broker (this node's keys).
    It serves 127.0.0.1 by default; on any other address every request needs
    the access token printed at start (in the URL, then kept in a cookie;
    Prometheus: Authorization: Bearer TOKEN).
    """
    try:
        import aiohttp  # noqa: F401
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        _fail(f"the dashboard needs aiohttp and prometheus-client ({exc.name} is missing):"
              " pip install 'operone-zmq[dashboard]'")
    from ..aio.runtime import async_client_for, run_until_signalled
    from ..dashboard.poller import Poller
    from ..dashboard.server import Dashboard, is_loopback

    config = obj.config()
    obj.logging(config)
    probe = async_client_for(obj.home, config, broker_addr, server_key)  # opens no socket
    broker = f"{probe.host}:{probe.base_port}"
    token = secrets.token_urlsafe(24) if require_token or not is_loopback(host) else None
    poller = Poller(lambda: async_client_for(obj.home, config, broker_addr, server_key),
                    broker, interval=interval)
    d = Dashboard(poller, host, port, token=token)

    def started() -> None:
        click.echo(f"operone dashboard of the broker at {broker}: {d.url}")
        click.echo(f"  metrics: {d.base_url}metrics")
        if token:
            why = "--require-token" if is_loopback(host) else f"{host} is not a loopback address"
            click.echo(f"  access token required ({why}): open the URL above; Prometheus:"
                       f" Authorization: Bearer {token}")
        _write_ready(ready_file, {"url": d.url, "port": d.port, "token": token,
                                  "broker": broker})

    async def go() -> None:
        try:
            await run_until_signalled(d.start, d.stop, d.wait, started)
        except OSError as exc:
            _fail(f"cannot serve on {host}:{port}: {exc.strerror or exc}")

    asyncio.run(go())
