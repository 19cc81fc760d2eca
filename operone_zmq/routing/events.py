"""A small synchronous event emitter, shared by the topology and the broker.

Rules:

* ``on(name, callback)`` registers a callback for one event name; the same
  callback registered twice is called twice (as in Node's EventEmitter, which
  the original package used).  ``off(name, callback)`` removes one
  registration; removing a callback that is not registered does nothing.
* ``emit(name, *args)`` calls the callbacks registered for ``name`` in
  registration order, synchronously, and returns how many were called.  It
  iterates over a snapshot, so a callback may call ``on``/``off`` safely.
* A callback that raises never breaks ``emit``: the remaining callbacks still
  run.  The exception is handed to the ``on_error`` hook (if set) and kept in
  :attr:`EventEmitter.errors`, a bounded list of the most recent failures, so
  nothing is swallowed silently and this module needs no logging import.
* Registrations per event name are bounded (:data:`MAX_LISTENERS_PER_EVENT`):
  a component that registers in a loop and never unregisters is a leak (the
  original package leaked one listener per remote call), so going over the
  bound raises instead of growing without end.

An :class:`Event` is a plain ``(name, data)`` pair; functions that decide
events without emitting them (e.g. :meth:`NetworkTopology.check_partitions`)
return lists of them.

Partition events (decided by :class:`~operone_zmq.routing.topology.PartitionTracker`,
names below): :data:`PARTITION_DETECTED` when known nodes become
unreachable (it names them and says since when), :data:`PARTITION_REJOINED`
when some of them are reachable again while others are not,
:data:`PARTITION_HEALED` only when every node still known is reachable
again, and :data:`PARTITION_FORGOTTEN` when unreachable nodes are dropped
after the retention time -- which is never reported as a heal.

No I/O, no clocks, no threads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Final, NamedTuple

__all__ = [
    "MAX_LISTENERS_PER_EVENT",
    "MAX_RECORDED_ERRORS",
    "PARTITION_DETECTED",
    "PARTITION_FORGOTTEN",
    "PARTITION_HEALED",
    "PARTITION_REJOINED",
    "Event",
    "EventEmitter",
    "ListenerError",
]

#: Callbacks allowed per event name.  A broker registers a handful per event;
#: hundreds means something registers per message and never unregisters.
MAX_LISTENERS_PER_EVENT: Final = 256

#: Callback failures kept in :attr:`EventEmitter.errors`; enough to inspect
#: a burst in a test or a debug dump without keeping every failure forever.
MAX_RECORDED_ERRORS: Final = 64

Callback = Callable[..., object]

#: Known nodes became unreachable: ``partitions``, ``unreachable`` (all
#: such nodes), ``new`` (those just lost), ``down_since`` (node -> time),
#: ``components``, ``local_component``, ``separated`` (= ``unreachable``).
PARTITION_DETECTED: Final = "partition:detected"
#: Some unreachable nodes are reachable again, others not: ``rejoined``,
#: ``unreachable``, ``partitions``.
PARTITION_REJOINED: Final = "partition:rejoined"
#: Every known node is reachable again: ``partitions`` (1), ``rejoined``
#: (the nodes that came back last), ``lost`` (always empty: nodes that were
#: never seen again are reported by PARTITION_FORGOTTEN instead).
PARTITION_HEALED: Final = "partition:healed"
#: Unreachable nodes dropped after the retention time (not a heal):
#: ``forgotten``, ``down_since``, ``unreachable`` (those still tracked).
PARTITION_FORGOTTEN: Final = "partition:forgotten"


class Event(NamedTuple):
    """One event: its name (e.g. ``"partition:detected"``) and its data."""

    name: str
    data: dict[str, Any]


class ListenerError:
    """A callback that raised while an event was emitted: ``event``, ``callback``, ``error``.

    (A plain class, not a NamedTuple or a dataclass: compiled by mypyc, a
    class whose annotations are kept at run time fails at import with a
    KeyError when one names a builtin class such as ``BaseException``.)
    """

    __slots__ = ("callback", "error", "event")

    def __init__(self, event: str, callback: Callback, error: BaseException) -> None:
        self.event = event
        self.callback = callback
        self.error = error

    def __repr__(self) -> str:
        return (f"ListenerError(event={self.event!r}, callback={self.callback!r},"
                f" error={self.error!r})")


class EventEmitter:
    """Synchronous named events with failure isolation between callbacks."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Callback]] = {}
        #: The most recent callback failures, oldest first.
        self.errors: deque[ListenerError] = deque(maxlen=MAX_RECORDED_ERRORS)
        #: Called as ``on_error(event_name, callback, exception)`` when a callback raises.
        self.on_error: Callable[[str, Callback, BaseException], object] | None = None

    def on(self, name: str, callback: Callback) -> Callback:
        """Register ``callback`` for event ``name`` and return it (usable as a decorator)."""
        listeners = self._listeners.setdefault(name, [])
        if len(listeners) >= MAX_LISTENERS_PER_EVENT:
            raise RuntimeError(
                f"more than {MAX_LISTENERS_PER_EVENT} listeners for event {name!r}: "
                "probably a leak (register once, or call off())"
            )
        listeners.append(callback)
        return callback

    def off(self, name: str, callback: Callback) -> bool:
        """Remove one registration of ``callback`` for ``name``; return whether one was found."""
        listeners = self._listeners.get(name)
        if not listeners:
            return False
        try:
            listeners.remove(callback)
        except ValueError:
            return False
        if not listeners:
            del self._listeners[name]
        return True

    def listener_count(self, name: str) -> int:
        """Return how many callbacks are registered for ``name``."""
        return len(self._listeners.get(name, ()))

    def emit(self, name: str, *args: Any) -> int:
        """Call every callback of ``name`` with ``args``; return how many were called."""
        listeners = self._listeners.get(name)
        if not listeners:
            return 0
        snapshot = tuple(listeners)
        for callback in snapshot:
            try:
                callback(*args)
            except Exception as exc:  # isolation is the point: one bad listener
                self._record(name, callback, exc)
        return len(snapshot)

    def emit_events(self, events: list[Event]) -> None:
        """Emit each ``Event`` in order, passing its data as the one argument."""
        for event in events:
            self.emit(event.name, event.data)

    def _record(self, name: str, callback: Callback, exc: BaseException) -> None:
        self.errors.append(ListenerError(name, callback, exc))
        hook = self.on_error
        if hook is not None:
            try:
                hook(name, callback, exc)
            except Exception as hook_exc:  # a broken hook must not break emit either
                self.errors.append(ListenerError(name, hook, hook_exc))
