"""Sets that run a stand-alone benchmark script and keep its output as notes:
``qos`` (scripts/bench_qos.py) and ``inproc`` (scripts/bench_inproc.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from .harness import SCRIPT, Result


#: Every benchmark set, by name: ``async fn(args, work_dir) -> Result``.
async def _script_set(name: str, argv: list[str]) -> Result:
    """Run one of the stand-alone benchmark scripts; its output becomes notes."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 900)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    result = Result(name)
    result.notes = [line for line in out.decode(errors="replace").splitlines() if line]
    return result


async def bench_qos(args: argparse.Namespace, work: Path) -> Result:
    """QoS: critical-class RTT idle vs with the low class saturated, and the
    achieved file-transfer rate against its 5 MB/s policy (scripts/bench_qos.py)."""
    argv = [sys.executable, str(SCRIPT.with_name("bench_qos.py"))]
    if args.quick:
        argv.append("--quick")
    return await _script_set("qos", argv)


async def bench_inproc(args: argparse.Namespace, work: Path) -> Result:
    """Like for like with the original: client -> broker serving the tool in its
    own process (scripts/bench_inproc.py)."""
    argv = [sys.executable, str(SCRIPT.with_name("bench_inproc.py"))]
    if args.quick:
        argv += ["--jobs", "10000"]
    return await _script_set("inproc", argv)
