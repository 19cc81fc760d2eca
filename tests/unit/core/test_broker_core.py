"""BrokerCore with a fake clock: frames in, frames out, no sockets."""

from __future__ import annotations

from typing import Any

import pytest

from operone_zmq.core.broker import WORKERS, BrokerCore, BrokerLimits
from operone_zmq.core.client import ClientCore, JobResult
from operone_zmq.core.worker import JobStart, WorkerCore
from operone_zmq.errors import (
    BadRequest,
    JobCancelled,
    JobError,
    JobTimeout,
    NoRoute,
    Overloaded,
    ToolFailed,
    ToolNotFound,
    WorkerLost,
)
from operone_zmq.protocol import MsgType, ToolInfo, decode
from operone_zmq.testing import FakeClock

NORMAL = 2


class Harness:
    """One broker core, any number of worker cores and one client core, wired
    together in memory."""

    def __init__(self, limits: BrokerLimits | None = None) -> None:
        self.clock = FakeClock()
        self.broker = BrokerCore("n1", limits=limits or BrokerLimits(), now=self.clock())
        self.client = ClientCore("cli")
        self.workers: dict[bytes, WorkerCore] = {}
        self.started: dict[bytes, list[JobStart]] = {}
        self.cancelled: dict[bytes, list[str]] = {}
        self.to_client: list[list[bytes]] = []

    def add_worker(self, name: str, tools: list[str], slots: int = 2,
                   caps: tuple[str, ...] = ()) -> bytes:
        rid = name.encode()
        w = WorkerCore(name, [ToolInfo(t) for t in tools], slots=slots, caps=caps,
                       now=self.clock())
        self.workers[rid] = w
        self.started[rid] = []
        self.cancelled[rid] = []
        w.start(self.clock())
        self.pump()
        return rid

    def pump(self) -> None:
        """Move frames until nothing is left to move."""
        moved = True
        while moved:
            moved = False
            for rid, w in self.workers.items():
                while w.out:
                    moved = True
                    self.broker.on_worker([rid, *w.out.pop(0)], self.clock())
            out, self.broker.out = self.broker.out, []
            self.broker.out = []
            for sock, frames in out:
                moved = True
                if sock == WORKERS:
                    w = self.workers.get(frames[0])
                    if w is None:
                        continue
                    action = w.on_broker(frames[1:], self.clock())
                    if isinstance(action, JobStart):
                        self.started[frames[0]].append(action)
                    elif isinstance(action, str):
                        self.cancelled[frames[0]].append(action)
                else:
                    assert frames[0] == b"\x00cli"
                    self.to_client.append(frames[1:])

    def submit(self, tool: str, args: dict[str, Any] | None = None, **kw: Any) -> str:
        jid, frames = self.client.job(tool, args or {}, **kw)
        self.broker.on_frontend(NORMAL, [b"\x00cli", *frames], self.clock())
        self.pump()
        return jid

    def replies(self) -> dict[str, Any]:
        out = {}
        for frames in self.to_client:
            r = self.client.on_message(frames)
            assert r is not None
            out[r.id] = r.value
        self.to_client.clear()
        return out

    def tick(self, dt: float) -> None:
        self.clock.advance(dt)
        self.broker.tick(self.clock())
        for w in self.workers.values():
            w.tick(self.clock())
        self.pump()


def test_job_round_trip_through_a_worker() -> None:
    """A job goes to the worker offering the tool and its result comes back."""
    h = Harness()
    rid = h.add_worker("w1", ["echo"])
    jid = h.submit("echo", {"x": 1})
    (start,) = h.started[rid]
    assert start.tool == "echo" and start.args == {"x": 1}
    h.workers[rid].done(jid, {"x": 1}, h.clock())
    h.pump()
    res = h.replies()[jid]
    assert isinstance(res, JobResult)
    assert res.value == {"x": 1}
    assert res.executed_on == "n1"
    assert h.broker.stats(h.clock())["jobs_completed"] == 1


