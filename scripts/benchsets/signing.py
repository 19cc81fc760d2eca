"""The signing set: what end-to-end signatures cost, on against off in one run.

Two lines of three brokers, a - b - c, one with ``security.signatures``
false (the baseline column), one with it on (the default); a worker on c; a
client of a runs echo on c (two hops: signed at a, relayed unread by b,
verified at c, and the RESULT signed at c and verified at a), and echo on
b (one hop: a revision-4 broker sends a message straight from its origin to
its destination unsigned, docs/protocol.md §2.2).  The two
stacks alternate in every repetition; CPU per job is all processes' CPU
(brokers, workers, client) over the jobs, which holds up on a busy machine
better than jobs/s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from pathlib import Path
from typing import Any

from _benchlib import BenchMesh, wait_until

from .harness import (
    LoadMeter,
    Result,
    Row,
    half_range,
    load_note,
    log_notes,
    median,
    run_latency,
    run_window,
    say,
)


async def bench_signing(args: argparse.Namespace, work: Path) -> Result:
    """jobs/s, p50 latency and CPU per job over two hops, signatures off vs on."""
    names = ["a", "b", "c"]
    reps = args.reps or (2 if args.quick else 4)
    jobs = 2000 if args.quick else 5000
    lat_n = 500 if args.quick else 1000
    window = args.window
    base_env = {"OPERONE_BROKER_HEARTBEAT_INTERVAL": "1.0", "OPERONE_LOG_LEVEL": "warning"}
    stacks = {"off": {**base_env, "OPERONE_SECURITY_SIGNATURES": "false"}, "on": base_env}
    meshes = {s: BenchMesh(work / f"signing-{s}", names, env) for s, env in stacks.items()}
    clients: dict[str, Any] = {}
    figs: dict[tuple[str, str], list[dict[str, float]]] = {}
    res = Result("signing")
    try:
        for s, mesh in meshes.items():
            await mesh.start([("a", "b"), ("b", "c")])
            await mesh.start_workers({"b": [], "c": []})
            await mesh.wait_converged()
            c = clients[s] = await mesh["a"].client().connect()
            await wait_until(lambda c=c: _ok(c.submit("echo", on="c", timeout=5)), 30,
                             f"echo on c ({s})")
        say("two lines of three brokers up (signatures off / on); warming up")
        pids = {s: {"client": os.getpid(), **{
            k: v for node in meshes[s].nodes.values() for k, v in node.pids().items()}}
            for s in stacks}

        def submitter(s: str, on: str = "c") -> Any:
            def submit() -> Any:
                return clients[s].submit("echo", on=on)
            return submit

        for s in stacks:
            await run_window(submitter(s), jobs // 4, window)
        for i in range(reps):
            order = list(stacks) if i % 2 == 0 else list(stacks)[::-1]
            for s in order:
                meter = LoadMeter(pids[s])
                secs, errors = await run_window(submitter(s), jobs, window)
                r = {"jobs_per_s": jobs / secs, "errors": errors, **meter.done(jobs)}
                figs.setdefault((s, "throughput"), []).append(r)
                meter = LoadMeter(pids[s])
                lat = await run_latency(submitter(s), lat_n)
                figs.setdefault((s, "latency"), []).append(
                    {"p50_us": statistics.median(lat), **meter.done(lat_n)})
                meter = LoadMeter(pids[s])
                secs, errors = await run_window(submitter(s, "b"), jobs, window)
                figs.setdefault((s, "direct"), []).append(
                    {"jobs_per_s": jobs / secs, "errors": errors, **meter.done(jobs)})
                say(f"  rep {i + 1}/{reps} signatures {s:3s}: {r['jobs_per_s']:,.0f} jobs/s,"
                    f" {r.get('cpu_us_per_job', float('nan')):.0f} us CPU/job")
    finally:
        for c in clients.values():
            with contextlib.suppress(Exception):
                await c.close()
        for mesh in meshes.values():
            mesh.stop()

    def xs(s: str, what: str, key: str) -> list[float]:
        return [r[key] for r in figs.get((s, what), []) if key in r]

    def row(label: str, unit: str, what: str, key: str, higher: bool) -> Row:
        return Row(label, unit, median(xs("off", what, key)), median(xs("on", what, key)),
                   higher_is_better=higher,
                   spread=half_range(xs("off", what, key), xs("on", what, key)))

    res.rows.append(row(f"jobs/s, {window} in flight, 2 hops", "jobs/s", "throughput",
                        "jobs_per_s", True))
    res.rows.append(row(f"CPU/job, all processes ({window} in flight)", "us", "throughput",
                        "cpu_us_per_job", False))
    res.rows.append(row("latency p50, 1 in flight, 2 hops", "us", "latency", "p50_us", False))
    res.rows.append(row("CPU/job, all processes (1 in flight)", "us", "latency",
                        "cpu_us_per_job", False))
    res.rows.append(row(f"CPU/job, all processes ({window} in flight, 1 hop)", "us", "direct",
                        "cpu_us_per_job", False))

    def ratios_of(what: str) -> list[float]:
        """Per repetition, the on/off ratio of CPU per job (the figure that holds
        under load)."""
        return [on["cpu_us_per_job"] / off["cpu_us_per_job"]
                for off, on in zip(figs.get(("off", what), []), figs.get(("on", what), []),
                                   strict=False)
                if "cpu_us_per_job" in on and off.get("cpu_us_per_job")]

    ratios = ratios_of("throughput")
    for what, label in (("throughput", f"{window} in flight, 2 hops"),
                        ("latency", "1 in flight, 2 hops"),
                        ("direct", f"{window} in flight, 1 hop")):
        rs = ratios_of(what)
        if rs:
            res.notes.append(f"CPU/job with signatures on / off ({label}), per repetition: "
                             + ", ".join(f"{x:.2f}x" for x in rs))
    res.notes.append(
        "baseline column: signatures off (security.signatures = false on all three);"
        " operone column: on (the default).  a - b - c, a client of a runs echo on c;"
        " each job is signed twice (JOB at a, RESULT at c) and verified twice; echo on b"
        " (1 hop) is signed only by a broker older than revision 5")
    loads = [r["other_load_cores"] for rs in figs.values() for r in rs
             if "other_load_cores" in r]
    load_note(res, loads)
    log_notes(res, meshes["on"], None)
    res.data |= {"params": {"reps": reps, "jobs": jobs, "latency_n": lat_n, "window": window},
                 "repetitions": {f"{s}/{w}": rs for (s, w), rs in figs.items()},
                 "cpu_ratio_on_off": ratios,
                 "cpu_ratio_on_off_direct": ratios_of("direct"), "measured_at": time.time()}
    return res


async def _ok(fut: Any) -> bool:
    try:
        await fut
    except Exception:
        return False
    return True
