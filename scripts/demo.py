"""Demo: start a local node (broker + worker processes) and run tools through it.

    python scripts/demo.py [--workers 2] [--keep]

Everything is real: the broker binds four CurveZMQ ports on 127.0.0.1, the
workers are separate processes, and the client talks to the broker over TCP.
The node lives in a temporary home that is removed afterwards (--keep keeps it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _benchlib import free_base_port  # scripts/ is on sys.path when run as a script

from operone_zmq import Client, CurveKeys
from operone_zmq.config import Home, init_home
from operone_zmq.security import load_keypair


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the node's home directory")
    opts = ap.parse_args()

    home_dir = Path(tempfile.mkdtemp(prefix="operone-demo-"))
    files = home_dir / "files"
    files.mkdir()
    port = free_base_port()
    home = Home(home_dir / "home")
    init_home(home, "demo-node", base_port=port, tools_fs_root=str(files),
              tools_shell_allow=["uname"])  # the one program the demo runs through shell
    print(f"== node 'demo-node' initialised in {home.path} (ports {port}..{port + 3})")

    ready = home_dir / "ready.json"
    node = subprocess.Popen(
        [sys.executable, "-m", "operone_zmq", "--home", str(home.path), "--log-level", "warning",
         "node", "start", "--workers", str(opts.workers), "--ready-file", str(ready)])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            if node.poll() is not None or time.monotonic() > deadline:
                print("the node did not start", file=sys.stderr)
                return 1
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        print(f"== broker pid {info['pid']}, worker pids {info['worker_pids']}")

        kp = load_keypair(home.node_secret)
        assert kp.secret is not None
        with Client("127.0.0.1", port, keys=CurveKeys(kp.public, kp.secret, kp.public)) as c:
            deadline = time.monotonic() + 30
            while c.stats()["workers"] < opts.workers:
                if time.monotonic() > deadline:
                    print("workers did not register", file=sys.stderr)
                    return 1
                time.sleep(0.05)

            res = c.submit("shell", {"argv": ["uname", "-a"]}).result(30)
            print(f"== shell `uname -a` ran on {res.executed_on} in {res.duration * 1000:.1f} ms")
            print("   " + res.value["stdout"].strip())

            info = c.run("sysinfo")
            print(f"== sysinfo from worker pid {info['pid']} (this client is pid {os.getpid()}):"
                  f" {info['hostname']}, {info['system']} {info['release']},"
                  f" python {info['python']}, {info['cpus']} cpus")

            c.run("fs.write", {"path": "hello.txt", "data": "written by a remote worker\n"})
            print(f"== fs.write -> {files / 'hello.txt'}: {(files / 'hello.txt').read_text()!r}")

            t0 = time.perf_counter()
            values = c.map("echo", [{"i": i} for i in range(5000)], concurrency=100)
            dt = time.perf_counter() - t0
            assert values == [{"i": i} for i in range(5000)]
            print(f"== 5,000 echo jobs through the broker: {5000 / dt:,.0f} jobs/s")

            s = c.stats()
            print(f"== broker stats: {s['jobs_completed']} completed, {s['jobs_failed']} failed,"
                  f" {s['workers']} workers")
        return 0
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(10)
        except subprocess.TimeoutExpired:
            node.kill()
        if opts.keep:
            print(f"== kept {home_dir}")
        else:
            shutil.rmtree(home_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
