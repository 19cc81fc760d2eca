"""LegacyHosts: SSH-only hosts served by this broker."""

from __future__ import annotations

from coreparts import Parts

from operone_zmq.errors import ToolNotFound
from operone_zmq.protocol.bodies import JobRequest


def _accept(p: Parts, jid: str, tool: str = "shell") -> object:
    return p.legacy.accept("old", b"\x00c", 2, "cli", jid, JobRequest(tool, {"cmd": "true"}),
                           p.clock(), remote=False)


def test_slots_bound_what_runs_the_rest_waits_in_order() -> None:
    p = Parts()
    p.legacy.add("old", 1)
    assert "old" in p.legacy and p.linkstate.dirty
    assert _accept(p, "j1") is None
    assert _accept(p, "j2") is None
    assert [a[:3] for a in p.core.actions] == [("ssh", "old", "j1")]
    assert p.legacy.stats()["old"] == {"running": 1, "queued": 1, "done": 0, "slots": 1}
    assert p.legacy.loads() == [("old", 1.0, 1)]
    p.legacy.done("j1", "ok", None, 0.1)
    assert [a[:3] for a in p.core.actions][-1] == ("ssh", "old", "j2")
    assert p.legacy.stats()["old"]["done"] == 1
    assert p.ctx.counters["jobs_completed"] == 1
    assert len(p.take()) == 1  # the client's RESULT


def test_only_legacy_tools_and_fresh_ids() -> None:
    p = Parts()
    p.legacy.add("old", 1)
    assert isinstance(_accept(p, "j1", "python"), ToolNotFound)
    assert _accept(p, "j1") is None
    assert _accept(p, "j1") is not None


def test_a_late_answer_after_the_deadline_is_dropped() -> None:
    p = Parts()
    p.legacy.add("old", 1)
    p.legacy.accept("old", b"\x00c", 2, "cli", "j1", JobRequest("shell", timeout=1.0),
                    p.clock(), remote=False)
    p.clock.advance(2)
    p.local.tick(p.clock())
    assert ("ssh-cancel", "old", "j1") in p.core.actions
    p.take()
    p.legacy.done("j1", "late", None, 2.0)
    assert p.take() == []
