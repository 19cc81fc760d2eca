"""The service units in brokers/ are valid: the systemd unit passes
``systemd-analyze verify`` (where systemd is installed), the launchd plist
parses and runs ``operone node start`` in the foreground."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BROKERS = Path(__file__).resolve().parents[2] / "brokers"


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    unit = (BROKERS / "systemd" / "operone.service").read_text()
    assert "ExecStart=/usr/local/bin/operone node start\n" in unit
    # verify checks that ExecStart exists and the user is known: point them at
    # this machine's (the unit itself names the usual install paths).
    operone = Path(sys.executable).with_name("operone")
    local = (unit.replace("/usr/local/bin/operone", str(operone))
             .replace("User=operone", "User=root").replace("Group=operone", "Group=root"))
    path = tmp_path / "operone.service"
    path.write_text(local)
    r = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "operone.service" not in r.stderr, r.stderr  # no warning about the unit


def test_the_launchd_plist_parses() -> None:
    with open(BROKERS / "launchd" / "org.operone.node.plist", "rb") as f:
        plist = plistlib.load(f)
    assert plist["Label"] == "org.operone.node"
    assert plist["ProgramArguments"][1:] == ["node", "start"]
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
