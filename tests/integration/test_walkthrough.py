"""docs/operations.md "Three nodes on one machine", run as written (with free
ports instead of 7700/7710/7720 and a scratch HOME), so the docs stay true."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FAST_ENV, free_base_port

from operone_zmq.service import pid_alive

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def test_three_nodes_on_one_machine(tmp_path: Path) -> None:
    text = DOC.read_text()
    block = text.split("<!-- walkthrough -->\n```bash\n", 1)[1].split("```\n<!--", 1)[0]
    ports = {p: str(free_base_port()) for p in ("7700", "7710", "7720")}
    script = re.sub(r"\b(7700|7710|7720)\b", lambda m: ports[m.group(1)], block)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPERONE_")}
    env.update(FAST_ENV)
    env["HOME"] = str(tmp_path)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    try:
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env,
                           capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert '"executed_on": "pc3"' in r.stdout
        assert "connected" in r.stdout and "sysinfo" in r.stdout
        assert r.stdout.count("stopped node") == 3
    finally:  # whatever the script left running
        for n in (1, 2, 3):
            pid_file = tmp_path / "mesh" / f"pc{n}" / "run" / "node.pid"
            if pid_file.exists():
                pid = json.loads(pid_file.read_text())["pid"]
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
