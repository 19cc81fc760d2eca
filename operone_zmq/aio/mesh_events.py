"""What a broker's core reports, told to its listeners, its log and its waiters.

The core appends ``(name, payload)`` events as it decides them; after every
run the shell (:class:`~operone_zmq.aio.broker.Broker`) hands them to
:meth:`MeshEvents.deliver`, which

* logs each one an operator must see (a peer linked, lost or refused, a QoS
  violation, a partition with the nodes it names, a re-routed job);
* resolves the futures of :meth:`MeshEvents.expect_link` (``connect_to_peer``)
  when the link comes up, and fails them with Refused when the peer refuses;
* emits it to the callbacks registered with :meth:`MeshEvents.on`.

``wait_routable`` futures are resolved by :meth:`MeshEvents.wake_routable`
after every run (a route appears when routes are recomputed, which is no
event).  On stop, :meth:`MeshEvents.fail_waiters` ends every waiter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..errors import NoRoute, Refused
from ..routing.events import EventEmitter

__all__ = ["MeshEvents"]

#: Fields of a partition event worth a log line: who is lost or back, and
#: since when (the components, which can list every node, are left out).
_PARTITION_LOG_FIELDS = ("partitions", "new", "unreachable", "rejoined", "forgotten",
                         "down_since")


def _partition_fields(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: payload[k] for k in _PARTITION_LOG_FIELDS if k in payload}


class MeshEvents:
    """The broker's event listeners and the futures waiting on links and routes."""

    def __init__(self, log: Any, *, redial_soon: Callable[[str], None],
                 stale_refusal: Callable[[str, str], bool]) -> None:
        """``redial_soon(node)``: a lost neighbour's connections are dialled
        afresh; ``stale_refusal(node, reason)``: True for a refusal that
        concerns a connection older than the link's current one (ignored)."""
        self._log = log
        self._redial_soon = redial_soon
        self._stale_refusal = stale_refusal
        self.emitter = EventEmitter()
        #: connect_to_peer(): node -> futures resolved once its link is up.
        self._linked: dict[str, list[asyncio.Future[None]]] = {}
        #: wait_routable(): node -> futures resolved once a route to it exists
        #: (read by the broker after every run: empty, it skips wake_routable).
        self.awaited_routes: dict[str, list[asyncio.Future[None]]] = {}

    def on(self, event: str, callback: Callable[..., object]) -> Callable[..., object]:
        """Register ``callback`` for ``event`` (see Broker.on for the names)."""
        return self.emitter.on(event, callback)

    # -------------------------------------------------------------- waiters
    def expect_link(self, node: str) -> asyncio.Future[None]:
        """A future resolved when the link to ``node`` comes up (Refused when
        ``node`` refuses it); the caller bounds the wait."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._linked.setdefault(node, []).append(fut)
        return fut

    def forget_link_waiter(self, node: str, fut: asyncio.Future[None]) -> None:
        """A caller of :meth:`expect_link` stopped waiting (it timed out)."""
        waiters = self._linked.get(node)
        if waiters is not None and fut in waiters:
            waiters.remove(fut)
            if not waiters:
                del self._linked[node]

    async def until_routable(self, node: str, timeout: float,
                             routable: Callable[[str], bool],
                             why_not: Callable[[str, float], str]) -> None:
        """Return once ``routable(node)`` holds (checked by :meth:`wake_routable`
        after every run); NoRoute with ``why_not(node, timeout)`` after
        ``timeout`` seconds."""
        if routable(node):
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self.awaited_routes.setdefault(node, [])
        waiters.append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise NoRoute(why_not(node, timeout)) from None
        finally:
            if fut in waiters:
                waiters.remove(fut)
            if not waiters and self.awaited_routes.get(node) is waiters:
                del self.awaited_routes[node]

    def wake_routable(self, routable: Callable[[str], bool]) -> None:
        """Resolve the routable-waiters whose node has become routable (at
        most one check per waiting node)."""
        if not self.awaited_routes:
            return
        for node in [n for n in self.awaited_routes if routable(n)]:
            for f in self.awaited_routes.pop(node):
                if not f.done():
                    f.set_result(None)

    def fail_waiters(self, why: str) -> None:
        """The broker stopped: every waiter ends with NoRoute(``why``)."""
        for waiters in [*self._linked.values(), *self.awaited_routes.values()]:
            for f in waiters:
                if not f.done():
                    f.set_exception(NoRoute(why))
        self._linked.clear()
        self.awaited_routes.clear()

    def _resolve_link(self, node: str, exc: BaseException | None = None) -> None:
        for f in self._linked.pop(node, []):
            if f.done():
                continue
            if exc is None:
                f.set_result(None)
            else:
                f.set_exception(exc)

    # --------------------------------------------------------------- events
    def deliver(self, events: list[tuple[str, Any]]) -> None:
        """Log, resolve waiters for and emit the core's ``events``, in order."""
        log = self._log
        for name, payload in events:
            if name == "message":
                log.info("broadcast_received", src=payload.get("src"), via=payload.get("via"))
            elif name == "peer:connected":
                log.info("peer_connected", peer=payload["node"])
                self._resolve_link(payload["node"])
            elif name == "peer:disconnected":
                log.info("peer_disconnected", peer=payload["node"],
                         reason=payload.get("reason"))
                # Its connections may be stalled (a partition) with TCP's
                # retransmission waits grown long: dial afresh.
                self._redial_soon(payload["node"])
                # (The original's listeners get the node id, not a dict.)
                self.emitter.emit(name, payload["node"])
                continue
            elif name == "peer:refused":
                node, reason = payload["node"], payload["reason"]
                if self._stale_refusal(node, reason):
                    continue
                log.warning("peer_refused", peer=node, reason=reason)
                self._resolve_link(node, Refused(f"peer '{node}' refused the link: {reason}"))
            elif name == "qos:violation":
                if payload.get("state") == "violated":
                    log.warning("qos_violation", **payload)
                else:
                    log.info("qos_recovered", **payload)
            elif name == "peer:restarted":
                log.info("peer_restarted", peer=payload["node"])
            elif name.startswith("partition:"):
                # Names the nodes (unreachable, new, rejoined, forgotten) and
                # since when: an operator must see a lost part of the mesh.
                log.warning(name.replace(":", "_"), **_partition_fields(payload))
            elif name == "job:rerouted":
                log.info("job_rerouted", **payload)
            self.emitter.emit(name, payload)
