"""The node-as-a-service helpers: PID file and the size-rotated log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait(30)
    assert not pid_alive(p.pid)
    write_pid_file(home, {"pid": p.pid, "node": "n1"})
    assert read_pid_file(home) is None
    remove_pid_file(home, p.pid + 1)  # not its pid: left alone
    assert (tmp_path / "run" / "node.pid").exists()
    remove_pid_file(home, p.pid)
    assert not (tmp_path / "run" / "node.pid").exists()
