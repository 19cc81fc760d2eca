"""Set "frameworks": operone-zmq's no-op jobs/s against Ray's and Celery's
task throughput, on this machine in the same run.

Each framework runs where it is installed and is skipped, with the reason
in the notes, where it is not:

* **Ray**: ``ray.init(num_cpus=<cores>)`` on this machine, a no-op
  ``@ray.remote`` task, ``ray.get([noop.remote() for _ in range(n)])``
  (the whole batch submitted at once: Ray's best case).  It runs in a child
  process of the interpreter given by ``--ray-python`` (default: this one),
  so Ray can live in a virtualenv of its own.
* **Celery**: not measured.  It needs a message broker (Redis or RabbitMQ),
  which this machine does not have; the notes say so.

operone's figure is the foundation set's shape: client -> broker -> worker,
CurveZMQ, 100 no-op jobs in flight.  The frameworks and operone take turns
(repetitions alternate), never running at the same time: Ray alone starts
more processes than this machine has cores.  The target (issue 12): at
least 15x Ray's batch task throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from .harness import Result, Row, run_window, say
from .stacks import OperoneStack

#: The child that measures Ray: prints a JSON list of tasks/s, one per rep.
RAY_CHILD = """
import json, os, sys, time
import ray
n, reps = int(sys.argv[1]), int(sys.argv[2])
ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, logging_level="ERROR",
         log_to_driver=False)
@ray.remote
def noop():
    return None
ray.get([noop.remote() for _ in range(min(n, 1000))])  # workers up
out = []
for _ in range(reps):
    t = time.perf_counter()
    ray.get([noop.remote() for _ in range(n)])
    out.append(n / (time.perf_counter() - t))
print(json.dumps(out))
ray.shutdown()
"""

#: Seconds a framework's child may take (start-up included) before it is killed.
CHILD_TIMEOUT = 300.0


def _has_module(python: str, name: str) -> bool:
    r = subprocess.run([python, "-c", f"import {name}"], capture_output=True, timeout=120)
    return r.returncode == 0


def _ray(python: str, n: int, reps: int) -> list[float]:
    r = subprocess.run([python, "-c", RAY_CHILD, str(n), str(reps)], capture_output=True,
                       text=True, timeout=CHILD_TIMEOUT)
    if r.returncode != 0:
        raise RuntimeError(f"the Ray child failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    return [float(x) for x in json.loads(r.stdout.strip().splitlines()[-1])]


async def bench_frameworks(args: argparse.Namespace, work: Path) -> Result:
    """operone no-op jobs/s against Ray (and Celery) task throughput."""
    res = Result("frameworks", columns=("framework", "operone", "operone/framework"))
    reps = args.reps or (3 if args.quick else 5)
    jobs = 8_000 if args.quick else 20_000
    ray_n = 3_000 if args.quick else 10_000
    ray_python = args.ray_python or sys.executable
    has_ray = _has_module(ray_python, "ray")
    if not has_ray:
        res.notes.append(f"Ray skipped: 'import ray' fails in {ray_python} (pip install ray,"
                         " or --ray-python PATH for an interpreter that has it)")
    res.notes.append(_celery_note())
    op = OperoneStack(work / "operone", concurrency=args.worker_concurrency, profile=None)
    ours: list[float] = []
    theirs: list[float] = []
    try:
        await op.start()
        await run_window(op.submit_noop, 2_000, args.window)
        for i in range(reps):
            el, _ = await run_window(op.submit_noop, jobs, args.window)
            ours.append(jobs / el)
            say(f"  operone rep {i + 1}/{reps}: {jobs / el:,.0f} jobs/s")
            if has_ray:
                # operone idles (its processes stay up, asleep) while Ray runs.
                got = await asyncio.to_thread(_ray, ray_python, ray_n, 1)
                theirs.extend(got)
                say(f"  ray     rep {i + 1}/{reps}: {got[0]:,.0f} tasks/s")
    finally:
        with contextlib.suppress(Exception):
            await op.close()
    o = statistics.median(ours) if ours else None
    if has_ray and theirs:
        r = statistics.median(theirs)
        row = Row(f"no-op jobs/s vs Ray tasks ({ray_n:,} at once)", "jobs/s", r, o,
                  ">= 15x Ray")
        row.ok = None if row.ratio is None else row.ratio >= 15
        row.spread = max(_spread(ours), _spread(theirs))
        res.rows.append(row)
    else:
        res.rows.append(Row(f"no-op jobs/s, {args.window} in flight", "jobs/s", None, o))
    res.data |= {"operone_jobs_per_s": ours, "ray_tasks_per_s": theirs,
                 "ray_python": ray_python if has_ray else None,
                 "cores": os.cpu_count()}
    return res


def _celery_note() -> str:
    try:
        import celery  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        return "Celery skipped: not installed"
    return ("Celery skipped: installed, but this set has no Celery row (it would need a"
            " message broker, Redis or RabbitMQ, which this machine does not run)")


def _spread(xs: list[float]) -> float:
    if len(xs) < 2 or not statistics.median(xs):
        return 0.0
    return (max(xs) - min(xs)) / 2 / statistics.median(xs)

