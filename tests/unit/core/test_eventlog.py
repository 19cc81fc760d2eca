"""EventLog and QUERY events: numbered, bounded, followed by `since`."""

from __future__ import annotations

from coreparts import Parts

from operone_zmq.core.eventlog import EventLog
from operone_zmq.errors import BadRequest
from operone_zmq.protocol.bodies import Query, pack_value


def test_events_are_numbered_bounded_and_followed() -> None:
    log = EventLog(capacity=3)
    for i in range(5):
        log.add("peer:connected", {"node": f"n{i}", "odd": {1, 2}}, 100.0 + i)
    got = log.since(0)
    assert [e["seq"] for e in got["events"]] == [3, 4, 5] and got["first"] == 3
    assert got["events"][0]["data"] == {"node": "n2", "odd": [1, 2]}
    pack_value(got)  # always sendable
    assert log.since(4) == {"events": [log.since(0)["events"][-1]], "next": 5, "first": 3}
    assert log.since(5)["events"] == [] and log.since(5)["next"] == 5
    assert log.since(99)["next"] == 5  # a follower of a restarted broker resyncs


def test_query_events_through_the_face() -> None:
    p = Parts()
    p.core.log_events([("message", {"src": "n2", "data": 1}), ("topology:updated", {})])
    a = p.queries.answer(Query("events", {"since": 0}), p.clock())
    assert [e["event"] for e in a["events"]] == ["message", "topology:updated"]
    assert a["next"] == 2
    assert p.queries.answer(Query("events", {"since": 2}), p.clock())["events"] == []
    for bad in ({"since": -1}, {"since": "x"}, {"limit": True}):
        try:
            p.queries.answer(Query("events", bad), p.clock())
        except BadRequest:
            continue
        raise AssertionError(bad)