def test_unknown_tool_is_refused_at_once() -> None:
    """A tool nobody offers fails fast with ToolNotFound, naming the tool."""
    h = Harness()
    h.add_worker("w1", ["echo"])
    jid = h.submit("nope")
    err = h.replies()[jid]
    assert isinstance(err, ToolNotFound)
    assert "'nope'" in err.message


def test_least_loaded_worker_gets_the_job() -> None:
    """Jobs spread over workers by free slots."""
    h = Harness()
    a = h.add_worker("a", ["echo"], slots=2)
    b = h.add_worker("b", ["echo"], slots=2)
    for _ in range(4):
        h.submit("echo")
    assert len(h.started[a]) == 2 and len(h.started[b]) == 2


def test_queue_when_busy_then_dispatch_when_a_slot_frees() -> None:
    """With every slot taken a job waits, and runs when a slot frees."""
    h = Harness()
    a = h.add_worker("a", ["sleep"], slots=1)
    j1 = h.submit("sleep")
    j2 = h.submit("sleep")
    assert [s.id for s in h.started[a]] == [j1]
    assert h.broker.stats(h.clock())["queued"] == 1
    h.workers[a].done(j1, 1, h.clock())
    h.pump()
    assert [s.id for s in h.started[a]] == [j1, j2]


def test_full_queue_refuses_with_overloaded() -> None:
    """Past max_queued_jobs the submitter hears Overloaded, and nothing grows."""
    h = Harness(BrokerLimits(max_queued_jobs=2))
    h.add_worker("a", ["sleep"], slots=1)
    ids = [h.submit("sleep") for _ in range(4)]
    replies = h.replies()
    assert isinstance(replies[ids[3]], Overloaded)
    assert ids[0] not in replies and ids[1] not in replies and ids[2] not in replies


def test_worker_silence_fails_its_running_jobs() -> None:
    """A worker that stops heartbeating is dropped and its job gets worker_lost."""
    h = Harness(BrokerLimits(heartbeat_interval=1.0, liveness=3))
    rid = h.add_worker("w1", ["sleep"])
    jid = h.submit("sleep")
    del h.workers[rid]  # it dies: no more heartbeats
    for _ in range(5):
        h.tick(1.0)
    err = h.replies()[jid]
    assert isinstance(err, WorkerLost)
    assert h.broker.stats(h.clock())["workers"] == 0


def test_live_worker_is_kept() -> None:
    """Heartbeats keep a worker registered indefinitely."""
    h = Harness()
    h.add_worker("w1", ["echo"])
    for _ in range(20):
        h.tick(0.5)
    assert h.broker.stats(h.clock())["workers"] == 1


def test_deadline_times_out_and_cancels_on_the_worker() -> None:
    """A job past its timeout gets a timeout error and the worker a CANCEL."""
    h = Harness()
    rid = h.add_worker("w1", ["sleep"])
    jid = h.submit("sleep", timeout=2.0)
    h.tick(1.0)
    assert jid not in h.replies()
    h.tick(1.5)
    err = h.replies()[jid]
    assert isinstance(err, JobTimeout)
    # the worker timed it out too (same deadline) or got the CANCEL
    assert jid not in h.workers[rid].running


def test_cancel_from_the_client() -> None:
    """CANCEL ends the job with JobCancelled and stops it on the worker."""
    h = Harness()
    rid = h.add_worker("w1", ["sleep"])
    jid = h.submit("sleep")
    h.broker.on_frontend(NORMAL, [b"\x00cli", *h.client.cancel(jid)], h.clock())
    h.pump()
    assert isinstance(h.replies()[jid], JobCancelled)
    assert h.cancelled[rid] == [jid]


def test_duplicate_job_id_is_a_bad_request() -> None:
    """A second JOB with an id in progress is refused; the first is untouched."""
    h = Harness()
    h.add_worker("w1", ["sleep"])
    jid, frames = h.client.job("sleep", {}, job_id="same")
    h.broker.on_frontend(NORMAL, [b"\x00cli", *frames], h.clock())
    h.broker.on_frontend(NORMAL, [b"\x00cli", *frames], h.clock())
    h.pump()
    replies = h.replies()
    assert isinstance(replies[jid], BadRequest)
    assert h.broker.stats(h.clock())["jobs_in_progress"] == 1


