"""QoS benchmark: is critical traffic isolated from bulk, and is a rate held?

    python scripts/bench_qos.py [--quick]

Two brokers (a dials b, CurveZMQ) with a worker on b, on 127.0.0.1.  In one run:

1. p50/p99 round trip of `echo` jobs from a client of a to b on the
   *critical* class, idle (the baseline) and while a file transfer saturates
   the *low* class of the same link (target: p99 within 2x of idle);
2. the achieved rate of that transfer against its 5 MB/s file-transfer
   policy (target: within 5%).  The bucket starts full, so the whole
   transfer's rate includes one burst (``qos.bucket.default_burst``: a
   quarter second at the rate) on top of the policy; the sustained rate,
   that burst left out, is what the target is judged on.  Both are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers import MeshOfNodes, wait_for

from operone_zmq.qos.bucket import default_burst

MB = 1_000_000


def rtts(c: object, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        c.run("echo", {}, on="b", priority="critical")  # type: ignore[attr-defined]
        out.append((time.perf_counter() - t0) * 1e6)
    return out


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p * len(s)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    opts = ap.parse_args()
    n = 300 if opts.quick else 1000
    size = (15 if opts.quick else 40) * MB
    tmp = Path(tempfile.mkdtemp(prefix="operone-bench-qos-"))
    m = MeshOfNodes(tmp, ["a", "b"])
    root = tmp / "files"
    root.mkdir()
    for node in m.nodes.values():
        node.env["OPERONE_LOG_LEVEL"] = "warning"
        node.env["OPERONE_BROKER_HEARTBEAT_INTERVAL"] = "1.0"
    m["b"].env["OPERONE_TOOLS_FS_ROOT"] = str(root)
    try:
        m.start([("a", "b")])
        m["b"].start_worker()
        m.wait_converged()
        with m["a"].client() as c:
            wait_for(lambda: c.placement("fs.stat")["node"] == "b", 20, "b's tools")
            rtts(c, 50)  # warm-up
            idle = rtts(c, n)
            src = tmp / "bulk.bin"
            src.write_bytes(os.urandom(size))
            result: dict[str, object] = {}

            def transfer() -> None:
                with m["a"].client() as c2:
                    result["r"] = c2.copy_file(str(src), "b", "bulk.bin")

            t = threading.Thread(target=transfer)
            t.start()
            time.sleep(1.0)  # past the bucket's burst: the low class is saturated
            loaded = []
            while t.is_alive() and len(loaded) < n:
                loaded += rtts(c, 10)
            t.join(300)
        r = result["r"]
        rate = r.size / r.seconds / MB  # type: ignore[attr-defined]
    finally:
        m.stop()
    i50, i99 = statistics.median(idle), pct(idle, 0.99)
    l50, l99 = statistics.median(loaded), pct(loaded, 0.99)
    print("== qos (a -> b over CurveZMQ, 127.0.0.1)")
    print(f"{'metric':<52}{'figure':>14}{'ratio':>10}  target")
    print(f"{'critical echo RTT p50, idle (baseline)':<52}{i50:>11.0f} us")
    print(f"{'critical echo RTT p99, idle (baseline)':<52}{i99:>11.0f} us")
    print(f"{'critical echo RTT p50, low class saturated':<52}{l50:>11.0f} us{l50 / i50:>9.2f}x")
    ok = "ok" if l99 <= 2 * i99 else "MISS"
    print(f"{'critical echo RTT p99, low class saturated':<52}{l99:>11.0f} us{l99 / i99:>9.2f}x"
          f"  <= 2x idle  {ok}")
    print(f"{'file transfer at the 5 MB/s policy, whole':<52}{rate:>9.2f} MB/s{rate / 5.0:>9.3f}x")
    sustained = (r.size - default_burst(5.0 * MB)) / r.seconds / MB  # type: ignore[attr-defined]
    ok = "ok" if abs(sustained - 5.0) / 5.0 <= 0.05 else "MISS"
    print(f"{'  sustained (its first burst left out)':<52}{sustained:>9.2f} MB/s"
          f"{sustained / 5.0:>9.3f}x  within 5%  {ok}")
    print(f"({len(idle)} idle and {len(loaded)} loaded samples; {size / MB:.0f} MB transfer)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
