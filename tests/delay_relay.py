"""A TCP relay that delays what it forwards: a stand-in for netem delay and
jitter, which the kernels here lack (packet *loss* is iptables' statistic
match, see netns_hosts.Diamond.set_loss).

    python delay_relay.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT \
        [--count N] [--control FILE] [--ready FILE]

Ports LISTEN_PORT+i relay to TARGET_PORT+i for i < N (a broker's four class
ports: N = 4).  Every chunk read is written to the other side ``delay`` ms
later (plus a uniform ±``jitter`` ms), in order.  FILE holds ``DELAY JITTER``
in ms and is read again every 0.1 s, so a test can change the delay while
connections stay up (missing or unreadable: no delay).  Runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

#: Bytes read per chunk; the delay applies to each chunk.
CHUNK = 65536
#: Chunks waiting per direction of a connection before reading stops (the
#: relay's own back-pressure; 256 x 64 KiB at most).
MAX_QUEUED = 256


class Delay:
    """The delay in force, re-read from the control file."""

    def __init__(self, control: Path | None) -> None:
        self.control = control
        self.delay = 0.0
        self.jitter = 0.0

    async def watch(self) -> None:
        while True:
            if self.control is not None:
                try:
                    d, j = (float(x) for x in self.control.read_text().split()[:2])
                    self.delay, self.jitter = d / 1000.0, j / 1000.0
                except (OSError, ValueError):
                    self.delay = self.jitter = 0.0
            await asyncio.sleep(0.1)

    def due(self, now: float) -> float:
        return now + max(0.0, self.delay + random.uniform(-self.jitter, self.jitter))


async def _pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter, delay: Delay) -> None:
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(MAX_QUEUED)

    async def writer() -> None:
        while True:
            at, data = await q.get()
            if not data:
                break
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            w.write(data)
            await w.drain()

    wt = asyncio.create_task(writer())
    last = 0.0
    try:
        while True:
            data = await r.read(CHUNK)
            # In order: a chunk never leaves before the one read before it.
            last = max(last, delay.due(loop.time()))
            await q.put((last, data))
            if not data:
                break
        await wt
    except (ConnectionError, OSError):
        pass
    finally:
        wt.cancel()
        with contextlib.suppress(Exception):
            w.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("listen_host")
    ap.add_argument("listen_port", type=int)
    ap.add_argument("target_host")
    ap.add_argument("target_port", type=int)
    ap.add_argument("--count", type=int, default=4)
    ap.add_argument("--control", type=Path)
    ap.add_argument("--ready", type=Path)
    a = ap.parse_args()
    delay = Delay(a.control)
    watcher = asyncio.create_task(delay.watch())

    def serve(i: int) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                  Awaitable[None]]:
        async def conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                tr, tw = await asyncio.open_connection(a.target_host, a.target_port + i)
            except OSError:
                w.close()
                return
            await asyncio.gather(_pipe(r, tw, delay), _pipe(tr, w, delay))
        return conn

    servers = [await asyncio.start_server(serve(i), a.listen_host, a.listen_port + i)
               for i in range(a.count)]
    if a.ready is not None:
        a.ready.write_text("ready\n")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    watcher.cancel()
    for s in servers:
        s.close()


if __name__ == "__main__":
    asyncio.run(main())