def test_job_for_another_node_without_links_is_no_route() -> None:
    """Naming a node we cannot reach fails with NoRoute."""
    h = Harness()
    h.add_worker("w1", ["echo"])
    jid = h.submit("echo", on="elsewhere")
    assert isinstance(h.replies()[jid], NoRoute)


def test_capabilities_select_workers() -> None:
    """A job needing a capability runs only on a worker that has it."""
    h = Harness()
    plain = h.add_worker("plain", ["render"], slots=10)
    gpu = h.add_worker("gpu", ["render"], slots=1, caps=("gpu",))
    h.submit("render", caps=("gpu",))
    h.submit("render", caps=("gpu",))  # queued: the gpu worker is busy
    assert len(h.started[gpu]) == 1 and not h.started[plain]
    jid = h.submit("render", caps=("tpu",))
    assert isinstance(h.replies()[jid], ToolNotFound)


@pytest.mark.parametrize(
    "frames",
    [
        [b"\x00cli"],
        [b"\x00cli", b"junk"],
        [b"\x00cli", b"XX\x01", b"", b""],
        [b"\x00cli", b"OZ\x02", b"", b""],
        [b"\x00cli", b"OZ\x01", b"\xc1", b""],
        [b"\x00cli", b"OZ\x01", b"\x93\x01\x02\x03", b""],
        [b"\x00cli", b"OZ\x01", b"", b"", b"", b""],
    ],
)
def test_malformed_frames_get_an_error_and_change_nothing(frames: list[bytes]) -> None:
    """Garbage from a client is answered with an error and counted."""
    h = Harness()
    h.add_worker("w1", ["echo"])
    h.broker.on_frontend(NORMAL, frames, h.clock())
    h.pump()
    assert len(h.to_client) == 1
    msg = decode(h.to_client[0])
    assert msg.header.type == MsgType.ERROR
    assert h.broker.stats(h.clock())["malformed"] == 1
    jid = h.submit("echo")
    h.to_client.clear()
    h.workers[b"w1"].done(jid, 1, h.clock())
    h.pump()
    assert h.replies()[jid].value == 1


def test_bad_job_body_is_a_bad_request() -> None:
    """A JOB whose body is not a valid job map is refused with BadRequest."""
    h = Harness()
    h.add_worker("w1", ["echo"])
    jid, frames = h.client.job("echo", {})
    frames[2] = b"\x01"
    h.broker.on_frontend(NORMAL, [b"\x00cli", *frames], h.clock())
    h.pump()
    assert isinstance(h.replies()[jid], BadRequest)


def test_worker_restart_fails_jobs_of_the_old_incarnation() -> None:
    """A worker that registers again lost what it was running."""
    h = Harness()
    rid = h.add_worker("w1", ["sleep"])
    jid = h.submit("sleep")
    h.workers[rid].start(h.clock())  # READY again
    h.pump()
    assert isinstance(h.replies()[jid], WorkerLost)


def test_unknown_worker_is_asked_to_register() -> None:
    """A heartbeat from a worker the broker does not know gets DISCONNECT,
    and the worker registers again."""
    h = Harness()
    rid = h.add_worker("w1", ["echo"])
    h.broker = BrokerCore("n1", now=h.clock())  # the broker restarted
    h.tick(1.0)
    h.tick(1.0)
    assert rid in h.broker.workers


def test_unroutable_job_goes_back_to_the_queue() -> None:
    """A JOB that cannot reach its worker is queued again for another."""
    h = Harness()
    a = h.add_worker("a", ["echo"], slots=1)
    b = h.add_worker("b", ["echo"], slots=1)
    j1 = h.submit("echo")
    j2 = h.submit("echo")
    assert [s.id for s in h.started[a]] == [j1]
    assert [s.id for s in h.started[b]] == [j2]
    # the shell reports the send of j1 to "a" as unroutable: "a" is gone
    h.broker.on_unroutable(WORKERS, [a, *h.client.job("echo", {}, job_id=j1)[1]], h.clock())
    assert a not in h.broker.workers
    h.workers[b].done(j2, 2, h.clock())
    h.pump()
    assert [s.id for s in h.started[b]] == [j2, j1]
    assert j1 not in h.replies()


