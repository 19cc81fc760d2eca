"""Tools for the failover and chaos tests (loaded by workers with --tools).

Side effects go to the file named by $OPERONE_TEST_SIDE_EFFECTS, one line per
execution, so a test can count how often each job really ran.
"""

from __future__ import annotations

import fcntl
import os
import time

from operone_zmq.tools import ToolContext, tool


def _append(line: str, once: bool) -> None:
    path = os.environ["OPERONE_TEST_SIDE_EFFECTS"]
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        if once:
            f.seek(0)
            if any(existing.rstrip("\n") == line for existing in f):
                return
        f.write(line + "\n")
        f.flush()


@tool(name="chaos.record")
def record(key: str, seconds: float = 0.0, once: bool = True, ctx: ToolContext | None = None,
           ) -> str:
    """Record ``key`` in the side-effect file (at most once when ``once``), then wait."""
    _append(key, once)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ctx is not None and ctx.cancelled.is_set():
            break
        time.sleep(0.01)
    return key


@tool(name="chaos.node")
def node(ctx: ToolContext) -> str:
    """Return the node this ran on."""
    return ctx.node
