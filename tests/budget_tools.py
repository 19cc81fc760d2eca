"""A tool for the budget tests (loaded by workers with --tools): it holds its
job (and so the broker holds the job's arguments) for a while."""

from __future__ import annotations

import asyncio

from operone_zmq.tools import tool


@tool(name="budget.hold")
async def hold(seconds: float, blob: bytes = b"") -> int:
    """Wait ``seconds``, then return the size of ``blob``."""
    await asyncio.sleep(seconds)
    return len(blob)
