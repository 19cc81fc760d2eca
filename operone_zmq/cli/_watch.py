"""``--watch``: redraw one screen in place until Ctrl-C (rich's Live display).

On a terminal the screen is redrawn in place; otherwise (a pipe, a file) each
frame is printed after the previous one, so a log of a watch stays readable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from ._common import Obj, _client

__all__ = ["watch_loop"]

Frame = Callable[[Any], Awaitable[RenderableType]]


def watch_loop(obj: Obj, broker_addr: str | None, server_key: str | None, frame: Frame,
               interval: float, *, plain: bool = False) -> None:
    """Call ``frame(client)`` every ``interval`` seconds and show what it
    returns (``plain``: print each as a line, e.g. JSON), until Ctrl-C.  A
    broker that stops answering is shown as such, and watched on."""
    config = obj.config()
    obj.logging(config)
    client = _client(obj, config, broker_addr, server_key)
    console = Console()

    async def next_frame(c: Any) -> RenderableType:
        try:
            return await frame(c)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broker that went away: say so, keep watching
            return Text(f"no answer from the broker at {c.host}:{c.base_port}: {exc}",
                        style="bold red")

    async def go() -> None:
        async with client as c:
            try:
                if plain or not console.is_terminal:
                    while True:
                        shown = await next_frame(c)
                        console.print(shown, soft_wrap=True, highlight=False)
                        if not plain:
                            console.print()
                        await asyncio.sleep(interval)
                with Live(console=console, auto_refresh=False,
                          redirect_stdout=False, redirect_stderr=False) as live:
                    while True:
                        live.update(await next_frame(c), refresh=True)
                        await asyncio.sleep(interval)
            except asyncio.CancelledError:  # Ctrl-C ends a watch; it is not an error
                return

    asyncio.run(go())
