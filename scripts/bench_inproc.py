"""Like for like with the original package: client -> broker serving the tool
in its own process (Broker.register_tool), 2 processes, CurveZMQ on.

    python scripts/bench_inproc.py [--jobs 30000]

DESIGN.md section 11 measured the original (ws + JSON, the tool handled in
the peer process) on this machine at 30,000-42,500 round trips/s signed and
51,000-71,000 unsigned with 100 in flight, and 75-132 us p50 one at a time;
the target is at least 45,000 jobs/s.  Those figures cannot be re-measured
here (no Node.js build of the original is available to this project), so
they are quoted, not run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _benchlib import child_env
from benchsets.harness import cpu_seconds

from operone_zmq import AsyncClient, CurveKeys
from operone_zmq.security import TrustStore, generate_keypair

BROKER = """
import asyncio, sys
from pathlib import Path
from operone_zmq import Broker, CurveKeys, compiled_modules, configure_logging, tool
from operone_zmq.security import TrustStore, load_keypair
configure_logging("console", "warning")
d = Path(sys.argv[1]); port = int(sys.argv[2])
kp = load_keypair(d / "keys" / "node.key_secret")
@tool(inline=True)
def echo(**args):
    return args
async def main():
    b = Broker("inproc", keys=CurveKeys(kp.public, kp.secret), trust=TrustStore(d / "trust"),
               base_port=port, worker_endpoint=f"ipc://{d}/w.ipc")
    b.register_tool(echo)
    async with b:
        (d / "ready").write_text(str(len(compiled_modules())))
        await asyncio.sleep(3600)
if len(sys.argv) > 3 and sys.argv[3] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


async def measure(port: int, keys: CurveKeys, jobs: int,
                  broker_pid: int) -> tuple[float, float, float, float, float]:
    """jobs/s, p50 and p99 (us), and CPU us per job of the broker and the client
    during the throughput phase (every thread, from /proc)."""
    async with AsyncClient("127.0.0.1", port, keys=keys) as c:
        for _ in range(500):
            await c.run("echo", {})
        lat = []
        for _ in range(2000):
            t0 = time.perf_counter()
            await c.run("echo", {})
            lat.append((time.perf_counter() - t0) * 1e6)
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        left = [jobs]
        sent = [0]

        def fire() -> None:
            sent[0] += 1
            c.submit("echo", {}).add_done_callback(finished)

        def finished(_f: asyncio.Future[object]) -> None:
            left[0] -= 1
            if left[0] == 0:
                done.set_result(None)
            elif sent[0] < jobs:
                fire()

        cpu0 = (cpu_seconds(broker_pid) or 0.0, cpu_seconds(os.getpid()) or 0.0)
        t0 = time.perf_counter()
        for _ in range(min(100, jobs)):
            fire()
        await done
        rate = jobs / (time.perf_counter() - t0)
        cpu1 = (cpu_seconds(broker_pid) or 0.0, cpu_seconds(os.getpid()) or 0.0)
    lat.sort()
    return (rate, statistics.median(lat), lat[int(0.99 * len(lat))],
            (cpu1[0] - cpu0[0]) / jobs * 1e6, (cpu1[1] - cpu0[1]) / jobs * 1e6)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=30000)
    ap.add_argument("--port", type=int, default=27840)
    ap.add_argument("--reps", type=int, default=3, help="repetitions, of which the median")
    ap.add_argument("--uvloop", action="store_true",
                    help="run the broker and the client on uvloop (pip install uvloop)")
    opts = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="operone-bench-inproc-"))
    kp = generate_keypair(d / "keys", "node")
    assert kp.secret is not None
    TrustStore(d / "trust").accept("self", kp.public)
    # -P and child_env: the broker imports the operone_zmq this process does
    # (``-c`` alone would put the working directory first on sys.path).
    p = subprocess.Popen([sys.executable, "-P", "-c", BROKER, str(d), str(opts.port),
                          "uvloop" if opts.uvloop else "asyncio"], env=child_env())
    if opts.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        deadline = time.monotonic() + 20
        while not (d / "ready").exists():
            if p.poll() is not None or time.monotonic() > deadline:
                print("the broker did not start", file=sys.stderr)
                return 1
            time.sleep(0.05)
        rates, p50s, p99s, bcpu, ccpu = [], [], [], [], []
        for _ in range(opts.reps):
            r, p50, p99, b_us, c_us = asyncio.run(measure(
                opts.port, CurveKeys(kp.public, kp.secret, kp.public), opts.jobs, p.pid))
            rates.append(r)
            p50s.append(p50)
            p99s.append(p99)
            bcpu.append(b_us)
            ccpu.append(c_us)
    finally:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
    rate = statistics.median(rates)
    n = int((d / "ready").read_text() or 0)
    print("== like for like: client -> broker serving echo in-process (2 processes, Curve)")
    print(f"the broker runs operone_zmq {f'compiled ({n} modules)' if n else 'pure Python'}")
    print(f"jobs/s, 100 in flight     {rate:>10,.0f}   target >= 45,000 (original signed:"
          f" 30,000-42,500)  {'ok' if rate >= 45_000 else 'MISS'}")
    print(f"p50, 1 in flight          {statistics.median(p50s):>10.0f} us (original: 92-132 us"
          " signed)")
    print(f"p99, 1 in flight          {statistics.median(p99s):>10.0f} us")
    print(f"broker CPU per job        {statistics.median(bcpu):>10.1f} us (target <= ~20;"
          " user+sys, every thread)")
    print(f"client CPU per job        {statistics.median(ccpu):>10.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
