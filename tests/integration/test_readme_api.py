"""README "The Python API": its first example, run as written against two
real nodes (pc1, whose home the client uses, and pc7, one hop away), so the
README stays true.

pc1's workers serve workers/example_tools.py (``math.fib``) and a ``render``
tool, advertise the capability ``gpu`` and may run ``uname``; pc7 has an
fs root for ``copy_file``.  Only what the example needs from outside is set
up here: the nodes, and a ``big.iso`` in the working directory.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FAST_ENV, free_base_port

from operone_zmq.service import pid_alive

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"

RENDER_TOOLS = '''
from operone_zmq import tool


@tool(name="render")
def render(scene: str) -> str:
    """Pretend to render ``scene``."""
    return f"rendered {scene}"
'''


def _example() -> str:
    text = README.read_text()
    section = text.split("## The Python API\n", 1)[1]
    return section.split("```python\n", 1)[1].split("```\n", 1)[0]


def test_the_python_api_example_runs_as_written(tmp_path: Path) -> None:
    example = _example()
    assert 'c.map("math.fib"' in example and "c.copy_file(" in example  # the one meant
    operone = str(Path(sys.executable).parent / "operone")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPERONE_")}
    env.update(FAST_ENV)
    env["HOME"] = str(tmp_path)
    homes = {n: tmp_path / "mesh" / n for n in ("pc1", "pc7")}
    ports = {n: free_base_port() for n in homes}
    (tmp_path / "render_tools.py").write_text(RENDER_TOOLS)
    files = tmp_path / "pc7-files"
    files.mkdir()

    def run(*args: str, extra: dict[str, str] | None = None) -> str:
        r = subprocess.run([operone, *args], env={**env, **(extra or {})}, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (args, r.stdout[-2000:], r.stderr[-2000:])
        return r.stdout

    try:
        run("--home", str(homes["pc1"]), "init", "--node-id", "pc1", "--port",
            str(ports["pc1"]))
        run("--home", str(homes["pc7"]), "init", "--node-id", "pc7", "--port",
            str(ports["pc7"]), "--fs-root", str(files))
        for a, b in (("pc1", "pc7"), ("pc7", "pc1")):  # each trusts the other
            line = run("--home", str(homes[b]), "keys", "show").strip().splitlines()[-1]
            accept = shlex.split(line.split(": operone ", 1)[1])
            run("--home", str(homes[a]), *accept)
        run("--home", str(homes["pc1"]), "node", "start", "--detach", "--workers", "2",
            "--tools", str(REPO / "workers" / "example_tools.py"),
            "--tools", str(tmp_path / "render_tools.py"), "--cap", "gpu",
            extra={"OPERONE_TOOLS_SHELL_ALLOW": "uname"})
        run("--home", str(homes["pc7"]), "node", "start", "--detach", "--workers", "1",
            "--peer", f"pc1@127.0.0.1:{ports['pc1']}")
        (tmp_path / "big.iso").write_bytes(os.urandom(300_000))
        script = ("import time\nfrom operone_zmq import Client\n"
                  "with Client.from_home() as c:\n"
                  "    for _ in range(120):  # until pc7 is routable (a second or two)\n"
                  "        if c.route('pc7').get('reachable'):\n"
                  "            break\n"
                  "        time.sleep(0.25)\n"
                  + example)
        r = subprocess.run([sys.executable, "-P", "-c", script],
                           env={**env, "OPERONE_HOME": str(homes["pc1"])}, cwd=tmp_path,
                           capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        out = [line for line in r.stdout.splitlines() if line]  # (uname's own newline)
        assert out[0].startswith("Linux")           # uname -a, from the shell tool
        assert out[1] and out[1] != "None"           # the job id, known at once
        assert out[2] == "pc1"                       # where render ran (the gpu node)
        copied = files / "images" / "big.iso"
        assert copied.read_bytes() == (tmp_path / "big.iso").read_bytes()
    finally:
        for home in homes.values():
            subprocess.run([operone, "--home", str(home), "node", "stop"], env=env,
                           capture_output=True, timeout=60)
            pid_file = home / "run" / "node.pid"
            if pid_file.exists():  # whatever did not stop
                pid = json.loads(pid_file.read_text())["pid"]
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
