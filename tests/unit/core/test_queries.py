"""Queries: answers and stats."""

from __future__ import annotations

from coreparts import Parts

from operone_zmq.protocol.bodies import Query

STATS_KEYS = [
    "node", "uptime", "workers", "slots", "running", "queued", "jobs_in_progress", "tools",
    "peers", "known_nodes", "origin_jobs_in_progress", "link_queues", "legacy_hosts",
    "in_flight_by_node",
]


def test_stats_keep_their_keys_in_order() -> None:
    p = Parts()
    p.ready(b"w1", ["echo"], slots=3)
    s = p.queries.stats(p.clock() + 2)
    assert list(s)[:len(STATS_KEYS)] == STATS_KEYS
    assert list(s)[-1] == "errors"
    assert (s["workers"], s["slots"], s["tools"], s["uptime"]) == (1, 3, ["echo"], 2.0)
    assert set(p.ctx.counters) <= set(s)


def test_a_connect_to_an_address_no_broker_can_have_is_an_error_and_dials_nothing() -> None:
    p = Parts()
    for args in ({"node": "n2", "host": "a b", "port": 7700},
                 {"node": "n2", "host": "h", "port": 65533},
                 {"node": "n2", "host": "h", "port": 0},
                 {"node": "n2", "host": "h", "port": 10**30},
                 {"node": "n2", "host": "-h", "port": 7700},
                 {"node": "n2", "host": "[::1]", "port": 7700},
                 {"node": "", "host": "h", "port": 7700},
                 {"node": "n" * 65, "host": "h", "port": 7700}):
        answer = p.queries.answer(Query("connect", args), p.clock())
        assert set(answer) == {"error"} and answer["error"].startswith("connect: "), args
        assert len(answer["error"]) < 300  # never grows with the input
    assert p.core.actions == []


def test_unknown_and_acting_queries() -> None:
    p = Parts()
    assert p.queries.answer(Query("nonsense"), p.clock()) is None
    assert p.queries.answer(Query("ping"), p.clock()) == {"node": "n1"}
    assert p.queries.answer(Query("connect", {"node": "n2", "host": "h", "port": 1}),
                            p.clock()) == {"node": "n2", "status": "dialling"}
    assert p.core.actions == [("dial", "n2", "h", 1)]
    assert p.queries.answer(Query("cancel", {"job": "nope"}), p.clock()) == {
        "job": "nope", "cancelled": False}
    assert p.queries.answer(Query("qos", {"peer": "n2"}), p.clock()) == {
        "peer": "n2", "error": "no such peer link"}
