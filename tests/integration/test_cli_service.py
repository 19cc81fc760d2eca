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
        return subprocess.run([sys.executable, "-P", "-m", "operone_zmq", *args], env=env,
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


def _decoy(tmp: Path) -> Path:
    """A directory holding a planted ``operone_zmq`` that leaves a mark."""
    d = tmp / "decoy"
    (d / "operone_zmq").mkdir(parents=True)
    mark = d / "decoy-ran"
    (d / "operone_zmq" / "__init__.py").write_text(
        f"open({str(mark)!r}, 'w').close()\nraise SystemExit(7)\n")
    (d / "operone_zmq" / "__main__.py").write_text("")
    return d


def test_a_node_started_beside_another_operone_zmq_runs_its_own(tmp_path: Path) -> None:
    """``node start`` run in a directory that holds another ``operone_zmq``
    (a checkout, an older version, a planted one): the node it detaches and
    the workers it supervises run the package the command itself runs, not
    that one (``python -m`` would put the working directory first)."""
    home = make_home(tmp_path / "svc", "beside", free_base_port())
    env = {**os.environ, **FAST_ENV, "OPERONE_HOME": str(home.path)}
    decoy = _decoy(tmp_path)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-P", "-m", "operone_zmq", *args], env=env,
                              cwd=decoy, capture_output=True, text=True, timeout=90)

    try:
        r = cli("node", "start", "--detach", "--workers", "1")
        assert r.returncode == 0, r.stdout + r.stderr
        st = json.loads(cli("node", "status", "--json").stdout)
        assert (st["state"], st["workers"]) == ("up", 1)
        ran = cli("run", "echo", "--arg", "x=1")
        assert ran.returncode == 0, ran.stderr
    finally:
        cli("node", "stop", "--timeout", "20")
    assert not (decoy / "decoy-ran").exists()


def test_a_child_of_a_package_found_through_the_working_directory_finds_it(
        tmp_path: Path) -> None:
    """Where the command found ``operone_zmq`` only through its working
    directory (``python -m operone_zmq`` run in a checkout), its children
    (run with ``-P``) are given that directory on PYTHONPATH."""
    real = Path(__import__("operone_zmq").__file__).parent
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "operone_zmq").symlink_to(real, target_is_directory=True)
    code = ("import json, subprocess\n"
            "from operone_zmq.cli._common import _self_command\n"
            "argv, env = _self_command()\n"
            "r = subprocess.run([argv[0], *argv[1:-2], '-c',"
            " 'import operone_zmq; print(operone_zmq.__file__)'], env=env, cwd='/',"
            " capture_output=True, text=True, check=True, timeout=60)\n"
            "print(json.dumps([argv, env is not None, r.stdout.strip()]))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", code], cwd=checkout, env=env,
                       capture_output=True, text=True, timeout=60, check=True)
    argv, given, child_file = json.loads(r.stdout)
    assert argv[1:] == ["-P", "-m", "operone_zmq"]
    assert given and child_file == str(checkout / "operone_zmq" / "__init__.py")
