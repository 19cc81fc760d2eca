"""A node as a service (issue 13): `node start --detach`, `node status`,
`logs`, `node stop`, driven as a user does, with the exit codes a script uses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FAST_ENV, free_base_port, make_home, wait_for

from operone_zmq.service import pid_alive

pytestmark = pytest.mark.integration


def test_detach_status_logs_stop(tmp_path: Path) -> None:
    home = make_home(tmp_path / "svc", "svc", free_base_port())
    env = {**os.environ, **FAST_ENV, "OPERONE_HOME": str(home.path), "OPERONE_LOG_LEVEL": "info"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "operone_zmq", *args], env=env,
                              capture_output=True, text=True, timeout=90)

    pid = None
    try:
        r = cli("node", "start", "--detach", "--workers", "1")
        assert r.returncode == 0, r.stderr
        assert "started in the background" in r.stdout
        info = json.loads((home.run_dir / "node.pid").read_text())
        pid = info["pid"]
        assert pid_alive(pid) and len(info["worker_pids"]) == 1
        again = cli("node", "start", "--detach")
        assert again.returncode == 1 and "already running" in again.stderr
        st = cli("node", "status", "--json")
        assert st.returncode == 0, st.stdout + st.stderr
        status = json.loads(st.stdout)
        assert (status["state"], status["pid"], status["workers"]) == ("up", pid, 1)
        assert status["version"] and status["endpoints"]
        assert status["loop"] in ("uvloop", "asyncio")  # the daemon's event loop
        assert cli("run", "echo", "--arg", "x=1").returncode == 0
        logs = cli("logs", "-n", "200")
        assert logs.returncode == 0 and "broker_started" in logs.stdout
        assert "worker_started" in logs.stdout  # the workers' output reaches the log too
        stop = cli("node", "stop", "--timeout", "20")
        assert stop.returncode == 0 and "stopped node 'svc'" in stop.stdout, stop.stdout
        wait_for(lambda: not pid_alive(pid), 10, "the node to exit")  # type: ignore[arg-type]
        for wpid in info["worker_pids"]:
            wait_for(lambda w=wpid: not pid_alive(w), 10, "its worker to exit")
        down = cli("node", "status")
        assert down.returncode == 3 and "not running" in down.stdout
        assert not (home.run_dir / "node.pid").exists()
        assert cli("node", "stop").returncode == 0  # stopping a stopped node is fine
        # A node killed hard leaves a stale PID file: read as "not running".
        r = cli("node", "start", "--detach", "--workers", "0")
        assert r.returncode == 0, r.stderr
        pid = json.loads((home.run_dir / "node.pid").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pid), 10, "the node to die")  # type: ignore[arg-type]
        assert cli("node", "status").returncode == 3
    finally:
        if pid is not None and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
