"""Keeps one job in flight per priority class from a broker to a node and
writes one JSON line per finished job (run by the partition tests as a real
client process inside a namespace).

    python heal_load.py HOME_DIR TARGET_NODE OUT_FILE [TIMEOUT]

Each line: ``{"cls": "normal", "sent": wall, "done": wall, "ok": bool,
"err": code}``.  Runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

from operone_zmq.aio.client import AsyncClient
from operone_zmq.aio.sockets import CurveKeys
from operone_zmq.config import Home, load_config
from operone_zmq.errors import OperoneError
from operone_zmq.security.keys import load_keypair

CLASSES = ("critical", "high", "normal", "low")


async def main(home_dir: str, target: str, f: TextIO, timeout: float) -> None:
    home = Home(Path(home_dir))
    cfg = load_config(home)
    kp = load_keypair(home.node_secret)
    assert kp.secret is not None
    keys = CurveKeys(kp.public, kp.secret, kp.public)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with AsyncClient("127.0.0.1", cfg.node.base_port, keys=keys) as c:

        async def one_class(cls: str) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                sent = time.time()
                ok, err = True, ""
                try:
                    await c.submit("echo", {"n": n}, on=target, priority=cls,
                                   timeout=timeout, retries=0)
                except OperoneError as exc:
                    ok, err = False, getattr(exc, "code", type(exc).__name__)
                f.write(json.dumps({"cls": cls, "sent": sent, "done": time.time(),
                                    "ok": ok, "err": err}) + "\n")
                if not ok:
                    await asyncio.sleep(0.05)

        tasks = [asyncio.create_task(one_class(cls)) for cls in CLASSES]
        await stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    with open(sys.argv[3], "a", buffering=1) as out:
        asyncio.run(main(sys.argv[1], sys.argv[2], out,
                         float(sys.argv[4]) if len(sys.argv) > 4 else 2.0))
