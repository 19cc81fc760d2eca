"""The client connections a broker serves, bounded by ``max_clients`` (no I/O).

A client connection is one (class ROUTER, routing id) pair whose routing id
ZeroMQ chose (it starts with a zero byte); a client that uses two priority
classes holds two connections.

Rules:

* A connection is admitted on its first message while fewer than
  ``limits.max_clients`` are held; every later message refreshes it.
* When the table is full, a new connection's message is answered with
  ERROR ``too_many_clients`` (:class:`~operone_zmq.errors.TooManyClients`)
  and nothing else happens: it is not served.
* A connection is forgotten when it was silent for ``limits.client_idle``
  seconds and none of its jobs is in flight, or at once when a send to it
  found it gone (unroutable).  Its place is then free for a new one.
* The table never holds more than ``max_clients`` entries.
* A connection that sent a BATCH accepts BATCHes (docs/protocol.md §5.20);
  that mark is forgotten with the connection.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from .context import BrokerContext

__all__ = ["ClientTable"]


class ClientTable:
    """Admission and idle expiry of client connections."""

    def __init__(self, ctx: BrokerContext) -> None:
        self._ctx = ctx
        # (class, routing id) -> last message time; least recently heard first.
        self._seen: OrderedDict[tuple[int, bytes], float] = OrderedDict()
        #: Connections (in ``_seen``) that sent a BATCH: a subset, so bounded too.
        self._batches: set[tuple[int, bytes]] = set()

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, cls: int, rid: bytes, now: float,
              busy: Callable[[], set[bytes]]) -> bool:
        """A message from client connection ``(cls, rid)``: whether it is served.
        ``busy`` gives the routing ids with jobs in flight (asked only when full)."""
        key = (cls, rid)
        seen = self._seen
        if key in seen:
            seen[key] = now
            seen.move_to_end(key)
            return True
        if len(seen) >= self._ctx.limits.max_clients:
            self.expire(now, busy)
            if len(seen) >= self._ctx.limits.max_clients:
                self._ctx.counters["clients_refused"] += 1
                return False
        seen[key] = now
        return True

    def gone(self, cls: int, rid: bytes) -> None:
        """A send to ``(cls, rid)`` found no such connection."""
        self._seen.pop((cls, rid), None)
        self._batches.discard((cls, rid))

    def sent_batch(self, cls: int, rid: bytes) -> None:
        """Connection ``(cls, rid)`` (admitted) sent a BATCH: it accepts them."""
        if (cls, rid) in self._seen:
            self._batches.add((cls, rid))

    def accepts_batch(self, cls: int, rid: bytes) -> bool:
        """Whether connection ``(cls, rid)`` may be sent BATCH messages."""
        return (cls, rid) in self._batches

    def expire(self, now: float, busy: Callable[[], set[bytes]]) -> None:
        """Forget connections idle for ``client_idle`` s with no job in flight."""
        seen = self._seen
        idle = self._ctx.limits.client_idle
        if not seen or next(iter(seen.values())) + idle > now:
            return
        in_flight = busy()
        for key, last in list(seen.items()):
            if last + idle > now:
                break
            if key[1] in in_flight:
                # It waits for an answer: not idle; look again in client_idle s.
                seen[key] = now
                seen.move_to_end(key)
            else:
                del seen[key]
                self._batches.discard(key)

    def next_deadline(self, t: float) -> float:
        """When the least recently heard connection may expire."""
        if self._seen:
            at = next(iter(self._seen.values())) + self._ctx.limits.client_idle
            if at < t:
                t = at
        return t
