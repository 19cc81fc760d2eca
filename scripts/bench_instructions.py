"""Instructions per job of the broker and of the client, counted by valgrind's
callgrind: the like-for-like shape of scripts/bench_inproc.py (client ->
broker serving echo in its own process, CurveZMQ on, 100 in flight).

    python scripts/bench_instructions.py [--jobs 8000] [--tree DIR ...]
    python scripts/bench_instructions.py --mesh [--jobs 500] [--tree DIR ...]

CPU time per job moves by a third from one run to the next on a shared
2-core machine; an instruction count moves by well under 1 %.  Use it to
judge a change to the hot path (run it on the tree before and after: each
``--tree`` is put first on PYTHONPATH, e.g. a checkout or a compiled copy),
and scripts/bench.py for the figures against the raw baselines.

``--mesh``: the brokers of a line n0 - n1 - n2 (one worker, on n2; a client
of n0 runs echo on n2, one job in flight, CurveZMQ and pairwise MACs on):
the origin, the relay and the destination of a routed job, each under
callgrind in a run of its own (all three at once, each would wait for the
others' slowness, and its timers would count several times as much per
job), counted per job for its application thread (the loop: what stands
between a message's arrival and its sending on) and for all its threads
(libzmq's I/O thread included: CurveZMQ, TCP).

Only the measured jobs are counted: each process runs under callgrind with
instrumentation off, switched on (``callgrind_control -i on``) once the
warm-up jobs are done and off after the last job.  Under valgrind a process
runs 20-50x slower, so its peer sees bigger batches than it would: compare
counts with counts, not with bench_inproc's CPU figures.  Needs valgrind
(Debian: ``apt install valgrind``).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_inproc
from _benchlib import BenchMesh

CLIENT = """
import asyncio, sys
from pathlib import Path
from operone_zmq import AsyncClient, CurveKeys
from operone_zmq.security import load_keypair
d = Path(sys.argv[1]); port = int(sys.argv[2]); n = int(sys.argv[3])
kp = load_keypair(d / "keys" / "node.key_secret")
async def wait_for(name):
    while not (d / name).exists():
        await asyncio.sleep(0.05)
async def main():
    async with AsyncClient("127.0.0.1", port, keys=CurveKeys(kp.public, kp.secret, kp.public),
                           default_timeout=300) as c:
        for _ in range(300):
            await c.run("echo", {})
        (d / "warm").write_text("x")
        await wait_for("go")
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        left, sent = [n], [0]
        def fire():
            sent[0] += 1
            c.submit("echo", {}).add_done_callback(finished)
        def finished(_f):
            left[0] -= 1
            if left[0] == 0:
                done.set_result(None)
            elif sent[0] < n:
                fire()
        for _ in range(min(100, n)):
            fire()
        await done
        (d / "done").write_text("x")
        await wait_for("stop")
