"""DashboardState and friends: broker answers in, the page's snapshot out (no I/O)."""

from __future__ import annotations

import json
from collections.abc import Callable

from operone_zmq.dashboard.model import (
    HISTORY_POINTS,
    MAX_LINKS,
    MAX_SEEN_JOBS,
    Answers,
    DashboardState,
    DurationHistogram,
    normalise_jobs,
)

T0 = 1_800_000_000.0

#: The conftest fixture make_answers: broker a's answers.
Make = Callable[..., Answers]


def test_two_up_nodes_and_their_link(make_answers: Make) -> None:
    """Both nodes, the local one marked, the edge up with the link's measured (QoS) RTT."""
    st = DashboardState("127.0.0.1:7700")
    st.poll_ok(make_answers(), T0)
    snap = st.snapshot(T0 + 1)
    json.dumps(snap)  # JSON-able
    assert snap["broker"] == {"address": "127.0.0.1:7700", "up": True, "error": None,
                              "since": T0, "last_ok": T0, "node": "a", "polls": 1,
                              "failed_polls": 0}
    a, b = snap["nodes"]
    assert (a["id"], a["local"], a["up"], a["uptime"]) == ("a", True, True, 12.5)
    assert (b["id"], b["local"], b["up"], b["uptime"]) == ("b", False, True, None)
    assert b["tools"] == ["echo", "sleep"] and b["capabilities"] == ["gpu"]
    assert b["since"] == T0 + 1 - 10.0  # from the link's up_for: the broker knows best
    assert snap["edges"] == [{"source": "a", "target": "b", "latency_ms": 0.934,
                              "bandwidth": 0.0, "loss": 0.0, "up": True}]
    (link,) = snap["links"]
    assert link["rtt_ms"] == 0.934 and link["jitter_ms"] == 0.084 and link["health"] == 100
    assert link["queued_by_class"] == {"normal": 3, "high": 1}
    assert link["history"][0]["queued"] == 4
    assert snap["jobs_summary"]["completed"] == 3 and snap["jobs_supported"] is False


def test_a_dead_peer_is_marked_down_even_when_its_lsa_is_gone(make_answers: Make) -> None:
    """b unreachable: node and link down, transition time noted; b still shown
    when the topology no longer lists it at all."""
    st = DashboardState("x")
    st.poll_ok(make_answers(), T0)
    st.poll_ok(make_answers(b_up=False), T0 + 5)
    snap = st.snapshot(T0 + 6)
    b = snap["nodes"][1]
    assert (b["up"], b["since"]) == (False, T0 + 5)
    assert snap["edges"] == [{"source": "a", "target": "b", "latency_ms": None,
                              "bandwidth": None, "loss": None, "up": False}]
    assert snap["links"][0]["up"] is False and snap["links"][0]["since"] == T0 + 5
    st.poll_ok(make_answers(b_up=False, b_in_topology=False), T0 + 7)
    snap = st.snapshot(T0 + 8)
    assert [(n["id"], n["up"]) for n in snap["nodes"]] == [("a", True), ("b", False)]
    assert snap["edges"][0]["up"] is False


def test_broker_going_away_and_coming_back(make_answers: Make) -> None:
    """A failed poll keeps the last known mesh, says why, and clears on the next answer."""
    st = DashboardState("x")
    st.poll_ok(make_answers(), T0)
    st.poll_failed("no answer from a broker at tcp://127.0.0.1:7700 within 2 s", T0 + 1)
    snap = st.snapshot(T0 + 2)
    assert snap["broker"]["up"] is False and "no answer" in snap["broker"]["error"]
    assert snap["broker"]["since"] == T0 + 1 and len(snap["nodes"]) == 2
    st.poll_ok(make_answers(), T0 + 3)
    assert st.snapshot(T0 + 4)["broker"] == {"address": "x", "up": True, "error": None,
                                             "since": T0 + 3, "last_ok": T0 + 3, "node": "a",
                                             "polls": 3, "failed_polls": 1}


