"""The mesh set: per-hop cost on a line of brokers n0 - n1 - n2 - n3.

p50 latency and throughput from a client of n0 to a worker 0..3 broker hops
away, against raw pyzmq relays chained in front of the raw broker; and the
same raw relay in front of n0, carrying one operone client, so what an
operone hop adds beyond a hop that decodes nothing shows.

The latency figures come from interleaved rounds (every stack and hop count
in turn): a hop's cost is the difference of two p50s, and on a shared host
blocks run one after another drift by more than that.  Two kinds of round:

* warm (the targets): a turn of 8 jobs on each, the first not counted, so
  every counted job went the way the one before it went, as on a mesh whose
  brokers each have a PC of their own and a steady stream of jobs;
* cold: one job a turn, so each job meets caches nine other stacks have
  used since.  It costs a path in proportion to the code it runs, and it
  costs the same code more the fewer jobs pass it per round: the baseline's
  identical relays add more and more in turn (its steps are in the notes).

What end-to-end signing costs (MACs made and checked at both ends, a
signature frame over every hop) shows in the same run: a second line of four
brokers with ``security.signatures`` off takes part in the interleaved rounds
(latency only), so the table has the added p50 per hop of the same line
without the proofs, and what the proofs add once per routed job.  The
raw relays prove nothing; the mission requires that a relay can neither
forge nor alter what it forwards.  With the variable set for the whole run
(``OPERONE_SECURITY_SIGNATURES=false python scripts/bench.py mesh``) the
main line is unsigned too, and the table's notes say so.

On a small VM the scheduler's placement of the processes on CPUs moves a
hop's cost too: ``taskset -c 0 python scripts/bench.py mesh`` holds it fixed
(every process on one CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _benchlib import START_TIMEOUT, BenchMesh, Child, free_base_port, wait_until

from operone_zmq.aio.client import AsyncClient
from operone_zmq.config import load_config
from operone_zmq.core.context import CLASS_NAMES

from .harness import (
    SCRIPT,
    LoadMeter,
    Result,
    Row,
    Submit,
    half_range,
    load_note,
    log_notes,
    median,
    percentile,
    run_latency,
    run_latency_interleaved,
    run_window,
    say,
)
from .stacks import RawChain

#: The normal class's port offset: the class echo goes on.
NORMAL = CLASS_NAMES.index("normal")
#: The phases the latency figures come from (the "latency" blocks give the
#: CPU per job at one in flight): interleaved rounds of a turn of WARM_TURN
#: jobs (the first not counted) on every stack, and of one job (cold).
LAT = "interleaved warm"
COLD = "interleaved cold"
WARM_TURN = 8
#: The same line with end-to-end signing off (in the interleaved rounds only).
UNSIGNED = "signing off"


async def bench_mesh(args: argparse.Namespace, work: Path) -> Result:
    """n0 - n1 - n2 - n3 in a line, a worker on each; from a client of n0, echo
    on n0 (0 hops) .. n3 (3 hops): p50 latency and throughput per hop count,
    against raw pyzmq relays chained in front of the raw broker."""
    names = ["n0", "n1", "n2", "n3"]
    hops = range(len(names))
    reps = args.reps or (2 if args.quick else 3)
    lat_n = 1000 if args.quick else 2000
    jobs = 3000 if args.quick else 6000
    window = args.window
    env = {"OPERONE_BROKER_HEARTBEAT_INTERVAL": "1.0", "OPERONE_LOG_LEVEL": "warning"}
    res = Result("mesh")
    mesh = BenchMesh(work / "mesh", names, env)
    # What the brokers are configured with (their home and environment):
    # security.signatures off is for measuring what signing costs.
    signed = load_config(mesh["n0"].home, environ=mesh["n0"].env).security.signatures
    bare = (BenchMesh(work / "mesh-unsigned", names,
                      {**env, "OPERONE_SECURITY_SIGNATURES": "false"}) if signed else None)
    lines = [mesh] if bare is None else [mesh, bare]
    links = list(itertools.pairwise(names))
    raw = RawChain(work / "raw", [sys.executable, str(SCRIPT)], len(names) - 1, args.raw_frames)
    figs: dict[tuple[str, int, str], list[dict[str, float]]] = {}
    client: Any = None
    relayed: Any = None
    bare_client: Any = None
    relay: Child | None = None
    try:
        t0 = time.monotonic()
        await raw.start()
        await asyncio.gather(*(line.start(links) for line in lines))
        await asyncio.gather(*(line.start_workers({n: [] for n in names}) for line in lines))
        await asyncio.gather(*(line.wait_converged() for line in lines))
        client = await mesh["n0"].client().connect()
        if bare is not None:
            bare_client = await bare["n0"].client().connect()
        for c in (client, bare_client):
            for n in names:  # routes and tools known everywhere
                if c is not None:
                    await wait_until(lambda c=c, n=n: _ok(c.submit("echo", on=n, timeout=5)),
                                     30, f"echo on {n} to answer")
        # A raw relay inside operone's own traffic: one client of n0 reaches
        # its normal-class port through it (bench.py _raw-client-relay).
        n0 = mesh["n0"]
        base = free_base_port()
        ready = work / "raw-client-relay.ready"
        relay = Child("raw client relay", [
            sys.executable, str(SCRIPT), "_raw-client-relay",
            "--upstream-port", str(n0.base_port + NORMAL), "--port", str(base + NORMAL),
            f"--public={n0.keys.public.decode()}", f"--secret={n0.keys.secret.decode()}",
            "--ready-file", str(ready)], work / "raw-client-relay.log")
        await asyncio.to_thread(relay.wait_ready, ready, START_TIMEOUT)
        relayed = await AsyncClient("127.0.0.1", base, keys=n0.keys).connect()
        await wait_until(lambda: _ok(relayed.submit("echo", on="n0", timeout=5)), 30,
                         "echo through the raw relay to answer")
        say(f"raw chain and {len(lines)} lines of 4 brokers up in"
            f" {time.monotonic() - t0:.1f} s; warming up")
        pids: dict[str, dict[str, int]] = {"baseline": {"client": os.getpid(), **raw.pids()},
                                           "operone": {"client": os.getpid()}}
        for node in mesh.nodes.values():
            pids["operone"] |= node.pids()

        def op_submitter(c: Any, n: str) -> Submit:
            def submit() -> asyncio.Future[Any]:
                fut: asyncio.Future[Any] = c.submit("echo", on=n)
                return fut
            return submit

        submitters: dict[str, list[Submit]] = {
            "baseline": [raw.submitter(k) for k in hops],
            "operone": [op_submitter(client, n) for n in names]}
        # The signing-off line: in the interleaved rounds only (its CPU and
        # throughput are not the product's).
        bare_subs = ([] if bare_client is None
                     else [op_submitter(bare_client, n) for n in names])
        def via_relay() -> asyncio.Future[Any]:
            fut: asyncio.Future[Any] = relayed.submit("echo", on="n0")
            return fut

        for subs in [*submitters.values(), bare_subs]:
            for sub in subs:
                await run_window(sub, jobs // 4, window)
                await run_latency(sub, 200)
        await run_latency(via_relay, 200)
        stacks = list(submitters)
        # p50s from rounds on every stack and hop count in turn
        # (run_latency_interleaved): a hop's cost is a difference of two of
        # them, which blocks run one after another on a shared host blur.
        every = {**submitters, UNSIGNED: bare_subs}
        keys = ([(s, k) for k in hops for s in every if every[s]]
                + [("via raw relay", 0)])
        subs = [via_relay if s == "via raw relay" else every[s][k] for s, k in keys]
        for i in range(reps):
            for phase, turn in ((LAT, WARM_TURN), (COLD, 1)):
                lats = await run_latency_interleaved(subs, lat_n, turn=turn)
                for (s, k), lat in zip(keys, lats, strict=True):
                    figs.setdefault((s, k, phase), []).append(
                        {"p50_us": statistics.median(lat), "p99_us": percentile(lat, 99)})
                say(f"  p50 {phase} rep {i + 1}/{reps}: " + ", ".join(
                    f"{s} {k}: {statistics.median(lat):.0f}"
                    for (s, k), lat in zip(keys, lats, strict=True)))
            for what in ("latency", "throughput"):
                for k in (hops if i % 2 == 0 else hops[::-1]):
                    for s in (stacks if (i + k) % 2 == 0 else stacks[::-1]):
                        sub = submitters[s][k]
                        meter = LoadMeter(pids[s])
                        if what == "latency":  # for its CPU per job (p50 above)
                            lat = await run_latency(sub, lat_n // 2)
                            r = {"p50_us": statistics.median(lat),
                                 "p99_us": percentile(lat, 99), **meter.done(lat_n // 2)}
                            msg = f"p50 {r['p50_us']:.0f} us, p99 {r['p99_us']:.0f} us"
                        else:
                            secs, errors = await run_window(sub, jobs, window)
                            r = {"jobs_per_s": jobs / secs, "errors": errors,
                                 **meter.done(jobs)}
                            msg = f"{r['jobs_per_s']:,.0f} jobs/s" + (
                                f", {errors} errors" if errors else "")
                        figs.setdefault((s, k, what), []).append(r)
                        say(f"  {what:10s} rep {i + 1}/{reps} {k} hops {s:8s}: {msg}")
    finally:
        for c in (client, relayed, bare_client):
            if c is not None:
                with contextlib.suppress(Exception):
                    await c.close()
        if relay is not None:
            relay.stop()
        with contextlib.suppress(Exception):
            await raw.close()
        for line in lines:
            line.stop()

    def xs(s: str, k: int, what: str, key: str) -> list[float]:
        return [r[key] for r in figs.get((s, k, what), []) if key in r]

    def med(s: str, k: int, what: str, key: str) -> float | None:
        return median(xs(s, k, what, key))

    def spread(k: int, what: str, key: str) -> float | None:
        return half_range(xs("baseline", k, what, key), xs("operone", k, what, key))

    def hop_label(k: int) -> str:
        return f"{k} hop{'' if k == 1 else 's'}"

    for k in hops:
        res.rows.append(Row(f"latency p50, 1 in flight, {hop_label(k)} (on={names[k]})", "us",
                            med("baseline", k, LAT, "p50_us"),
                            med("operone", k, LAT, "p50_us"), higher_is_better=False,
                            spread=spread(k, LAT, "p50_us")))
    def per_extra_hop(what: str, key: str) -> dict[str, float | None]:
        """Each stack's ``key`` at the last hop count less at 0, per hop."""
        out: dict[str, float | None] = {}
        for s in [*stacks, UNSIGNED]:
            first, last = med(s, 0, what, key), med(s, hops[-1], what, key)
            out[s] = None if first is None or last is None else (last - first) / hops[-1]
        return out

    per_hop = per_extra_hop(LAT, "p50_us")
    # The per-hop targets are the raw relay's own (issue 12): a hop may cost
    # what a process that forwards without decoding costs, no more.
    row = Row(f"added p50 per extra hop (warm; mean over {hops[-1]})", "us",
              per_hop["baseline"], per_hop["operone"], "<= 1.0x baseline",
              higher_is_better=False, spread=_spread_of_hop(figs, hops[-1], LAT))
    row.ok = (None if row.operone is None or row.baseline is None
              else row.operone <= row.baseline)
    res.rows.append(row)
    if bare is not None:
        # The same line without the end-to-end proofs: what its hops cost
        # themselves, beside the raw relays (which prove nothing).
        res.rows.append(Row(f"added p50 per extra hop, end-to-end signing off (warm; mean"
                            f" over {hops[-1]})", "us", per_hop["baseline"], per_hop[UNSIGNED],
                            higher_is_better=False,
                            spread=_spread_of_hop(figs, hops[-1], LAT, UNSIGNED)))
        on, off = med("operone", hops[-1], LAT, "p50_us"), med(UNSIGNED, hops[-1], LAT, "p50_us")
        res.rows.append(Row(f"end-to-end signing: p50 it adds at {hop_label(hops[-1])}"
                            " (once per routed job; the baseline proves nothing)", "us",
                            None, None if on is None or off is None else on - off,
                            higher_is_better=False))
    # The same from rounds of one job a turn: each job meets the caches the
    # other stacks used, and that costs a path in proportion to its code.
    cold = per_extra_hop(COLD, "p50_us")
    res.rows.append(Row(f"added p50 per extra hop, cold (one job a turn; mean over {hops[-1]})",
                        "us", cold["baseline"], cold["operone"], higher_is_better=False,
                        spread=_spread_of_hop(figs, hops[-1], COLD)))
    cpu_hop = per_extra_hop("throughput", "cpu_us_per_job")
    row = Row(f"added CPU/job per extra hop, {window} in flight (mean over {hops[-1]})", "us",
              cpu_hop["baseline"], cpu_hop["operone"], "<= 1.0x baseline",
              higher_is_better=False)
    row.ok = (None if row.operone is None or row.baseline is None
              else row.operone <= row.baseline)
    res.rows.append(row)

    def step_list(s: str, phase: str = LAT) -> list[float]:
        out = []
        for k in hops[1:]:
            a, b = med(s, k - 1, phase, "p50_us"), med(s, k, phase, "p50_us")
            if a is not None and b is not None:
                out.append(b - a)
        return out

    steps, base_steps = step_list("operone"), step_list("baseline")
    # The last hop adds a broker that only relays (the first takes the job
    # remote at all, the second starts the signed path at both ends): its
    # step against the baseline's last relay is a relay's cost alone.
    if len(hops) > 2 and len(steps) == len(base_steps) == len(hops) - 1:
        res.rows.append(Row(f"added p50 of the last hop ({hop_label(hops[-2])} ->"
                            f" {hops[-1]}: one more relay only)", "us", base_steps[-1],
                            steps[-1], higher_is_better=False))
    # The same raw relay in front of n0, in operone's own traffic: what a hop
    # costs that decodes nothing, against the relays of the baseline chain;
    # an operone hop's own part is what it adds beyond it.
    op0, via = med("operone", 0, LAT, "p50_us"), med("via raw relay", 0, LAT, "p50_us")
    raw_in_op = None if op0 is None or via is None else via - op0
    res.rows.append(Row("added p50 of one raw relay: in the chain / before n0", "us",
                        per_hop["baseline"], raw_in_op, higher_is_better=False))
    if raw_in_op is not None and per_hop["operone"] is not None:
        res.notes.append(
            f"a raw relay in front of n0 (operone's traffic, decoding nothing) adds"
            f" {raw_in_op:.0f} us of p50; an operone broker hop adds {per_hop['operone']:.0f}"
            f" us: {per_hop['operone'] - raw_in_op:+.0f} us of it is the broker's own")
    res.rows.append(Row(f"latency p99, 1 in flight, {hop_label(hops[-1])}", "us",
                        med("baseline", hops[-1], LAT, "p99_us"),
                        med("operone", hops[-1], LAT, "p99_us"),
                        higher_is_better=False))
    zero = med("operone", 0, "throughput", "jobs_per_s")
    raw_keeps: list[str] = []
    for k in hops:
        op = med("operone", k, "throughput", "jobs_per_s")
        prev = med("operone", k - 1, "throughput", "jobs_per_s") if k else None
        raw_prev = med("baseline", k - 1, "throughput", "jobs_per_s") if k else None
        base = med("baseline", k, "throughput", "jobs_per_s")
        keep = None if not prev or op is None else op / prev
        label = f"jobs/s, {window} in flight, {hop_label(k)}"
        if k == 1 and keep is not None:
            label += f" ({keep:.2f}x of 0 hops)"
        elif k and keep is not None and zero and op is not None:
            label += f" ({op / zero:.2f}x of 0 hops, {keep:.2f}x of {k - 1})"
        if raw_prev and base is not None:
            raw_keeps.append(f"{base / raw_prev:.2f}x")
        row = Row(label, "jobs/s", base, op, ">= 0.5x the hop before" if k else "",
                  spread=spread(k, "throughput", "jobs_per_s"))
        row.ok = None if keep is None else keep >= 0.5
        res.rows.append(row)
    for what, label in (("latency", "1 in flight"), ("throughput", f"{window} in flight")):
        for k in (hops if what == "throughput" else (0, hops[-1])):
            res.rows.append(Row(f"CPU/job, all processes ({label}), {hop_label(k)}", "us",
                                med("baseline", k, what, "cpu_us_per_job"),
                                med("operone", k, what, "cpu_us_per_job"),
                                higher_is_better=False))
    res.notes.append(
        "operone: a line n0 - n1 - n2 - n3 (each dials the next), one worker per node,"
        " CurveZMQ on every link, broker heartbeat 1.0 s (the default); a client of n0 runs"
        " the inline echo with on=nK.  baseline: raw pyzmq (the foundation set's drained"
        " broker and worker) with K relays chained in front, each a drained process"
        " forwarding over CurveZMQ TCP without decoding, as an operone hop does with"
        " decoding")
    for phase, label in ((LAT, "warm"), (COLD, "cold")):
        parts = [f"{s} " + ", ".join(f"{x:+.0f}" for x in st) + " us"
                 for s in ("operone", UNSIGNED, "baseline")
                 if (st := step_list(s, phase))]
        if parts:
            res.notes.append(f"p50 added by each hop in turn, {label}: " + "; ".join(parts))
    if bare is not None:
        res.notes.append(
            f"{UNSIGNED}: a second line n0 - n1 - n2 - n3 like the first but with"
            " security.signatures off (no MACs or signatures, no signature frame), in the"
            " interleaved rounds only: the second hop is where operone's routed messages"
            " start to be MAC'd end to end (a first hop goes straight to its destination,"
            " which takes it unsigned over its CurveZMQ link)")
    if raw_keeps:
        res.notes.append("throughput the baseline keeps at each hop, of the hop before: "
                         + ", ".join(raw_keeps))
    if not signed:
        res.notes.append("END-TO-END SIGNING OFF (security.signatures, e.g."
                         " OPERONE_SECURITY_SIGNATURES=false): these figures are what signing"
                         " costs, not what the product does")
    loads = [r["other_load_cores"] for rs in figs.values() for r in rs
             if "other_load_cores" in r]
    load_note(res, loads)
    errors = sum(int(r.get("errors", 0)) for rs in figs.values() for r in rs)
    if errors:
        res.notes.append(f"{errors} requests failed during the measurements")
    log_notes(res, mesh, raw.logs)
    if bare is not None:
        log_notes(res, bare, prefix=f"{UNSIGNED} line: ")
    res.data |= {"params": {"reps": reps, "latency_n": lat_n, "jobs": jobs, "window": window,
                            "raw_frames": args.raw_frames},
                 "repetitions": {f"{s}/{k}/{w}": rs for (s, k, w), rs in figs.items()},
                 "added_p50_us_per_hop": {"mean": per_hop, "steps": steps,
                                          "baseline_steps": base_steps,
                                          "cold_mean": cold,
                                          "cold_steps": step_list("operone", COLD),
                                          "cold_baseline_steps": step_list("baseline", COLD),
                                          "signing_off_steps": step_list(UNSIGNED)}}
    return res


async def _ok(fut: asyncio.Future[Any]) -> bool:
    """Whether a job succeeds (its error swallowed: for polling until it does)."""
    try:
        await fut
    except Exception:
        return False
    return True


def _spread_of_hop(figs: dict[tuple[str, int, str], list[dict[str, float]]], last: int,
                   phase: str, stack: str = "operone") -> float | None:
    """The noise of the added p50 per hop: half its range over the
    repetitions, relative to its median (the worse of the baseline and
    ``stack``)."""
    def per_rep(s: str) -> list[float]:
        first, end = figs.get((s, 0, phase), []), figs.get((s, last, phase), [])
        return [(b["p50_us"] - a["p50_us"]) / last for a, b in zip(first, end, strict=False)]
    return half_range(per_rep("baseline"), per_rep(stack))
