"""A node as a service: its PID file, its rotating log, and process checks.

``operone node start`` writes :data:`PID_FILE` in the home's run directory
while it serves (foreground or ``--detach``) and removes it when it stops;
``node stop`` and ``node status`` read it.  A PID file whose process is gone
(the node was killed) is stale and treated as "not running".

A detached node logs to ``home/log/node.log`` through :class:`RotatingLog`:
when the file would pass ``max_bytes`` it is renamed ``node.log.1`` (older
ones shift up to ``.BACKUPS``, the oldest is deleted), so the log never holds
more than about ``(BACKUPS + 1) * max_bytes``.  The workers' output reaches it
through the node (one writer, so rotation is never raced).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from .config import Home

__all__ = [
    "BACKUPS",
    "LOG_FILE",
    "MAX_LOG_BYTES",
    "PID_FILE",
    "RotatingLog",
    "log_path",
    "pid_alive",
    "pid_path",
    "read_pid_file",
    "remove_pid_file",
    "terminate",
    "write_pid_file",
]

#: The PID file's name, in the home's run directory.
PID_FILE = "node.pid"
#: A detached node's log file, in the home's log directory.
LOG_FILE = "node.log"
#: Size at which the log rotates: a few days of info-level lines of a busy
#: node, small enough to read with `operone logs`.
MAX_LOG_BYTES = 10 * 1024 * 1024
#: Rotated logs kept (node.log.1 .. node.log.N): bounds the disk used.
BACKUPS = 5


def pid_path(home: Home) -> Path:
    return home.run_dir / PID_FILE


def log_path(home: Home) -> Path:
    return home.log_dir / LOG_FILE


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited (a zombie has)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":  # pragma: no cover - Windows
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # type: ignore[attr-defined]
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))  # type: ignore[attr-defined]
        ctypes.windll.kernel32.CloseHandle(handle)  # type: ignore[attr-defined]
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)  # our own child that exited: reap it
        if done == pid:
            return False
    # Someone else's child that exited and is not reaped yet (a detached
    # node is init's, which may take seconds to reap it): it is gone.
    return _proc_state(pid) not in ("Z", "X")


def _proc_state(pid: int) -> str | None:
    """The state letter of ``pid`` from /proc (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # "pid (comm) S ...": comm may hold spaces and parentheses.
    rest = stat.rpartition(b")")[2].split()
    return rest[0].decode("ascii", "replace") if rest else None


def write_pid_file(home: Home, info: dict[str, Any]) -> None:
    """Write the PID file (atomically) with ``info`` (pid, node, ports, ...)."""
    path = pid_path(home)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(path)


def read_pid_file(home: Home) -> dict[str, Any] | None:
    """The PID file's contents when its process is alive, else None."""
    try:
        info = json.loads(pid_path(home).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
        return None
    return info if pid_alive(info["pid"]) else None


def remove_pid_file(home: Home, pid: int) -> None:
    """Remove the PID file if it is still ``pid``'s."""
    path = pid_path(home)
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if isinstance(info, dict) and info.get("pid") == pid:
        with contextlib.suppress(OSError):
            path.unlink()


def terminate(pid: int, timeout: float) -> str:
    """Stop process ``pid``: SIGTERM (the node stops its workers and links
    gracefully), then after ``timeout`` seconds SIGKILL.  "stopped",
    "killed" or "gone" (it was not running)."""
    if not pid_alive(pid):
        return "gone"
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "gone"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return "stopped"
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL if sys.platform != "win32" else signal.SIGTERM)
    deadline = time.monotonic() + 5.0
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return "killed"


class RotatingLog:
    """A text stream appending to ``path`` that rotates by size (thread-safe:
    the node and the threads that copy its workers' output share it)."""

    def __init__(self, path: Path, max_bytes: int = MAX_LOG_BYTES,
                 backups: int = BACKUPS) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._f: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._size = self._f.tell()

    def _rotate(self) -> None:
        self._f.close()
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                src.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.backups > 0:
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._size = 0

    def write(self, text: str) -> int:
        n = len(text.encode("utf-8", "replace"))
        with self._lock:
            if self._size and self._size + n > self.max_bytes:
                self._rotate()
            self._f.write(text)
            self._f.flush()
            self._size += n
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._f.flush()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        with self._lock:
            self._f.close()
