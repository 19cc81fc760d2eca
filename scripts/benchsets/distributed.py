"""The distributed set: map over 3 nodes vs 1, and failover times.

``AsyncClient.map`` over three worker nodes (from an origin without workers)
against one node with one worker, with a CPU-bound tool and with ``sleep``;
and the time from a SIGKILL of the node running a job (broker and worker, or
the worker only) to its result from the other node.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

from _benchlib import BENCH_TOOLS, BenchMesh, BenchNode, wait_until

from .harness import (
    PHASE_TIMEOUT,
    LoadMeter,
    Result,
    Row,
    half_range,
    load_note,
    log_notes,
    median,
    say,
)


async def _done_by_node(mesh: BenchMesh, names: list[str]) -> dict[str, int]:
    out = {}
    for n in names:
        async with mesh[n].client() as c:
            out[n] = sum(int(w["done"]) for w in await c.workers())
    return out


async def _map_scaling(args: argparse.Namespace, work: Path, res: Result,
                       tools: Path) -> None:
    """(a) AsyncClient.map over 3 worker nodes (from an origin without workers)
    versus one node with one worker: a CPU-bound and a sleeping tool."""
    slots = 4
    env = {"OPERONE_WORKERS_CONCURRENCY": str(slots), "OPERONE_LOG_LEVEL": "warning"}
    reps = args.reps or (2 if args.quick else 3)
    spin_ms, sleep_s = 10.0, 0.05
    concurrency = 2 * 3 * slots
    spin_jobs = 150 if args.quick else 300
    sleep_jobs = 120 if args.quick else 240
    solo = BenchMesh(work / "solo", ["s"], env)
    trio = BenchMesh(work / "trio", ["o", "a", "b", "c"], env)
    workers = ["a", "b", "c"]
    cases = {
        "spin": ("bench.spin", [{"ms": spin_ms}] * spin_jobs),
        "sleep": ("sleep", [{"seconds": sleep_s}] * sleep_jobs),
    }
    figs: dict[tuple[str, str], list[dict[str, float]]] = {}
    spread_seen: dict[str, list[dict[str, int]]] = {}
    stale_loads: list[dict[str, Any]] = []
    views: list[dict[str, Any]] = []
    map_errors: list[str] = []
    clients: dict[str, Any] = {}
    try:
        t0 = time.monotonic()
        await asyncio.gather(solo.start([]),
                             trio.start([("o", "a"), ("o", "b"), ("o", "c")]))
        await asyncio.gather(solo.start_workers({"s": ["--tools", str(tools)]}),
                             trio.start_workers({n: ["--tools", str(tools)] for n in workers}))
        await trio.wait_converged()
        clients["1 node"] = await solo["s"].client().connect()
        clients["3 nodes"] = await trio["o"].client().connect()
        for tool in ("bench.spin", "sleep"):
            await wait_until(lambda t=tool: _candidates(clients["3 nodes"], t, workers), 30,
                             f"o to place {tool} on a, b and c")
            await wait_until(lambda t=tool: _candidates(clients["1 node"], t, ["s"]), 30,
                             f"s to offer {tool}")
        say(f"1 node and 3+1 nodes up in {time.monotonic() - t0:.1f} s; warming up")
        pids: dict[str, dict[str, int]] = {"1 node": {"client": os.getpid()},
                                           "3 nodes": {"client": os.getpid()}}
        pids["1 node"] |= solo["s"].pids()
        for node in trio.nodes.values():
            pids["3 nodes"] |= node.pids()
        for c in clients.values():
            await c.map("bench.spin", [{"ms": 1.0}] * 50, concurrency=concurrency)
            await c.map("sleep", [{"seconds": 0.01}] * 50, concurrency=concurrency)
        for i in range(reps):
            for case, (tool, argl) in cases.items():
                order = list(clients) if i % 2 == 0 else list(clients)[::-1]
                for setup in order:
                    c = clients[setup]
                    before = await _done_by_node(trio, workers) if setup == "3 nodes" else {}
                    if before:  # what o believes of the (idle) worker nodes now
                        view = await _placement_view(c, tool, workers)
                        views.append({"case": case, "rep": i + 1, "when": "before", **view})
                        stale = {n: v for n, v in view["load"].items() if v}
                        if stale:
                            stale_loads.append({"case": case, "rep": i + 1, **stale})
                    meter = LoadMeter(pids[setup])
                    t1 = time.perf_counter()
                    try:
                        await asyncio.wait_for(c.map(tool, argl, concurrency=concurrency),
                                               PHASE_TIMEOUT)
                    except Exception as exc:  # a finding: recorded, the set goes on
                        secs = time.perf_counter() - t1
                        map_errors.append(f"{case} rep {i + 1} on {setup}, after {secs:.1f} s:"
                                          f" {type(exc).__name__}: {exc}")
                        say(f"  map {case:5s} rep {i + 1}/{reps} {setup}: FAILED: {exc!r}")
                        continue
                    secs = time.perf_counter() - t1
                    r = {"jobs_per_s": len(argl) / secs, **meter.done(len(argl))}
                    figs.setdefault((setup, case), []).append(r)
                    if before:
                        view = await _placement_view(c, tool, workers)
                        views.append({"case": case, "rep": i + 1, "when": "after", **view})
                        after = await _done_by_node(trio, workers)
                        spread_seen.setdefault(case, []).append(
                            {n: after[n] - before[n] for n in workers})
                    say(f"  map {case:5s} rep {i + 1}/{reps} {setup}: "
                         f"{r['jobs_per_s']:,.1f} jobs/s")
    finally:
        for c in clients.values():
            with contextlib.suppress(Exception):
                await c.close()
        solo.stop()
        trio.stop()

    def xs(setup: str, case: str) -> list[float]:
        return [r["jobs_per_s"] for r in figs.get((setup, case), [])]

    row = Row(f"map bench.spin {spin_ms:g} ms (CPU), {concurrency} in flight", "jobs/s",
              median(xs("1 node", "spin")), median(xs("3 nodes", "spin")),
              "(none; 2 cores: <= ~2x)", spread=half_range(xs("1 node", "spin"),
                                                            xs("3 nodes", "spin")))
    res.rows.append(row)
    row = Row(f"map sleep {sleep_s * 1000:g} ms, {slots} slots/worker, {concurrency} in flight",
              "jobs/s", median(xs("1 node", "sleep")), median(xs("3 nodes", "sleep")),
              "expect ~3x (>= 2.7x)", spread=half_range(xs("1 node", "sleep"),
                                                         xs("3 nodes", "sleep")))
    row.ok = None if row.ratio is None else row.ratio >= 2.7
    res.rows.append(row)
    ideal = slots / sleep_s
    res.rows.append(Row("  sleep: ideal (slots / job length)", "jobs/s", ideal, 3 * ideal))
    for case, seen in spread_seen.items():
        tot = {n: sum(s[n] for s in seen) for n in workers}
        res.notes.append(f"{case} jobs run per node over the 3-node repetitions: "
                         + ", ".join(f"{n} {v}" for n, v in tot.items()))
    if map_errors:
        res.notes.append(f"{len(map_errors)} map repetitions FAILED (AsyncClient.map raised;"
                         " left out of the figures): " + "; ".join(map_errors))
    if stale_loads:
        res.notes.append(
            "before some 3-node repetitions o's LSDB advertised a load for idle worker nodes"
            " (a stale LSA snapshot; placement weighs load x10): "
            + "; ".join(f"{d['case']} rep {d['rep']}: "
                        + ", ".join(f"{k} {v:g}" for k, v in d.items()
                                    if k not in ("case", "rep")) for d in stale_loads))
    res.notes.append(
        f"map: 1 node = one broker with one worker ({slots} slots); 3 nodes = an origin o"
        f" with no workers dialling a, b and c, one worker ({slots} slots) each; the bench"
        f" process is the client; {reps} repetitions; bench.spin busy-loops (GIL-bound, one"
        " core per worker at most), so on 2 cores 3 nodes cannot scale it past ~2x")
    res.data["map"] = {"repetitions": {f"{s}/{c}": rs for (s, c), rs in figs.items()},
                       "jobs_by_node": spread_seen, "stale_loads": stale_loads,
                       "placement_views": views,
                       "errors": map_errors,
                       "params": {"slots": slots, "concurrency": concurrency,
                                  "spin_ms": spin_ms, "sleep_s": sleep_s,
                                  "spin_jobs": spin_jobs, "sleep_jobs": sleep_jobs}}
    load_note(res, [r["other_load_cores"] for rs in figs.values() for r in rs
                     if "other_load_cores" in r])
    log_notes(res, solo, prefix="map: ")
    log_notes(res, trio, prefix="map: ")


async def _placement_view(c: Any, tool: str, nodes: list[str]) -> dict[str, Any]:
    """What the origin's placement sees of ``nodes``: advertised load, its own
    jobs in flight, route cost, link health, and where it would place ``tool``."""
    topo = await c.topology()
    st = await c.stats()
    pl = await c.placement(tool)
    view: dict[str, Any] = {
        "load": {x["id"]: x["load"] for x in topo["nodes"] if x["id"] in nodes},
        "in_flight": st.get("in_flight_by_node", {}),
        "placement": [pl.get("node"), pl.get("score")], "cost_ms": {}, "health": {}}
    for n in nodes:
        r = await c.route(n)
        view["cost_ms"][n] = r.get("total_latency")
        q = await c.query("qos", {"peer": n})
        view["health"][n] = q.get("health_score") if isinstance(q, dict) else None
    return view


async def _candidates(c: Any, tool: str, want: list[str]) -> bool:
    try:
        got = await c.placement(tool)
    except Exception:
        return False
    return sorted(got.get("candidates", [])) == sorted(want)


async def _stats_of(node: BenchNode) -> dict[str, Any] | None:
    try:
        async with node.client() as c:
            st: dict[str, Any] = await c.query("stats", timeout=2.0)
            return st
    except Exception:
        return None


async def _failover(args: argparse.Namespace, work: Path, res: Result, tools: Path) -> None:
    """(b) A job with retries=2 from an origin without workers, running on one of two
    worker nodes: SIGKILL that node's broker and worker (or only its worker); the
    time from the kill to the result from the other node."""
    hb = args.failover_heartbeat
    whb = 1.0  # workers.heartbeat_interval: the default
    liveness = 3  # broker liveness and workers.heartbeat_liveness: the defaults
    env = {"OPERONE_BROKER_HEARTBEAT_INTERVAL": f"{hb:g}", "OPERONE_LOG_LEVEL": "warning"}
    reps = args.reps or 3
    mesh = BenchMesh(work / "failover", ["fo", "fa", "fb"], env)
    pair = ["fa", "fb"]
    times: dict[str, list[float]] = {"broker": [], "worker": []}
    details: list[dict[str, Any]] = []
    origin: Any = None
    try:
        t0 = time.monotonic()
        await mesh.start([("fo", "fa"), ("fo", "fb")])
        await mesh.start_workers({n: ["--tools", str(tools)] for n in pair})
        await mesh.wait_converged()
        origin = await mesh["fo"].client().connect()
        say(f"failover mesh up in {time.monotonic() - t0:.1f} s")
        for i in range(reps):
            for kind in ("broker", "worker"):
                await wait_until(lambda: _candidates(origin, "bench.hold", pair), 60,
                                 "fo to place bench.hold on fa and fb")
                marker = work / f"hold-{kind}-{i}"
                fut = origin.submit("bench.hold", {"marker": str(marker), "seconds": 30.0},
                                    retries=2, timeout=60)

                async def running_on() -> str:
                    for n in pair:
                        st = await _stats_of(mesh[n])
                        if st and st.get("running"):
                            return n
                    return ""

                first = await wait_until(running_on, 20, "the job to start", step=0.02)
                victim = mesh[first]
                t1 = time.perf_counter()
                if kind == "broker":
                    assert victim.broker is not None
                    victim.broker.kill()
                for w in victim.workers:
                    w.kill()
                try:
                    jr = await asyncio.wait_for(fut, 60)
                except Exception as exc:
                    secs = time.perf_counter() - t1
                    details.append({"kill": kind, "first": first, "error": repr(exc),
                                    "seconds": secs})
                    say(f"  failover {kind} rep {i + 1}/{reps}: FAILED after {secs:.2f} s:"
                         f" {exc!r}")
                else:
                    secs = time.perf_counter() - t1
                    times[kind].append(secs)
                    details.append({"kill": kind, "first": first, "seconds": secs,
                                    "executed_on": jr.executed_on, "attempts": jr.attempts,
                                    "value": jr.value})
                    say(f"  failover {kind} rep {i + 1}/{reps}: ran on {first}, killed;"
                         f" result from {jr.executed_on} (attempt {jr.attempts},"
                         f" {jr.value}) after {secs:.2f} s")
                # Bring the node back for the next repetition.
                victim.workers.clear()
                if kind == "broker":
                    await asyncio.to_thread(victim.start_broker)
                await asyncio.to_thread(victim.start_worker, "--tools", str(tools))
    finally:
        if origin is not None:
            with contextlib.suppress(Exception):
                await origin.close()
        mesh.stop()
    bound_b = liveness * hb + 0.05
    row = Row(f"failover, SIGKILL broker+worker (broker heartbeat {hb:g} s)", "s", None,
              median(times["broker"]), f"<= {bound_b:.2f} s ({liveness} x {hb:g} s + retry)",
              higher_is_better=False, spread=half_range(times["broker"]))
    row.ok = None if row.operone is None else row.operone <= bound_b
    res.rows.append(row)
    bound_w = liveness * whb + 0.05
    row = Row(f"failover, SIGKILL worker only (worker heartbeat {whb:g} s)", "s", None,
              median(times["worker"]), f"<= {bound_w:.2f} s ({liveness} x {whb:g} s + retry)",
              higher_is_better=False, spread=half_range(times["worker"]))
    row.ok = None if row.operone is None else row.operone <= bound_w
    res.rows.append(row)
    failed = [d for d in details if "error" in d]
    if failed:
        res.notes.append(f"{len(failed)} failover repetitions got no result: "
                         + "; ".join(f"{d['kill']}: {d['error'][:160]}" for d in failed))
    wrong = [d for d in details if "error" not in d
             and (d["executed_on"] == d["first"] or d["value"] != "retry")]
    if wrong:
        res.notes.append(f"{len(wrong)} failover results did not come from a retry on the"
                         f" other node: {wrong}")
    res.notes.append(
        f"failover: origin fo (no workers) dials fa and fb (one worker each); a bench.hold"
        f" job (30 s on its first run, instant on a retry) with retries=2; time from the"
        f" SIGKILL to the result; broker.heartbeat_interval={hb:g} s (peer links),"
        f" workers.heartbeat_interval={whb:g} s x liveness {liveness} (the default);"
        f" medians of {reps}; the README's promise: an answer within the heartbeat timeout")
    res.data["failover"] = {"seconds": times, "runs": details,
                            "broker_heartbeat_s": hb, "worker_heartbeat_s": whb}
    log_notes(res, mesh, prefix="failover (SIGKILLs expected in the logs): ")


async def bench_distributed(args: argparse.Namespace, work: Path) -> Result:
    """map over 3 nodes vs 1 (CPU-bound and sleeping tools), and failover times."""
    res = Result("distributed", columns=("1 node", "3 nodes", "ratio"),
                 noise_note="noise: half the range of the repetitions, relative to the"
                            " median (the worse of the two columns)")
    tools = work / "bench_tools.py"
    tools.write_text(BENCH_TOOLS)
    await _map_scaling(args, work, res, tools)
    await _failover(args, work, res, tools)
    return res
