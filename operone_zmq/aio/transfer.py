"""File transfer over the mesh: chunked, checksummed, throttled, resumable.

A copy is a sequence of ``fs.write`` jobs (append, one chunk each) on the
``low`` priority class to the destination node, so every link on the way
shapes it with the file-transfer policy (5 MB/s by default, or the link's
allocation), and heartbeats and jobs on the other classes are never stuck
behind it.  The file lands only under the receiving node's ``fs_root``.

Resume: before sending, and after any failure, the sender asks the
destination how much it already has (``fs.stat``) and continues from there;
a file that is longer than the source, or a prefix that does not match, is
rewritten from the start.  At the end the destination's SHA-256 must equal
the source's.

This module needs of the client only its ``run`` method, named by the
:class:`JobRunner` protocol, so it does not import ``aio.client``; the
client imports it (``AsyncClient.copy_file``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import JobError, OperoneError, ToolFailed

__all__ = ["CHUNK_SIZE", "JobRunner", "TransferResult", "copy_file"]

#: Bytes per chunk: 256 KiB is 50 ms at 5 MB/s (fine-grained shaping and
#: resume) and few enough messages that per-message costs do not matter.
CHUNK_SIZE = 256 * 1024

#: Attempts after a failure (a broken link, a restarting broker) before the
#: copy gives up; the wait between them doubles up to MAX_BACKOFF seconds.
MAX_ATTEMPTS = 30
MAX_BACKOFF = 2.0


@dataclass(frozen=True, slots=True)
class TransferResult:
    """What a copy did."""

    node: str
    path: str
    size: int
    sha256: str
    resumed_from: int
    attempts: int
    seconds: float


class JobRunner(Protocol):
    """What a copy needs of a client: run one job and return its value
    (:meth:`operone_zmq.aio.client.AsyncClient.run`)."""

    async def run(self, tool: str, args: Mapping[str, Any] | None = None,
                  **kw: Any) -> Any: ...


def _sha256(path: Path, limit: int | None = None) -> str:
    h = hashlib.sha256()
    left = limit
    with open(path, "rb") as f:
        while left is None or left > 0:
            block = f.read(1 << 20 if left is None else min(1 << 20, left))
            if not block:
                break
            h.update(block)
            if left is not None:
                left -= len(block)
    return h.hexdigest()


def _read_chunk(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


async def copy_file(
    client: JobRunner,
    local: str | os.PathLike[str],
    node: str,
    remote: str,
    *,
    chunk_size: int = CHUNK_SIZE,
    priority: str = "low",
    on_progress: Callable[[int, int], None] | None = None,
    timeout: float = 60.0,
) -> TransferResult:
    """Copy ``local`` to ``remote`` (under the fs root of ``node``)."""
    src = Path(local)
    size = await asyncio.to_thread(os.path.getsize, src)
    digest = await asyncio.to_thread(_sha256, src)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    attempts = 0
    resumed_from = -1
    backoff = 0.1
    while True:
        attempts += 1
        try:
            st: dict[str, Any] = await client.run("fs.stat", {"path": remote}, on=node,
                                                  priority="high", timeout=timeout)
            have = int(st["size"]) if st.get("exists") else 0
            if have > size or (have and await _remote_prefix_differs(
                    client, src, node, remote, have, timeout)):
                have = 0
            if resumed_from < 0:
                resumed_from = have
            first = have == 0
            while have < size or first:
                data = await asyncio.to_thread(_read_chunk, src, have, chunk_size)
                await client.run("fs.write", {"path": remote, "data": data,
                                              "append": not first, "mkdirs": True},
                                 on=node, priority=priority, timeout=timeout)
                first = False
                have += len(data)
                if on_progress is not None:
                    on_progress(have, size)
                if not data:
                    break
            final = await client.run("fs.stat", {"path": remote, "sha256": True}, on=node,
                                     priority="high", timeout=timeout)
            if final.get("sha256") != digest:
                raise ToolFailed(f"checksum mismatch after copying to {node}:{remote}"
                                 f" ({final.get('sha256')} != {digest})")
            return TransferResult(node, remote, size, digest, max(resumed_from, 0), attempts,
                                  loop.time() - t0)
        except (JobError, OperoneError) as exc:
            code = getattr(exc, "code", "")
            if attempts >= MAX_ATTEMPTS or code in (
                    "refused", "path_outside_root", "bad_request", "tool_not_found"):
                raise
            if resumed_from < 0 and code in ("no_route", "unreachable", "timeout"):
                raise  # never reached the node: fail as fast as a job does (resuming
                # is for a link that broke during the copy)
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF, backoff * 2)


async def _remote_prefix_differs(client: JobRunner, src: Path, node: str, remote: str,
                                 have: int, timeout: float) -> bool:
    """Whether the first ``have`` bytes on the destination differ from ours."""
    st = await client.run("fs.stat", {"path": remote, "sha256": True}, on=node,
                          priority="high", timeout=timeout)
    ours = await asyncio.to_thread(_sha256, src, have)
    return bool(st.get("sha256") != ours)
