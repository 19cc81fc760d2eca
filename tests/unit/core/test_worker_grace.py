"""Start-up grace: jobs that arrive while this node's workers (re)connect wait
for them instead of failing with ToolNotFound (issue 9, medium)."""

from __future__ import annotations

from operone_zmq.core.broker import WORKERS, BrokerCore, BrokerLimits
from operone_zmq.core.client import ClientCore, JobResult
from operone_zmq.core.worker import JobStart, WorkerCore
from operone_zmq.errors import ToolNotFound
from operone_zmq.protocol import ToolInfo
from operone_zmq.testing import FakeClock

RID = b"\x00cli"


class Node:
    def __init__(self, expected: int) -> None:
        self.clock = FakeClock()
        self.core = BrokerCore("n1", limits=BrokerLimits(expected_workers=expected,
                                                         worker_grace=10.0), now=self.clock())
        self.client = ClientCore("cli")
        self.workers: dict[bytes, WorkerCore] = {}
        self.replies: dict[str, object] = {}

    def worker(self, name: str, tools: list[str]) -> None:
        w = self.workers[name.encode()] = WorkerCore(name, [ToolInfo(t) for t in tools],
                                                     now=self.clock())
        w.start(self.clock())
        self.pump()

    def submit(self, tool: str) -> str:
        jid, frames = self.client.job(tool, {}, timeout=60.0)
        self.core.on_frontend(2, [RID, *frames], self.clock())
        self.pump()
        return jid

    def pump(self) -> None:
        moved = True
        while moved:
            moved = False
            for rid, w in self.workers.items():
                while w.out:
                    moved = True
                    self.core.on_worker([rid, *w.out.pop(0)], self.clock())
            out, self.core.out = self.core.out, []
            for sock, frames in out:
                moved = True
                if sock == WORKERS:
                    w = self.workers[frames[0]]
                    action = w.on_broker(frames[1:], self.clock())
                    if isinstance(action, JobStart):
                        w.done(action.id, "done", self.clock())
                elif frames[0] == RID:
                    r = self.client.on_message(frames[1:])
                    assert r is not None
                    self.replies[r.id] = r.value

    def advance(self, dt: float) -> None:
        self.clock.advance(dt)
        self.core.tick(self.clock())
        self.pump()


def test_a_job_before_the_workers_registered_waits_for_them() -> None:
    n = Node(expected=2)
    jid = n.submit("echo")
    assert n.replies == {}  # not ToolNotFound: it waits
    n.advance(1.5)
    n.worker("n1.w1", ["echo"])
    assert isinstance(n.replies[jid], JobResult)
    assert n.core.counters["jobs_waited_for_workers"] == 1


def test_the_wait_is_bounded_by_the_grace_and_by_the_expected_workers() -> None:
    n = Node(expected=2)
    n.worker("n1.w1", ["echo"])
    jid = n.submit("nope")  # one of two workers: maybe the other offers it
    n.advance(5.0)
    assert jid not in n.replies
    n.advance(5.1)  # the grace is over
    assert isinstance(n.replies[jid], ToolNotFound)
    m = Node(expected=1)
    m.worker("n1.w1", ["echo"])
    jid = m.submit("nope")  # every expected worker is there: no wait
    assert isinstance(m.replies[jid], ToolNotFound)


def test_without_expected_workers_nothing_waits() -> None:
    n = Node(expected=0)
    jid = n.submit("echo")
    assert isinstance(n.replies[jid], ToolNotFound)
