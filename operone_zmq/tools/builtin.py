"""The built-in tools every worker offers: echo, sleep, sysinfo, shell and fs.*.

``shell`` and ``fs.*`` follow the :class:`ToolsConfig` given to
:func:`builtin_registry` (the node's policy, fixed when the worker starts);
with the default config they refuse every job.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import socket
import sys
from typing import Any

from operone_zmq.errors import BadRequest
from operone_zmq.tools import fs as _fs
from operone_zmq.tools.registry import ToolRegistry
from operone_zmq.tools.shell import run_shell
from operone_zmq.tools.spec import ToolContext, ToolsConfig, tool

__all__ = ["builtin_registry", "echo", "sleep", "sysinfo"]

#: Longest ``sleep`` accepted, in seconds.
SLEEP_MAX = 3600.0


@tool(inline=True)
def echo(**args: Any) -> dict[str, Any]:
    """Return the arguments unchanged."""
    return args


@tool
async def sleep(seconds: float) -> float:
    """Wait the given number of seconds (0 to 3600) without blocking the worker."""
    import asyncio

    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or math.isnan(seconds)
        or not 0 <= seconds <= SLEEP_MAX
    ):
        raise BadRequest(f"seconds must be a number from 0 to {SLEEP_MAX:g}, not {seconds!r}")
    await asyncio.sleep(seconds)
    return seconds


@functools.cache
def _static_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "cpus": os.cpu_count(),
    }


@tool
def sysinfo() -> dict[str, Any]:
    """Describe this node: host name, OS, machine, Python, CPUs, pid and load average."""
    try:
        load: list[float] | None = list(os.getloadavg())
    except (AttributeError, OSError):
        load = None
    return {
        "hostname": socket.gethostname(),
        **_static_info(),
        "pid": os.getpid(),
        "loadavg": load,
    }


def builtin_registry(config: ToolsConfig) -> ToolRegistry:
    """Return a registry of the built-in tools, with ``shell`` and ``fs.*`` bound to ``config``."""

    @tool(name="shell")
    def shell(
        argv: list[str],
        timeout: float | None = None,
        cwd: str | None = None,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
        *,
        ctx: ToolContext,
    ) -> dict[str, Any]:
        """Run an allow-listed executable with an argv list; return stdout, stderr, exit code."""
        return run_shell(config, ctx, argv, timeout=timeout, cwd=cwd, stdin=stdin, env=env)

    @tool(name="fs.read")
    def fs_read(
        path: str, binary: bool = False, offset: int = 0, length: int | None = None
    ) -> str | bytes:
        """Read a file under the node's file root (text, or bytes with binary=true)."""
        return _fs.fs_read(config, path, binary=binary, offset=offset, length=length)

    @tool(name="fs.write")
    def fs_write(
        path: str, data: str | bytes, append: bool = False, mkdirs: bool = False
    ) -> dict[str, Any]:
        """Write or append to a file under the node's file root."""
        return _fs.fs_write(config, path, data, append=append, mkdirs=mkdirs)

    @tool(name="fs.list")
    def fs_list(path: str = ".") -> list[dict[str, Any]]:
        """List a directory under the node's file root."""
        return _fs.fs_list(config, path)

    @tool(name="fs.stat")
    def fs_stat(path: str, sha256: bool = False) -> dict[str, Any]:
        """Size (and SHA-256) of a file under the node's file root."""
        return _fs.fs_stat(config, path, sha256)

    return ToolRegistry([echo, sleep, sysinfo, shell, fs_read, fs_write, fs_list, fs_stat])
