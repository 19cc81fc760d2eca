"""Run operone discovery in a child process and report events as JSON lines.

Used by tests/integration/test_discovery.py inside network namespaces::

    python discovery_runner.py serve --node a --cluster c1 --port 7700 --key Z85 \\
        --interface 10.213.50.1
    python discovery_runner.py browse --interface 10.213.50.2 --timeout 2 [--cluster c1]
    python discovery_runner.py raw --instance x --port 7700 --txt '{"node": "x"}' ... \\
        --interface 10.213.50.3

stdout lines: ``{"event": "ready", ...}``, ``{"event": "found", "peer": {...}}``,
``{"event": "lost", "node": ...}``, ``{"event": "stats", ...}`` (after a
``stats`` line on stdin), ``{"event": "peers", "peers": [...]}`` (browse), and
``{"event": "stopped"}`` after SIGTERM (goodbye packets sent) or EOF on stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
import sys
import time
from typing import Any

from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from operone_zmq.aio.discovery import SERVICE_TYPE, DiscoveredPeer, Discovery, browse
from operone_zmq.logs import configure_logging


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": time.monotonic(), **fields}) + "\n")
    sys.stdout.flush()


def peer_dict(p: DiscoveredPeer) -> dict[str, Any]:
    return {**dataclasses.asdict(p), "address": p.address}


def stop_event() -> asyncio.Event:
    """Set on SIGTERM/SIGINT; installed first thing, so a signal that comes
    while discovery starts still ends in a clean stop (goodbye packets)."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    return done


async def until_stopped(done: asyncio.Event, on_stats: Any = None) -> None:
    """Until ``done`` or EOF on stdin; 'stats' lines call on_stats."""
    loop = asyncio.get_running_loop()

    def readable() -> None:
        line = sys.stdin.readline()
        if not line:
            loop.remove_reader(sys.stdin.fileno())
            done.set()
        elif line.strip() == "stats" and on_stats is not None:
            on_stats()

    loop.add_reader(sys.stdin.fileno(), readable)
    await done.wait()


async def serve(a: argparse.Namespace) -> None:
    done = stop_event()
    d = Discovery(
        a.node, cluster=a.cluster, port=a.port, public_key=a.key, name=a.name,
        addresses=a.address or None, interfaces=a.interface,
        on_found=lambda p: emit("found", peer=peer_dict(p)),
        on_lost=lambda n: emit("lost", node=n))
    await d.start()
    emit("ready", service=d.service_name, addresses=d.advertised_addresses)
    try:
        await until_stopped(done, lambda: emit("stats", stats=d.stats(),
                                         peers=[peer_dict(p) for p in d.peers()]))
    finally:
        await d.stop()
        await d.stop()  # idempotent
        emit("stopped")


async def raw(a: argparse.Namespace) -> None:
    """Register services with arbitrary (possibly invalid) TXT records, one per --txt:
    instances ``<instance>-0``, ``<instance>-1``, ..."""
    done = stop_event()
    aiozc = AsyncZeroconf(interfaces=a.interface)
    infos = [AsyncServiceInfo(SERVICE_TYPE, f"{a.instance}-{i}.{SERVICE_TYPE}", port=a.port,
                              properties=json.loads(txt), server=f"{a.instance}-{i}.local.",
                              parsed_addresses=a.address or a.interface)
             for i, txt in enumerate(a.txt)]
    # No probing (cooperating_responders): the names are unique to the test.
    announced = [await aiozc.async_register_service(info, cooperating_responders=True)
                 for info in infos]
    await asyncio.gather(*announced)
    emit("ready", services=[info.name for info in infos])
    try:
        await until_stopped(done)
    finally:
        await aiozc.async_close()
        emit("stopped")


async def scan(a: argparse.Namespace) -> None:
    t0 = time.monotonic()
    peers = await browse(a.timeout, interfaces=a.interface, cluster=a.cluster)
    emit("peers", peers=[peer_dict(p) for p in peers], took=time.monotonic() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--node", required=True)
    s.add_argument("--cluster", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--name", default="")
    r = sub.add_parser("raw")
    r.add_argument("--instance", required=True)
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--txt", action="append", required=True)
    b = sub.add_parser("browse")
    b.add_argument("--timeout", type=float, default=2.0)
    b.add_argument("--cluster", default=None)
    for p in (s, r, b):
        p.add_argument("--interface", action="append", required=True)
        p.add_argument("--address", action="append", default=[])
    a = ap.parse_args()
    configure_logging(level="warning", stream=sys.stderr)  # stdout is for events
    asyncio.run({"serve": serve, "raw": raw, "browse": scan}[a.cmd](a))


if __name__ == "__main__":
    main()
