"""The event loop a real broker and worker run on: uvloop by default where
it is installed, asyncio's with OPERONE_EVENT_LOOP=asyncio (both serve the
same jobs), and a bad value is one clear line and exit code 1."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FAST_ENV, free_base_port, make_home, wait_for

import operone_zmq

pytestmark = pytest.mark.integration

HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


def _start(home: Path, what: str, ready: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-P", "-m", "operone_zmq", what, "start",
                             "--ready-file", str(ready)], env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_broker_and_worker_serve_on_the_loop_chosen(tmp_path: Path, loop: str) -> None:
    if loop == "uvloop" and not HAS_UVLOOP:
        pytest.skip("uvloop is not installed (it has no Windows build)")
    home = make_home(tmp_path / "n", "n1", free_base_port())
    env = {**os.environ, **FAST_ENV, "OPERONE_HOME": str(home.path)}
    if loop == "asyncio":
        env["OPERONE_EVENT_LOOP"] = "asyncio"
    else:
        env.pop("OPERONE_EVENT_LOOP", None)  # the default: uvloop where installed
    procs: list[subprocess.Popen[str]] = []
    try:
        procs.append(_start(home.path, "broker", tmp_path / "b.ready", env))
        wait_for(lambda: (tmp_path / "b.ready").exists() or procs[0].poll() is not None, 30,
                 "the broker to start")
        procs.append(_start(home.path, "worker", tmp_path / "w.ready", env))
        wait_for(lambda: (tmp_path / "w.ready").exists() or procs[1].poll() is not None, 30,
                 "the worker to start")
        for name in ("b.ready", "w.ready"):
            info = json.loads((tmp_path / name).read_text())
            assert info["loop"] == loop, name
            # ... and what build the daemon runs: this process's, compiled or not
            # (run from the checkout, ``python -m`` alone would import its source).
            assert info["compiled"] == len(operone_zmq.compiled_modules()), name
        r = subprocess.run([sys.executable, "-P", "-m", "operone_zmq", "run", "echo", "--arg",
                            "x=1"], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["value"] == {"x": 1}
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


def test_a_bad_event_loop_is_refused_with_one_line(tmp_path: Path) -> None:
    home = make_home(tmp_path / "n", "n1", free_base_port())
    env = {**os.environ, **FAST_ENV, "OPERONE_HOME": str(home.path),
           "OPERONE_EVENT_LOOP": "trio"}
    r = subprocess.run([sys.executable, "-P", "-m", "operone_zmq", "broker", "start"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "OPERONE_EVENT_LOOP must be one of auto, uvloop, asyncio, not 'trio'" in r.stderr
    assert "Traceback" not in r.stderr
