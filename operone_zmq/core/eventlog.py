"""The broker's recent events, for QUERY ``events`` (no I/O).

The shell emits every event the parts produce (``peer:connected``,
``peer:disconnected``, ``peer:refused``, ``topology:updated``,
``partition:*``, ``qos:violation``, ``message``, ...) and hands each batch
here once emitted; a client follows them by polling QUERY ``events`` with the
``next`` of its previous answer (docs/protocol.md section 5.11).

Rules:

* Each event gets the next sequence number (from 1) and the wall-clock time
  it was logged; the log keeps the last :data:`MAX_EVENTS`.
* ``since(seq)`` returns the events after ``seq``, oldest first, at most
  ``limit``; ``first`` tells a client that fell behind how many it missed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any, Final

__all__ = ["MAX_EVENTS", "MAX_EVENTS_ANSWER", "EventLog"]

#: Events kept: minutes of a busy mesh's link and topology churn, so a
#: follower polling every second never misses one; about 200 bytes each.
MAX_EVENTS: Final = 1000
#: Events in one answer (keeps a REPLY small; a follower asks again).
MAX_EVENTS_ANSWER: Final = 500


def _plain(v: Any, depth: int = 0) -> Any:
    """``v`` as msgpack-able plain data (sets and tuples as lists, anything
    else odd as its text), so an event never makes an answer unsendable."""
    if v is None or isinstance(v, bool | int | float | str | bytes):
        return v
    if depth > 8:
        return str(v)
    if isinstance(v, dict):
        return {str(k): _plain(x, depth + 1) for k, x in v.items()}
    if isinstance(v, list | tuple | set | frozenset):
        items = sorted(v, key=str) if isinstance(v, set | frozenset) else v
        return [_plain(x, depth + 1) for x in items]
    return str(v)


class EventLog:
    """A bounded, numbered log of recent events."""

    def __init__(self, capacity: int = MAX_EVENTS) -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._seq = 0

    def add(self, name: str, data: Any, wall: float) -> None:
        self._seq += 1
        self._events.append({"seq": self._seq, "time": wall, "event": name,
                             "data": _plain(data)})

    def add_all(self, events: Iterable[tuple[str, Any]], wall: float) -> None:
        for name, data in events:
            self.add(name, data, wall)

    @property
    def last(self) -> int:
        """The sequence number of the latest event (0: none yet)."""
        return self._seq

    def since(self, seq: int, limit: int = MAX_EVENTS_ANSWER) -> dict[str, Any]:
        """``{"events": [...after seq, oldest first], "next": seq to ask from,
        "first": the oldest seq kept (0: none)}``."""
        evs = self._events
        first = evs[0]["seq"] if evs else 0
        out = [e for e in evs if e["seq"] > seq][:limit]
        nxt = out[-1]["seq"] if out else min(seq, self._seq)  # (a restarted broker: resync)
        return {"events": out, "next": nxt, "first": first}
