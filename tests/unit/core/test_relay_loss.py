"""Jobs routed into a relay that dies are re-sent at once (issue 9 item 4), in memory.

A diamond a-{b,c}-d: jobs from a's client run on d, and the preferred path
is a-b-d.  b dies while jobs are in flight (and while more are sent): every
job must end with its result, long before the 3 s liveness timeout, and
none with JobTimeout.
"""

from __future__ import annotations

from operone_zmq.core.client import JobResult
from operone_zmq.testing import CoreMesh

JOBS = 10


def _diamond() -> CoreMesh:
    m = CoreMesh(auto_echo=False)
    for x in "abcd":
        m.add(x)
    # b and c dial a (a reaches them only through its ROUTERs: an unroutable
    # send is how a learns of a crash); d dials b and c (it sees the
    # transport drop).
    m.dial("b", "a")
    m.dial("c", "a")
    m.dial("d", "b")
    m.dial("d", "c")
    m.add_worker("d", ["work"], slots=64)
    m.run()
    m.advance(3, step=0.05)
    assert m.converged()
    assert m.nodes["a"].route_info("d")["path"] == ["a", "b", "d"]
    return m


def _finish_started(m: CoreMesh) -> int:
    w = next(iter(m.workers["d"].values()))
    n = 0
    for start in m.started["d"]:
        if start.id in w.running:
            w.done(start.id, "ok", m.clock())
            n += 1
    m.started["d"].clear()
    m._collect_worker("d")
    m.run()
    return n


def test_jobs_in_flight_through_a_crashed_relay_all_end_with_results() -> None:
    m = _diamond()
    ids = [m.submit("a", "work", timeout=30.0) for _ in range(JOBS)]
    m.run()
    assert len(m.started["d"]) == JOBS  # all running on d, sent through b
    m.crash("b")
    # d answers while its routes still point at b: the answers must not be lost.
    assert _finish_started(m) == JOBS
    m.advance(1.0, step=0.05)  # well inside the 3 s liveness timeout
    # More jobs: a still thinks b is up; its sends hit b's closed connection.
    more = [m.submit("a", "work", timeout=30.0) for _ in range(JOBS)]
    m.run()
    m.advance(0.5, step=0.05)
    assert _finish_started(m) == JOBS
    m.advance(0.5, step=0.05)
    replies = m.replies("a")
    assert set(replies) == set(ids + more)
    assert all(isinstance(v, JobResult) for v in replies.values()), replies
    assert m.nodes["a"].route_info("d")["path"] == ["a", "c", "d"]
    assert not m.nodes["a"].links.get("b") or not m.nodes["a"].links["b"].up


def test_jobs_whose_path_lost_a_silent_relay_are_resent() -> None:
    """b stops without closing anything (power off): once liveness says so,
    attempts whose path crossed b are re-sent on a-c-d, and d answers the
    ones it already ran from its result cache (each job runs once)."""
    m = _diamond()
    ids = [m.submit("a", "work", timeout=30.0) for _ in range(JOBS)]
    m.run()
    assert len(m.started["d"]) == JOBS
    m.kill("b")
    assert _finish_started(m) == JOBS  # answers lost in b
    m.advance(5.0, step=0.1)  # liveness (3 s) + LSA + SPF
    replies = m.replies("a")
    assert set(replies) == set(ids)
    assert all(isinstance(v, JobResult) for v in replies.values()), replies
    assert m.nodes["a"].counters["attempts_resent"] == JOBS
    assert m.nodes["d"].counters["results_from_cache"] == JOBS
    assert m.started["d"] == []  # nothing ran twice
