"""limits.max_clients against a real broker: the refusal a client sees, and the
file-descriptor backstop at start (issue 9, "configuration that does nothing")."""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import LocalNode, free_base_port

from operone_zmq import AsyncClient, Broker, CurveKeys, TooManyClients
from operone_zmq.aio.fdlimit import fds_needed
from operone_zmq.core.broker import BrokerLimits
from operone_zmq.security import TrustStore, generate_keypair

pytestmark = pytest.mark.integration


def test_the_fourth_client_is_refused_and_served_once_a_place_is_free(tmp_path: Path) -> None:
    async def go() -> None:
        kp = generate_keypair(tmp_path / "keys", "node")
        assert kp.secret is not None
        trust = TrustStore(tmp_path / "trust")
        trust.accept("n1", kp.public)
        port = free_base_port()
        b = Broker("n1", keys=CurveKeys(kp.public, kp.secret), trust=trust, base_port=port,
                   worker_endpoint=f"ipc://{tmp_path}/n1.ipc",
                   limits=BrokerLimits(max_clients=3, client_idle=1.0))
        keys = CurveKeys(kp.public, kp.secret, kp.public)
        async with b:
            clients = [AsyncClient("127.0.0.1", port, keys=keys) for _ in range(4)]
            try:
                for c in clients:
                    await c.connect()
                for c in clients[:3]:
                    assert (await c.query("stats", timeout=10))["node"] == "n1"
                with pytest.raises(TooManyClients, match=r"at most 3 client connections"):
                    await clients[3].query("stats", timeout=10)
                await clients[0].close()  # the broker cannot see it go: it goes idle
                deadline = time.monotonic() + 20
                while True:
                    await asyncio.sleep(0.3)
                    for c in clients[1:3]:  # the others stay active
                        await c.query("stats", timeout=10)
                    try:
                        await clients[3].query("stats", timeout=10)
                        break
                    except TooManyClients:
                        assert time.monotonic() < deadline, "no place was freed"
                assert b.core.counters["clients_refused"] >= 1
            finally:
                for c in clients[1:]:
                    await c.close()

    asyncio.run(asyncio.wait_for(go(), 60))


def _limit_nofile(soft: int, hard: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE")
def test_a_broker_that_cannot_hold_max_clients_refuses_to_start(tmp_path: Path) -> None:
    n = LocalNode(tmp_path, "n1")
    limit = fds_needed(1000, 64) - 1  # the defaults need one more
    cmd = n._cli("broker", "start")
    p = subprocess.run(cmd, env=n.env, capture_output=True, text=True, timeout=60,
                       preexec_fn=lambda: _limit_nofile(limit, limit))
    assert p.returncode != 0
    out = p.stdout + p.stderr
    assert "limits.max_clients = 1000" in out and f"only {limit}" in out, out


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE")
def test_the_soft_descriptor_limit_is_raised_to_the_hard_one(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = fds_needed(1000, 64)
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"hard limit {hard} is below what the defaults need")
    n = LocalNode(tmp_path, "n1")
    env = dict(n.env)
    code = ("import asyncio, resource;"
            "from operone_zmq.aio.runtime import broker_from_config;"
            "from operone_zmq.config import Home, load_config;"
            f"from pathlib import Path; h = Home(Path(r'{n.dir}'));"
            "b = broker_from_config(h, load_config(h));"
            "asyncio.run(b.start());"
            "print('NOFILE', resource.getrlimit(resource.RLIMIT_NOFILE)[0], flush=True);"
            "asyncio.run(b.stop())")
    p = subprocess.run([sys.executable, "-P", "-c", code], env=env, capture_output=True, text=True,
                       timeout=60, preexec_fn=lambda: _limit_nofile(64, hard))
    assert p.returncode == 0, p.stderr
    (line,) = [x for x in p.stdout.splitlines() if x.startswith("NOFILE ")]
    assert int(line.split()[1]) == hard
