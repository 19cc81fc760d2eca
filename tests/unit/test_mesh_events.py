"""MeshEvents: the core's events told to listeners and to the futures
waiting on links and routes (the broker's connect_to_peer / wait_routable)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from operone_zmq.aio.mesh_events import MeshEvents
from operone_zmq.errors import NoRoute, Refused


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def _at(self, level: str) -> Any:
        return lambda event, **kw: self.lines.append((level, event, kw))

    def __getattr__(self, level: str) -> Any:
        return self._at(level)


def _events(stale: set[str] | None = None) -> tuple[MeshEvents, _Log, list[str]]:
    log, redialled = _Log(), []
    ev = MeshEvents(log, redial_soon=redialled.append,
                    stale_refusal=lambda node, reason: node in (stale or set()))
    return ev, log, redialled


def test_listeners_get_each_event_and_a_lost_peer_is_redialled() -> None:
    ev, log, redialled = _events()
    seen: list[tuple[str, Any]] = []
    for name in ("peer:connected", "peer:disconnected", "partition:detected"):
        ev.on(name, lambda p, name=name: seen.append((name, p)))
    ev.deliver([("peer:connected", {"node": "b"}),
                ("peer:disconnected", {"node": "b", "reason": "silent"}),
                ("partition:detected", {"unreachable": ["c"], "components": [["a"], ["c"]]})])
    # peer:disconnected's listeners get the node id, as the original's did.
    assert seen == [("peer:connected", {"node": "b"}), ("peer:disconnected", "b"),
                    ("partition:detected", {"unreachable": ["c"],
                                            "components": [["a"], ["c"]]})]
    assert redialled == ["b"]
    # The partition's log line names the nodes, not the (possibly huge) components.
    assert ("warning", "partition_detected", {"unreachable": ["c"]}) in log.lines


def test_a_link_waiter_is_resolved_refused_or_forgotten() -> None:
    asyncio.run(asyncio.wait_for(_a_link_waiter_is_resolved_refused_or_forgotten(), 10.0))


async def _a_link_waiter_is_resolved_refused_or_forgotten() -> None:
    ev, log, _ = _events(stale={"old"})
    up, refused, stale = ev.expect_link("b"), ev.expect_link("c"), ev.expect_link("old")
    ev.deliver([("peer:connected", {"node": "b"}),
                ("peer:refused", {"node": "c", "reason": "not trusted"}),
                ("peer:refused", {"node": "old", "reason": "an older incarnation"})])
    assert up.done() and up.result() is None
    with pytest.raises(Refused, match="not trusted"):
        refused.result()
    assert not stale.done()  # a refusal of an older connection is not the link's
    assert not any(line[1] == "peer_refused" and line[2]["peer"] == "old"
                   for line in log.lines)
    ev.forget_link_waiter("old", stale)  # the caller timed out
    ev.fail_waiters("stopped")
    assert not stale.done()  # forgotten: nothing holds it any more


def test_routable_waiters() -> None:
    asyncio.run(asyncio.wait_for(_routable_waiters(), 10.0))


async def _routable_waiters() -> None:
    ev, _, _ = _events()
    routes: set[str] = set()

    async def wait(node: str, timeout: float) -> None:
        await ev.until_routable(node, timeout, routes.__contains__,
                                lambda n, t: f"{n} not routable within {t:g} s")

    waiting = asyncio.ensure_future(wait("d", 5.0))
    await asyncio.sleep(0)
    ev.wake_routable(routes.__contains__)
    assert not waiting.done()
    routes.add("d")
    ev.wake_routable(routes.__contains__)
    await asyncio.wait_for(waiting, 1.0)
    with pytest.raises(NoRoute, match=r"e not routable within 0\.01 s"):
        await wait("e", 0.01)
    await wait("d", 0.01)  # at once when routable already


def test_stopping_fails_every_waiter() -> None:
    asyncio.run(asyncio.wait_for(_stopping_fails_every_waiter(), 10.0))


async def _stopping_fails_every_waiter() -> None:
    ev, _, _ = _events()
    link = ev.expect_link("b")
    waiting = asyncio.ensure_future(ev.until_routable("c", 5.0, lambda n: False,
                                                      lambda n, t: "never"))
    await asyncio.sleep(0)
    ev.fail_waiters("the broker stopped")
    with pytest.raises(NoRoute, match="the broker stopped"):
        link.result()
    with pytest.raises(NoRoute, match="the broker stopped"):
        await asyncio.wait_for(waiting, 1.0)