asyncio.run(main())
"""


def _wait(path: Path, procs: list[subprocess.Popen[bytes]], limit: float) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise RuntimeError(f"gave up waiting for {path.name}")
        time.sleep(0.05)


def _ctl(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False, timeout=60)


def _total(out: Path, threads: str = "") -> int:
    """The instructions of every dump of one callgrind run (``threads``: of
    the dumps whose name ends so, e.g. "-01" for the first thread with
    ``--separate-threads=yes``)."""
    total = 0
    for f in glob.glob(f"{out}*{threads}"):
        for line in Path(f).read_text().splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
    return total


def measure(tree: str | None, who: str, jobs: int, port: int) -> float:
    """Instructions per job of ``who`` ("broker" or "client") run from ``tree``."""
    from operone_zmq.security import TrustStore, generate_keypair

    d = Path(tempfile.mkdtemp(prefix="operone-bench-instr-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        kp = generate_keypair(d / "keys", "node")
        TrustStore(d / "trust").accept("self", kp.public)
        env = dict(os.environ, PYTHONHASHSEED="0")
        if tree:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [tree, env.get("PYTHONPATH")]))
        out = d / "callgrind.out"
        grind = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                 f"--callgrind-out-file={out}"]
        broker = [sys.executable, "-c", bench_inproc.BROKER, str(d), str(port), "asyncio"]
        client = [sys.executable, "-c", CLIENT, str(d), str(port), str(jobs)]
        null = subprocess.DEVNULL
        # (cwd: ``python -c`` puts the working directory first on sys.path, so
        # run from a checkout it would import that tree instead of ``tree``.)
        procs.append(subprocess.Popen(grind + broker if who == "broker" else broker, env=env,
                                      stdout=null, stderr=null, cwd=d))
        _wait(d / "ready", procs, 300)
        procs.append(subprocess.Popen(grind + client if who == "client" else client, env=env,
                                      stdout=null, stderr=null, cwd=d))
        counted = procs[0] if who == "broker" else procs[1]
        _wait(d / "warm", procs, 600)
        _ctl(counted.pid, "-i", "on")
        (d / "go").write_text("x")
        _wait(d / "done", procs, 1800)
        _ctl(counted.pid, "-i", "off")
        _ctl(counted.pid, "-d")
        (d / "stop").write_text("x")
        time.sleep(0.5)
        return _total(out) / jobs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(d, ignore_errors=True)


#: The brokers of --mesh, by their part in a routed job.
ROLES = {"n0": "origin", "n1": "relay", "n2": "destination"}


async def _mesh_run(work: Path, tree: str | None, jobs: int, grind: str) -> tuple[int, int]:
    env = {"OPERONE_BROKER_HEARTBEAT_INTERVAL": "1.0", "PYTHONHASHSEED": "0"}
    if tree:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [tree, os.environ.get("PYTHONPATH")]))
    names = list(ROLES)
    mesh = BenchMesh(work, names, env)
    out = work / f"callgrind-{grind}.out"
    node = mesh[grind]
    node.broker_prefix = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                          "--separate-threads=yes", f"--callgrind-out-file={out}"]
    node.start_timeout = 300.0
    try:
        await mesh.start([("n0", "n1"), ("n1", "n2")])
        await mesh.start_workers({"n2": []})
        await mesh.wait_converged(300)
        async with mesh["n0"].client() as c:
            for _ in range(100):  # warm: routes, MAC keys, caches
                await c.submit("echo", on="n2", timeout=120)
            assert node.broker is not None
            pid = node.broker.pid
            _ctl(pid, "-i", "on")
            for _ in range(jobs):
                await c.submit("echo", on="n2", timeout=120)
            _ctl(pid, "-i", "off")
            _ctl(pid, "-d")
    finally:
        mesh.stop()
    return _total(out, "-01"), _total(out)


def measure_mesh(tree: str | None, jobs: int) -> dict[str, tuple[float, float]]:
    """Per broker of the line: (application thread, all threads) instructions per job."""
    import asyncio

    out: dict[str, tuple[float, float]] = {}
    for n in ROLES:
        work = Path(tempfile.mkdtemp(prefix="operone-bench-instr-mesh-"))
        try:
            app, total = asyncio.run(_mesh_run(work, tree, jobs, n))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        out[n] = (app / jobs, total / jobs)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--jobs", type=int, default=None,
                    help="jobs counted (default 8000; with --mesh 500)")
    ap.add_argument("--mesh", action="store_true",
                    help="the origin, relay and destination brokers of a line n0 - n1 - n2"
                    " instead of like for like")
    ap.add_argument("--tree", action="append", default=[],
                    help="a source tree or compiled copy to measure (repeatable;"
                    " default: what this Python imports)")
    ap.add_argument("--port", type=int, default=27860)
    opts = ap.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed (Debian: apt install valgrind)", file=sys.stderr)
        return 1
    trees = opts.tree or [None]
    if opts.mesh:
        jobs = opts.jobs or 500
        print(f"== instructions per job, a line n0 - n1 - n2 (callgrind, {jobs:,} jobs, echo on"
              " n2 from a client of n0, 1 in flight): application thread / all threads")
        for tree in trees:
            counts = measure_mesh(tree, jobs)
            cells = "   ".join(f"{ROLES[n]} {app:>9,.0f} / {total:>9,.0f}"
                               for n, (app, total) in counts.items())
            print(f"{tree or '(installed)':40s} {cells}")
        return 0
    opts.jobs = opts.jobs or 8000
    print(f"== instructions per job, like for like (callgrind, {opts.jobs:,} jobs, 100 in flight)")
    for i, tree in enumerate(trees):
        row = [measure(tree, who, opts.jobs, opts.port + 8 * i + (4 if who == "client" else 0))
               for who in ("broker", "client")]
        print(f"{tree or '(installed)':40s} broker {row[0]:>9,.0f}   client {row[1]:>9,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
