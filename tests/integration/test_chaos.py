"""Chaos: 1,000 jobs while brokers and workers are killed and restarted."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers import MeshOfNodes, Proc, wait_for

from operone_zmq.core.client import JobResult
from operone_zmq.errors import JobError

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOOLS = str(Path(__file__).resolve().parents[1] / "chaos_tools.py")
JOBS = 1000


def test_every_job_ends_exactly_once_under_chaos(tmp_path: Path) -> None:
    """Origin a stays up; b, c, d (with workers) are killed and restarted at
    random.  Every one of 1,000 jobs ends in exactly one terminal state at the
    client, and no job's side effect happened twice: idempotent jobs use a
    tool that records once per job, non-idempotent ones are never re-run."""
    side = tmp_path / "side-effects.txt"
    names = ["a", "b", "c", "d"]
    m = MeshOfNodes(tmp_path, names)
    for node in m.nodes.values():
        node.env["OPERONE_TEST_SIDE_EFFECTS"] = str(side)
    links = [("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"), ("c", "d")]
    dials = {n: [p for x, y in links if x == n for p in ("--peer", m[y].address)]
             for n in names}
    rng = random.Random(42)
    stop = threading.Event()
    chaos_log: list[str] = []
    try:
        m.start(links)
        for n in "bcd":
            m[n].start_worker(None, "--tools", TOOLS)
        m.wait_converged()

        def chaos() -> None:
            while not stop.wait(rng.uniform(0.5, 1.2)):
                n = rng.choice("bcd")
                node = m[n]
                live = [p for p in node.procs if p.alive()]
                kill_broker = rng.random() < 0.4
                victims: list[Proc] = live if kill_broker else live[1:2]
                for p in victims:
                    p.signal(signal.SIGKILL)
                    p.stop()  # reaps it and closes its log
                chaos_log.append(f"kill {'broker+workers' if kill_broker else 'worker'} {n}")
                time.sleep(rng.uniform(0.3, 1.0))
                if stop.is_set():
                    return
                node.procs = [p for p in node.procs if p.alive()]
                if kill_broker:
                    node.start_broker(*dials[n])
                node.start_worker(None, "--tools", TOOLS)

        with m["a"].client(default_timeout=20.0) as c:
            wait_for(lambda: len(c.placement("chaos.record")["candidates"]) == 3, 20,
                     "the origin to see three workers")
            chaos_thread = threading.Thread(target=chaos, daemon=True)
            chaos_thread.start()
            outcomes: dict[int, object] = {}
            args = [{"key": f"j{i}", "seconds": rng.uniform(0.05, 0.4), "once": True}
                    for i in range(JOBS)]
            for i, r in c.as_completed("chaos.record", args, concurrency=30, retries=5,
                                       timeout=15):
                assert i not in outcomes, f"job {i} ended twice"
                outcomes[i] = r
            # non-idempotent jobs, recorded with a plain append: a re-run would show
            futs = [c.submit("chaos.record", {"key": f"n{i}", "seconds": 0.05,
                                              "once": False},
                             retries=5, idempotent=False, timeout=15) for i in range(200)]
            non_idem = [f.exception(60) or f.result() for f in futs]
            stop.set()
            chaos_thread.join(30)
    finally:
        stop.set()
        m.stop()
    assert len(outcomes) == JOBS
    results = [r for r in outcomes.values() if isinstance(r, JobResult)]
    errors = [r for r in outcomes.values() if isinstance(r, JobError)]
    assert len(results) + len(errors) == JOBS, "an outcome that is neither result nor error"
    lines = Counter(side.read_text().split())
    # idempotent jobs: the tool records once per job, so never twice
    assert all(lines[f"j{i}"] <= 1 for i in range(JOBS))
    # every successful job left its mark
    assert all(lines[r.value] >= 1 for r in results)
    # non-idempotent jobs: never executed twice, whatever was killed
    assert all(lines[f"n{i}"] <= 1 for i in range(200))
    assert len(non_idem) == 200
    print(f"chaos: {len(results)} results, {len(errors)} errors"
          f" ({Counter(type(e).__name__ for e in errors)}); events: {len(chaos_log)}")
    assert chaos_log, "the chaos thread never struck"
    assert len(results) > JOBS // 2