def test_history_is_bounded_per_link_and_in_links(make_answers: Make) -> None:
    """At most HISTORY_POINTS points per link, at most MAX_LINKS links (least recent dropped)."""
    st = DashboardState("x")
    for i in range(HISTORY_POINTS + 10):
        st.poll_ok(make_answers(), T0 + i)
    h = st.snapshot(T0 + 500)["links"][0]["history"]
    assert len(h) == HISTORY_POINTS and h[-1]["t"] == T0 + HISTORY_POINTS + 9
    news = st.snapshot(T0 + 500, full_history=False)  # what each push after the first has
    assert news["full"] is False and news["links"][0]["history"] == h[-1:]
    a = make_answers()
    q = a.qos["b"]
    a.qos = {f"p{i}": q for i in range(MAX_LINKS + 5)}
    st.poll_ok(a, T0 + 1000)
    assert len(st.history) == MAX_LINKS


def test_garbage_answers_do_not_raise() -> None:
    """Wrong types everywhere: missing values become None, nothing raises."""
    st = DashboardState("x")
    bad = Answers(stats={"node": 3, "uptime": "long", "link_queues": [1], "errors": 5},
                  peers=[1, {"node": None}, {"node": "p", "state": 7, "up_for": "x"}],
                  topology={"nodes": [None, {"id": 5}, {"id": "q", "tools": "echo"}],
                            "edges": [{"source": "q"}, 3, {"source": "q", "target": "p",
                                                           "latency": "fast"}]},
                  network=None, qos={"p": {"error": "no such peer link"}})
    st.poll_ok(bad, T0)
    snap = st.snapshot(T0)
    json.dumps(snap)
    assert {n["id"] for n in snap["nodes"]} == {"p", "q"}
    q = next(n for n in snap["nodes"] if n["id"] == "q")
    assert q["tools"] == [] and q["workers"] is None and q["kind"] is None


def test_normalise_jobs_follows_the_contract() -> None:
    """Every contract field present; wrong types become None; not a list: None."""
    assert normalise_jobs(None) is None and normalise_jobs({"error": "x"}) is None
    got = normalise_jobs([
        {"id": "j1", "tool": "sleep", "node": "b", "state": "running", "attempts": 1,
         "started": T0, "finished": None, "duration": None, "submitter": "cli", "extra": 1},
        {"id": 5}, "x",
        {"id": "j2", "state": "failed", "attempts": True, "duration": "1s", "error": 3}])
    assert got is not None and [j["id"] for j in got] == ["j1", "j2"]
    assert set(got[0]) == {"id", "tool", "node", "state", "attempts", "started", "finished",
                           "duration", "submitter", "error"}
    assert got[0]["attempts"] == 1 and got[0]["started"] == T0
    assert got[1]["attempts"] is None and got[1]["duration"] is None and got[1]["error"] == "3"


def test_duration_histogram_counts_each_finished_job_once() -> None:
    """Seen twice: counted once; running ones and bad durations ignored; memory bounded."""
    h = DurationHistogram((0.1, 1.0))
    jobs = [{"id": "a", "state": "done", "duration": 0.05},
            {"id": "b", "state": "failed", "duration": 0.5},
            {"id": "c", "state": "running", "duration": 0.5},
            {"id": "d", "state": "done", "duration": 7.0},
            {"id": "e", "state": "done", "duration": -1}]
    assert h.observe_jobs(jobs) == 3
    assert h.observe_jobs(jobs) == 0
    assert h.cumulative() == [("0.1", 1), ("1.0", 2), ("+Inf", 3)]
    assert h.sum == 7.55
    h.observe_jobs([{"id": f"x{i}", "state": "done", "duration": 0.0}
                    for i in range(MAX_SEEN_JOBS + 10)])
    assert len(h._seen) == MAX_SEEN_JOBS
