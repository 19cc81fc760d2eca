"""The foundation set: client -> broker -> worker against raw pyzmq.

Throughput (a window of no-op jobs in flight), latency (one in flight) and
bulk (64 KiB payloads), with CPU per job of each process; repetitions of the
two stacks alternate; the judged p50 and 64 KiB figures are measured with
both in the same rounds (taking turns).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .harness import (
    NOISY_LOAD,
    SCRIPT,
    Result,
    Row,
    cpu_seconds,
    machine_busy_seconds,
    percentile,
    run_latency,
    run_latency_interleaved,
    run_window,
    run_window_interleaved,
    say,
)
from .stacks import BULK_SIZE, OperoneStack, RawStack, Stack


@dataclass
class Params:
    reps: int
    warmup: int
    jobs: int
    window: int
    latency_n: int
    bulk_jobs: int
    bulk_window: int


class ClientProfiler:
    """cProfile of this process, on only while the operone stack is measured."""

    def __init__(self, out: Path | None) -> None:
        self.out = out
        self.prof = cProfile.Profile() if out is not None else None

    @contextlib.contextmanager
    def on(self, stack: Stack) -> Iterator[None]:
        if self.prof is None or stack.name != "operone":
            yield
            return
        self.prof.enable()
        try:
            yield
        finally:
            self.prof.disable()

    def dump(self) -> None:
        if self.prof is not None and self.out is not None:
            self.prof.dump_stats(str(self.out / "client.prof"))


async def measure(stack: Stack, what: str, p: Params, prof: ClientProfiler) -> dict[str, Any]:
    """One repetition of one measurement on one stack."""
    pids = {"client": os.getpid(), "broker": stack.broker_pid, "worker": stack.worker_pid}
    cpu0 = {k: cpu_seconds(v) for k, v in pids.items()}
    busy0, t0 = machine_busy_seconds(), time.perf_counter()
    out: dict[str, Any] = {}
    with prof.on(stack):
        if what == "throughput":
            secs, errors = await run_window(stack.submit_noop, p.jobs, p.window)
            out = {"jobs_per_s": p.jobs / secs, "errors": errors}
            n = p.jobs
        elif what == "latency":
            lat = await run_latency(stack.submit_noop, p.latency_n)
            out = {"p50_us": statistics.median(lat), "p99_us": percentile(lat, 99),
                   "mean_us": statistics.fmean(lat)}
            n = p.latency_n
        elif what == "bulk":
            secs, errors = await run_window(stack.submit_bulk, p.bulk_jobs, p.bulk_window)
            out = {"mb_per_s": p.bulk_jobs * BULK_SIZE / secs / 1e6, "errors": errors}
            n = p.bulk_jobs
        else:  # pragma: no cover
            raise ValueError(what)
    elapsed = time.perf_counter() - t0
    busy1 = machine_busy_seconds()
    ours = 0.0
    for k, pid in pids.items():
        c0, c1 = cpu0[k], cpu_seconds(pid)
        if c0 is not None and c1 is not None:
            out[f"cpu_us_per_job_{k}"] = (c1 - c0) / n * 1e6
            ours += c1 - c0
    if busy0 is not None and busy1 is not None:
        # Cores kept busy by everything else on the machine (noise).
        out["other_load_cores"] = max(0.0, (busy1 - busy0 - ours) / elapsed)
    return out


def _median_of(reps: list[dict[str, Any]], key: str) -> float | None:
    xs = [r[key] for r in reps if key in r]
    return statistics.median(xs) if xs else None


async def bench_foundation(args: argparse.Namespace, work: Path) -> Result:
    """Client -> broker -> worker: throughput, latency and bulk, against raw pyzmq."""
    if args.quick:
        p = Params(reps=args.reps or 3, warmup=2_000, jobs=8_000, window=args.window,
                   latency_n=1_000, bulk_jobs=800, bulk_window=args.bulk_window)
    else:
        p = Params(reps=args.reps or 5, warmup=5_000, jobs=20_000, window=args.window,
                   latency_n=3_000, bulk_jobs=2_500, bulk_window=args.bulk_window)
    prof_dir: Path | None = args.profile
    prof = ClientProfiler(prof_dir)
    raw = RawStack(work / "raw", [sys.executable, str(SCRIPT)], args.raw_frames)
    op = OperoneStack(work / "operone", concurrency=args.worker_concurrency, profile=prof_dir)
    stacks: list[Stack] = [raw, op]
    res = Result("foundation")
    reps: dict[tuple[str, str], list[dict[str, Any]]] = {}
    inter: dict[str, list[float]] = {s.name: [] for s in stacks}
    bulk_inter: dict[str, list[float]] = {s.name: [] for s in stacks}
    try:
        t0 = time.monotonic()
        await raw.start()
        await op.start()
        say(f"stacks up in {time.monotonic() - t0:.1f} s; warming up")
        for s in stacks:
            await run_window(s.submit_noop, p.warmup, p.window)
            await run_window(s.submit_bulk, max(50, p.warmup // 20), p.bulk_window)
            await run_latency(s.submit_noop, max(100, p.warmup // 10))
        for what in ("throughput", "latency", "bulk"):
            for i in range(p.reps):
                # Alternate which stack goes first, so neither always follows the other.
                order = stacks if i % 2 == 0 else stacks[::-1]
                for s in order:
                    r = await measure(s, what, p, prof)
                    reps.setdefault((s.name, what), []).append(r)
                    say(f"  {what:10s} rep {i + 1}/{p.reps} {s.name:8s} "
                         + ", ".join(f"{k}={v:,.1f}" for k, v in r.items()
                                     if not k.startswith("cpu")))
        # The judged p50: both stacks in the same rounds, taking turns of 8
        # jobs (run_latency_interleaved, as the mesh set does), so a busy
        # moment of the host meets both.  The blocks above give the CPU per
        # job at 1 in flight (each process's own) and the p99.
        for i in range(p.reps):
            lats = await run_latency_interleaved([s.submit_noop for s in stacks],
                                                 p.latency_n, turn=8)
            for s, lat in zip(stacks, lats, strict=True):
                inter[s.name].append(statistics.median(lat))
            say(f"  latency    round {i + 1}/{p.reps} interleaved: " + ", ".join(
                f"{s.name} p50 {inter[s.name][-1]:,.0f} us" for s in stacks))
        # The judged 64 KiB figure likewise: the stacks take turns of ten
        # windows each (the blocks above give each process's CPU per job).
        turn = max(100, 10 * p.bulk_window)
        for i in range(p.reps):
            got = await run_window_interleaved([s.submit_bulk for s in stacks], p.bulk_jobs,
                                               p.bulk_window, turn)
            for s, (secs, _) in zip(stacks, got, strict=True):
                bulk_inter[s.name].append(p.bulk_jobs * BULK_SIZE / secs / 1e6)
            say(f"  bulk       round {i + 1}/{p.reps} interleaved: " + ", ".join(
                f"{s.name} {bulk_inter[s.name][-1]:,.0f} MB/s" for s in stacks))
    finally:
        for s in stacks:
            with contextlib.suppress(Exception):
                await s.close()
        prof.dump()

    def med(stack: str, what: str, key: str) -> float | None:
        return _median_of(reps.get((stack, what), []), key)

    def spread(what: str, key: str) -> float | None:
        worst = None
        for stack in ("baseline", "operone"):
            xs = [r[key] for r in reps.get((stack, what), []) if key in r]
            if len(xs) > 1 and statistics.median(xs):
                sp = (max(xs) - min(xs)) / 2 / statistics.median(xs)
                worst = sp if worst is None else max(worst, sp)
        return worst

    thr_b, thr_o = med("baseline", "throughput", "jobs_per_s"), med("operone", "throughput",
                                                                     "jobs_per_s")
    row = Row(f"jobs/s, no-op, {p.window} in flight", "jobs/s", thr_b, thr_o,
              ">= 0.75x baseline")
    row.ok = None if row.ratio is None else row.ratio >= 0.75
    row.spread = spread("throughput", "jobs_per_s")
    res.rows.append(row)
    def inter_med(rounds: dict[str, list[float]], stack: str) -> float | None:
        return statistics.median(rounds[stack]) if rounds.get(stack) else None

    def inter_spread(rounds: dict[str, list[float]]) -> float | None:
        worst = None
        for xs in rounds.values():
            if len(xs) > 1 and statistics.median(xs):
                sp = (max(xs) - min(xs)) / 2 / statistics.median(xs)
                worst = sp if worst is None else max(worst, sp)
        return worst

    p50 = Row("latency p50, 1 in flight (interleaved)", "us", inter_med(inter, "baseline"),
              inter_med(inter, "operone"), "<= 1.2x baseline", higher_is_better=False)
    p50.ok = None if p50.ratio is None else p50.ratio <= 1.2
    p50.spread = inter_spread(inter)
    res.rows.append(p50)
    blk_b, blk_o = med("baseline", "latency", "p50_us"), med("operone", "latency", "p50_us")
    if blk_b and blk_o:
        res.notes.append(
            f"latency p50 in blocks ({p.latency_n:,} jobs on one stack at a time, the stacks"
            f" alternating): baseline {blk_b:,.0f} us, operone {blk_o:,.0f} us"
            f" ({blk_o / blk_b:.2f}x); the judged row takes both in the same rounds")
    p99 = Row("latency p99, 1 in flight", "us", med("baseline", "latency", "p99_us"),
              med("operone", "latency", "p99_us"), higher_is_better=False)
    p99.spread = spread("latency", "p99_us")
    res.rows.append(p99)
    # Judged as issue 12 says, against the baseline of the same run (an
    # absolute MB/s moves with the machine's load; DESIGN.md's 150 MB/s is
    # the figure of an idle machine, shown in the MB/s columns, not judged).
    bulk = Row(f"64 KiB payload, {p.bulk_window} in flight (interleaved)", "MB/s",
               inter_med(bulk_inter, "baseline"), inter_med(bulk_inter, "operone"),
               ">= 0.9x baseline")
    bulk.ok = None if bulk.ratio is None else bulk.ratio >= 0.9
    bulk.spread = inter_spread(bulk_inter)
    res.rows.append(bulk)
    blk_b, blk_o = med("baseline", "bulk", "mb_per_s"), med("operone", "bulk", "mb_per_s")
    if blk_b and blk_o:
        res.notes.append(
            f"64 KiB in blocks ({p.bulk_jobs:,} jobs on one stack at a time, the stacks"
            f" alternating): baseline {blk_b:,.0f} MB/s, operone {blk_o:,.0f} MB/s"
            f" ({blk_o / blk_b:.2f}x); the judged row takes both in turns of"
            f" {max(100, 10 * p.bulk_window):,} jobs")
    for what, label in (("throughput", f"no-op, {p.window} in flight"),
                        ("latency", "no-op, 1 in flight"),
                        ("bulk", f"64 KiB, {p.bulk_window} in flight")):
        for proc in ("client", "broker", "worker"):
            key = f"cpu_us_per_job_{proc}"
            b, o = med("baseline", what, key), med("operone", what, key)
            if b is not None or o is not None:
                res.rows.append(Row(f"CPU/job {proc} ({label})", "us", b, o,
                                    higher_is_better=False))
    loads = [r["other_load_cores"] for rs in reps.values() for r in rs
             if "other_load_cores" in r]
    if loads:
        res.data["other_load_cores"] = {"median": statistics.median(loads), "max": max(loads)}
        if statistics.median(loads) > NOISY_LOAD:
            res.notes.append(
                f"the machine was busy with other work: {statistics.median(loads):.2f} cores"
                f" on average (max {max(loads):.2f}) besides the benchmark's processes;"
                " absolute figures are low and noisy, ratios less so (repetitions alternate)")
    for s in stacks:
        for proc, lines in s.logs.items():
            res.notes.append(f"the {proc} printed {len(lines)} lines; the first: {lines[0][:200]}")
            res.data.setdefault("child_output", {})[proc] = lines[-200:]
    errors = sum(r.get("errors", 0) for rs in reps.values() for r in rs)
    if errors:
        res.notes.append(f"{errors} requests failed during the measurements")
    res.data |= {
        "params": p.__dict__,
        "worker_concurrency": args.worker_concurrency or "default (workers.concurrency)",
        "raw_frames": args.raw_frames,
        "repetitions": {f"{s}/{w}": rs for (s, w), rs in reps.items()},
        "p50_us_interleaved": inter,
        "bulk_mb_per_s_interleaved": bulk_inter,
    }
    if prof_dir is not None:
        res.notes.append(f"profiles (cProfile, which slows every figure): {prof_dir}/"
                         "broker.prof, worker.prof, client.prof")
    return res
