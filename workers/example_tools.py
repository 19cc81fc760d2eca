# An example tool pack for operone-zmq workers.
#
# Run a worker that offers these tools next to the built-ins with:
#
#     operone worker start --tools workers/example_tools.py
#
# A tool is a plain function decorated with @tool; its keyword arguments come
# from the job's argument map and its return value (anything msgpack can
# encode) is the job's result.  Name tools with dots to group them.  A
# parameter named ``ctx`` receives the job's ToolContext (deadline, progress
# reporting and a cancel flag).  Tools may be plain functions or ``async def``;
# long-running plain functions should check ``ctx.cancelled`` now and then.
# Raising an exception fails the job.
"""Example tools: word counts, Fibonacci numbers, SHA-256 digests and a prime counter."""

from __future__ import annotations

import hashlib

from operone_zmq.tools import ToolContext, tool

FIB_MAX = 10_000
PRIMES_MAX = 10_000_000


@tool(name="text.wordcount")
def wordcount(text: str) -> dict[str, int]:
    """Count the words, lines and characters of a text."""
    return {"words": len(text.split()), "lines": len(text.splitlines()), "chars": len(text)}


@tool(name="math.fib")
def fib(n: int) -> int:
    """Return the n-th Fibonacci number (0 <= n <= 10000)."""
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= FIB_MAX:
        raise ValueError(f"n must be an integer from 0 to {FIB_MAX}, not {n!r}")
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


@tool(name="hash.sha256")
def sha256(data: str | bytes) -> str:
    """Return the hex SHA-256 digest of bytes, or of a string encoded as UTF-8."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, bytes):
        raise TypeError(f"data must be a string or bytes, not {type(data).__name__}")
    return hashlib.sha256(data).hexdigest()


@tool(name="math.count_primes")
def count_primes(limit: int, ctx: ToolContext) -> int:
    """Count the primes below limit, reporting progress and stopping when cancelled."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= PRIMES_MAX:
        raise ValueError(f"limit must be an integer from 0 to {PRIMES_MAX}, not {limit!r}")
    sieve = bytearray([1]) * max(limit, 2)
    sieve[0:2] = b"\x00\x00"
    i = 2
    while i * i < limit:
        if ctx.cancelled.is_set():  # long sync tools should check this regularly
            raise RuntimeError("cancelled")
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, limit, i)))
            ctx.progress(i * i / limit, None)
        i += 1
    return sum(sieve[:limit])
