"""The node-as-a-service helpers: PID file and the size-rotated log."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from operone_zmq.config import Home
from operone_zmq.service import (
    RotatingLog,
    pid_alive,
    read_pid_file,
    remove_pid_file,
    write_pid_file,
)


def test_the_log_rotates_by_size_and_keeps_a_bounded_number_of_files(tmp_path: Path) -> None:
    path = tmp_path / "log" / "node.log"
    log = RotatingLog(path, max_bytes=100, backups=2)
    for i in range(30):
        log.write(f"line {i:02d} " + "x" * 20 + "\n")  # 29 bytes a line
    log.close()
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == ["node.log", "node.log.1", "node.log.2"]
    for p in path.parent.iterdir():
        assert p.stat().st_size <= 100
    assert path.read_text().splitlines()[-1].startswith("line 29")
    # Reopened, it appends and counts what is there.
    log = RotatingLog(path, max_bytes=100, backups=2)
    log.write("again\n")
    log.close()
    assert path.read_text().endswith("again\n")


def test_a_pid_file_of_a_dead_process_is_stale(tmp_path: Path) -> None:
    home = Home(tmp_path)
    write_pid_file(home, {"pid": os.getpid(), "node": "n1"})
    assert read_pid_file(home) == {"pid": os.getpid(), "node": "n1"}
    p = subprocess.Popen([sys.executable, "-P", "-c", "pass"])
    p.wait(30)
    assert not pid_alive(p.pid)
    write_pid_file(home, {"pid": p.pid, "node": "n1"})
    assert read_pid_file(home) is None
    remove_pid_file(home, p.pid + 1)  # not its pid: left alone
    assert (tmp_path / "run" / "node.pid").exists()
    remove_pid_file(home, p.pid)
    assert not (tmp_path / "run" / "node.pid").exists()


def test_an_exited_process_that_its_parent_has_not_reaped_is_not_alive() -> None:
    """``node stop`` waits for the node's PID to go: a detached node is
    someone else's child (init's, which may reap it seconds later, more
    under load), and its zombie is a process that has exited."""
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc")
    # A parent that never reaps its child, which exits at once.
    parent = subprocess.Popen(
        [sys.executable, "-P", "-c",
         "import os, sys, time\n"
         "pid = os.fork()\n"
         "if pid == 0:\n    os._exit(0)\n"
         "print(pid, flush=True)\n"
         "time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        state = ""
        for _ in range(500):  # until it has exited (a zombie)
            with open(f"/proc/{child}/stat") as f:
                state = f.read().rpartition(")")[2].split()[0]
            if state == "Z":
                break
            time.sleep(0.01)
        assert state == "Z"
        assert not pid_alive(child)
        assert pid_alive(parent.pid)
    finally:
        parent.kill()
        parent.wait(30)
        if parent.stdout is not None:
            parent.stdout.close()