def test_shutdown_answers_every_job() -> None:
    """Stopping the broker ends every job in progress with an error."""
    h = Harness()
    h.add_worker("w1", ["sleep"], slots=1)
    ids = [h.submit("sleep") for _ in range(3)]
    h.broker.shutdown()
    h.pump()
    replies = h.replies()
    assert all(isinstance(replies[i], JobError) for i in ids)


# ---------------------------------------------------------------- virtual worker
# Tools served in the broker's own process (Broker.register_tool), with no frames.


class Runner:
    """The shell's side: records what the core starts and stops."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str, dict[str, Any], float, int]] = []
        self.stopped: list[str] = []

    def run(self, jid: str, tool: str, args: dict[str, Any], deadline: float, cls: int) -> None:
        self.started.append((jid, tool, args, deadline, cls))

    def stop(self, jid: str) -> None:
        self.stopped.append(jid)


def _harness(slots: int = 1024) -> tuple[Harness, Runner]:
    h = Harness()
    r = Runner()
    h.broker.add_virtual_worker("n1.inproc", frozenset({"add"}), r.run, r.stop, slots=slots)
    return h, r


def test_a_job_runs_from_its_decoded_request_and_its_value_is_packed_once() -> None:
    """No frames go to any worker; the value handed back reaches the client."""
    h, r = _harness()
    jid = h.submit("add", {"a": 2, "b": 3})
    assert [s[:3] for s in r.started] == [(jid, "add", {"a": 2, "b": 3})]
    h.broker.virtual_done(jid, 5, None, 0.001, h.clock())
    h.pump()
    res = h.replies()[jid]
    assert isinstance(res, JobResult) and res.value == 5 and res.executed_on == "n1"
    stats = h.broker.stats(h.clock())
    assert stats["jobs_completed"] == 1 and stats["workers"] == 1


def test_an_error_is_typed_and_a_later_answer_is_late() -> None:
    h, _ = _harness()
    jid = h.submit("add", {})
    h.broker.virtual_done(jid, None, ToolFailed("ValueError: boom", remote_type="ValueError"),
                          0.0, h.clock())
    h.pump()
    err = h.replies()[jid]
    assert isinstance(err, ToolFailed) and "boom" in err.message
    h.broker.virtual_done(jid, 1, None, 0.0, h.clock())
    h.pump()
    assert h.replies() == {}
    assert h.broker.stats(h.clock())["late_replies"] == 1


def test_a_timeout_stops_the_job_frees_its_slot_and_starts_the_next() -> None:
    """One slot: the second job queues; the first timing out starts it."""
    h, r = _harness(slots=1)
    first = h.submit("add", {}, timeout=0.5)
    second = h.submit("add", {}, timeout=5.0)
    assert [s[0] for s in r.started] == [first]
    h.tick(1.0)
    assert r.stopped == [first]
    assert isinstance(h.replies()[first], JobTimeout)
    assert [s[0] for s in r.started] == [first, second]
    h.broker.virtual_done(first, 1, None, 0.0, h.clock())  # too late: dropped
    h.broker.virtual_done(second, 2, None, 0.0, h.clock())
    h.pump()
    res = h.replies()
    assert list(res) == [second] and isinstance(res[second], JobResult)
    assert res[second].value == 2


def test_a_value_that_cannot_be_sent_fails_the_job() -> None:
    h, _ = _harness()
    jid = h.submit("add", {})
    h.broker.virtual_done(jid, object(), None, 0.0, h.clock())
    h.pump()
    err = h.replies()[jid]
    assert isinstance(err, ToolFailed) and "cannot be sent" in err.message


def test_the_virtual_worker_never_expires_and_gets_no_heartbeats() -> None:
    h, _ = _harness()
    h.tick(60.0)
    assert h.broker.stats(h.clock())["workers"] == 1
    assert h.broker.out == []
