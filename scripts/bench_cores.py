"""CPU per job of the job logic alone: client, broker and worker cores with no
sockets, no loop and no other process.

    python scripts/bench_cores.py [--jobs 20000] [--batch 16] [--reps 7]

A no-op job goes as it does in the real stack with BATCH on: the client's
requests in BATCHes of ``--batch``, the broker's JOBs to its worker and its
RESULTs to the client grouped as its flush groups them, the worker's RESULTs
back in BATCHes; the tool is run as the worker runs an inline tool.  Each
core's part is timed on its own (``time.thread_time`` around its calls;
the minimum over ``--reps`` repetitions), so a change to one core is seen
without the noise of a busy machine that whole-stack figures carry (they
are ``scripts/bench.py``'s).  What it leaves out is the shells: the pump,
the sockets and libzmq's I/O thread.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from operone_zmq.core.access import Grant
from operone_zmq.core.broker import BrokerCore, BrokerLimits
from operone_zmq.core.client import ClientCore
from operone_zmq.core.worker import JobStart, WorkerCore
from operone_zmq.protocol import ToolInfo
from operone_zmq.protocol.batch import decode_batch, is_batch, pack_messages

CLIENT_RID = b"\x00\x01\x02\x03\x04"
WORKER_RID = b"bench.w1"
GRANT = Grant("operator", fingerprint="0123456789abcdef")


def _echo(**args: Any) -> Any:
    return args


def _inner(frames: list[bytes]) -> list[list[bytes]]:
    """The messages of what a ROUTER sent (a BATCH or one), routing id dropped."""
    return decode_batch(frames[1:]) if is_batch(frames, 1) else [frames[1:]]


def one_rep(jobs: int, batch: int) -> dict[str, float]:
    now = time.monotonic()
    broker = BrokerCore("bench", limits=BrokerLimits(), now=now, grants=lambda uid: GRANT)
    worker = WorkerCore(WORKER_RID.decode(), [ToolInfo("echo")], slots=1024, now=now,
                        batch=True)
    client = ClientCore("bench")
    client.broker_batches = True
    uid = "k" * 40
    # The worker registers (READY, then the broker's answer).
    worker.start(now)
    for frames in worker.out:
        broker.on_worker([WORKER_RID, *frames], now)
    worker.out.clear()
    for _, frames in broker.batched(broker.out):
        worker.on_broker(frames[1:], now)
    broker.out.clear()
    worker.out.clear()

    spent = {"client": 0.0, "broker": 0.0, "worker": 0.0}
    clock = time.thread_time  # CPU of this thread: steady while other processes run
    done = 0
    while done < jobs:
        n = min(batch, jobs - done)
        t0 = clock()
        q = [client.job("echo", {}, timeout=30.0)[1] for _ in range(n)]
        msgs = pack_messages(q, 2) if n > 1 else q
        t1 = clock()
        for frames in msgs:
            broker.on_frontend(2, [CLIENT_RID, *frames], now, uid)
        to_worker = broker.batched(broker.out)
        broker.out.clear()
        t2 = clock()
        for _, frames in to_worker:
            for m in _inner(frames):
                action = worker.on_broker(m, now)
                if isinstance(action, JobStart):
                    worker.done(action.id, _echo(**action.args), now)
        back = pack_messages(worker.out) if len(worker.out) > 1 else list(worker.out)
        worker.out.clear()
        t3 = clock()
        for frames in back:
            broker.on_worker([WORKER_RID, *frames], now)
        to_client = broker.batched(broker.out)
        broker.out.clear()
        t4 = clock()
        for _, frames in to_client:
            for m in _inner(frames):
                reply = client.on_message(m)
                assert reply is not None and reply.kind == "result", reply
                done += 1
        t5 = clock()
        spent["client"] += (t1 - t0) + (t5 - t4)
        spent["broker"] += (t2 - t1) + (t4 - t3)
        spent["worker"] += t3 - t2
    return {k: v / jobs * 1e6 for k, v in spent.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=16, help="requests per client BATCH")
    ap.add_argument("--reps", type=int, default=7)
    opts = ap.parse_args()
    one_rep(2_000, opts.batch)  # warm up
    reps = [one_rep(opts.jobs, opts.batch) for _ in range(opts.reps)]
    best = {k: min(r[k] for r in reps) for k in reps[0]}
    print(f"job logic, us per no-op job (min of {opts.reps} x {opts.jobs:,}, "
          f"BATCH of {opts.batch}):")
    for k, v in best.items():
        print(f"  {k:7s} {v:6.1f}")
    print(f"  {'all':7s} {sum(best.values()):6.1f}")


if __name__ == "__main__":
    main()
