"""Running mesh jobs on legacy hosts (SSH only) through Fabric.

The broker core decides which job runs on which legacy host and bounds the
concurrency per host; this module only executes: one :class:`SSHClient` per
host (connected lazily, reconnected when the connection dropped), blocking
Fabric calls in a bounded thread pool per host, SSH errors translated into
the job errors the rest of the mesh understands.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import (
    BadRequest,
    JobError,
    JobTimeout,
    NoRoute,
    Refused,
    SSHError,
    ToolFailed,
)

__all__ = ["LegacyHost", "LegacyRunner"]

#: Largest file fs.read returns from a legacy host (as the local fs.read).
FS_READ_MAX = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LegacyHost:
    """How to reach one legacy host."""

    name: str
    user: str
    host: str
    port: int = 22
    key_file: str | None = None
    known_hosts: str | None = None
    accept_unknown_host: bool = False
    max_concurrency: int = 4
    command_timeout: float = 60.0


class LegacyRunner:
    """Executes shell / fs.read / fs.write jobs on legacy hosts."""

    def __init__(self, hosts: list[LegacyHost]) -> None:
        self.hosts = {h.name: h for h in hosts}
        self._clients: dict[str, Any] = {}
        self._pools = {h.name: concurrent.futures.ThreadPoolExecutor(
            max_workers=h.max_concurrency, thread_name_prefix=f"ssh-{h.name}") for h in hosts}
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    def _client(self, name: str) -> Any:
        from ..ssh import SSHClient

        c = self._clients.get(name)
        if c is None:
            h = self.hosts[name]
            c = SSHClient(h.host, h.port, h.user,
                          private_key_path=str(Path(h.key_file).expanduser())
                          if h.key_file else None,
                          known_hosts=Path(h.known_hosts).expanduser()
                          if h.known_hosts else None,
                          accept_unknown_host=h.accept_unknown_host,
                          command_timeout=h.command_timeout, executor=self._pools[name])
            self._clients[name] = c
        return c

    def start(self, name: str, jid: str, tool: str, args: dict[str, Any], timeout: float,
              done: Any) -> None:
        """Run a job in the background; ``done(jid, value, error, duration)``
        is called on the loop when it ends (not when it was cancelled)."""
        task = asyncio.get_running_loop().create_task(
            self._run(name, jid, tool, args, timeout, done))
        self._tasks[jid] = task
        task.add_done_callback(functools.partial(self._forget, jid))

    def _forget(self, jid: str, task: asyncio.Task[Any]) -> None:
        if self._tasks.get(jid) is task:
            del self._tasks[jid]

    def cancel(self, jid: str) -> None:
        """Stop a running job (the remote command is signalled and closed)."""
        t = self._tasks.pop(jid, None)
        if t is not None:
            t.cancel()

    async def _run(self, name: str, jid: str, tool: str, args: dict[str, Any],
                   timeout: float, done: Any) -> None:
        t0 = time.monotonic()
        try:
            value = await self._execute(name, tool, args, timeout)
        except asyncio.CancelledError:
            return
        except JobError as exc:
            done(jid, None, exc, time.monotonic() - t0)
        except SSHError as exc:
            done(jid, None, _translate(name, exc), time.monotonic() - t0)
        except Exception as exc:  # a bug or an unexpected library error: still answer
            done(jid, None, ToolFailed(f"{type(exc).__name__}: {exc}", remote_type=type(
                exc).__name__, node=name), time.monotonic() - t0)
        else:
            done(jid, value, None, time.monotonic() - t0)

    async def _execute(self, name: str, tool: str, args: dict[str, Any],
                       timeout: float) -> Any:
        c = self._client(name)
        limit = min(timeout, self.hosts[name].command_timeout) if timeout > 0 else None
        if tool == "shell":
            argv = args.get("argv")
            if isinstance(argv, str) or not isinstance(argv, list) or not argv or not all(
                    isinstance(a, str) for a in argv):
                raise BadRequest("shell needs 'argv', a non-empty list of strings (shell"
                                 " strings are not accepted)")
            unknown = set(args) - {"argv", "timeout", "stdin", "env"}
            if unknown:
                raise BadRequest(f"shell on a legacy host: unexpected argument(s)"
                                 f" {sorted(unknown)}")
            t = args.get("timeout")
            if isinstance(t, int | float) and t > 0:
                limit = min(limit or t, float(t))
            r = await c.aexecute(shlex.join(argv), timeout=limit, stdin=args.get("stdin"),
                                 env=args.get("env"))
            return {"stdout": r.stdout, "stderr": r.stderr, "exit_code": r.exit_status,
                    "truncated": False}
        path = args.get("path")
        if not isinstance(path, str) or not path:
            raise BadRequest(f"{tool} needs 'path', a string")
        if tool == "fs.read":
            data = await c.aread_file(path, max_bytes=FS_READ_MAX)
            if args.get("binary"):
                return bytes(data)
            try:
                return bytes(data).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadRequest(f"{path} is not UTF-8 text; read it with binary=true") from exc
        if tool == "fs.write":
            payload = args.get("data")
            if isinstance(payload, str):
                raw = payload.encode("utf-8")
            elif isinstance(payload, bytes):
                raw = payload
            else:
                raise BadRequest("fs.write needs 'data', a string or bytes")
            await c.awrite_file(path, raw)
            return {"path": path, "bytes": len(raw)}
        raise BadRequest(f"legacy hosts offer shell, fs.read and fs.write, not '{tool}'")

    async def close(self) -> None:
        """Stop every job and close the SSH connections."""
        for t in list(self._tasks.values()):
            t.cancel()
        for c in self._clients.values():
            try:
                await c.adisconnect()
            except Exception:
                pass
        for p in self._pools.values():
            p.shutdown(wait=False, cancel_futures=True)


def _translate(name: str, exc: SSHError) -> JobError:
    """An SSH failure as the job error the origin understands."""
    from ..ssh import (
        SSHAuthenticationFailed,
        SSHConnectionRefused,
        SSHFileError,
        SSHHostKeyUnknown,
        SSHTimeout,
    )

    msg = f"legacy host '{name}': {exc}"
    if isinstance(exc, SSHTimeout):
        return JobTimeout(msg, node=name)
    if isinstance(exc, SSHConnectionRefused):
        return NoRoute(msg, node=name)
    if isinstance(exc, SSHAuthenticationFailed | SSHHostKeyUnknown):
        return Refused(msg, node=name)
    if isinstance(exc, SSHFileError):
        return BadRequest(msg, node=name)
    return ToolFailed(msg, remote_type=type(exc).__name__, node=name)
