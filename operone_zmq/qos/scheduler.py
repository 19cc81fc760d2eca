"""ClassScheduler: which queued message a node sends next, and in which order it reads.

Rules:

- One scheduler per node holds the outgoing messages of every link, in one
  bounded queue per priority class (:data:`MAX_QUEUE` messages and
  :data:`MAX_QUEUE_BYTES` bytes per class, over all links).  A full class
  refuses: :meth:`ClassScheduler.push` returns ``False`` and counts a refusal,
  :meth:`ClassScheduler.put` raises :class:`~operone_zmq.errors.Overloaded`;
  nothing is ever dropped silently.  A message alone in an empty class is
  accepted whatever its size (frame sizes are the codec's limit, not ours).
- Within a class, each link's messages leave in FIFO order, and links take
  turns (round robin), so one busy link cannot hold up the others.
- Every (link, class) pair may have a :class:`TokenBucket` (rates in bytes/s,
  set per class for all links, or per link).  A message whose bucket has no
  tokens waits and does not block other links or classes;
  :meth:`ClassScheduler.next_deadline` says when the earliest waiting message
  becomes sendable, so the caller sets a timer instead of polling.
- Choice between classes: strict priority among classes that have a sendable
  message, so ``critical`` goes first whenever present, with one exception
  against starvation: a class passed over :data:`STARVATION_LIMIT` times in a
  row while it had a sendable message gets the next pick (the most urgent
  such class first).  Under saturation every class is therefore served at
  least once every ``STARVATION_LIMIT[cls] + 3`` picks, and ``critical`` (no
  limit of its own) takes everything left over.
- Messages can leave the queues without being sent only through
  :meth:`ClassScheduler.drop_link` (the link went away) and
  :meth:`ClassScheduler.drop_expired` (older than the caller's deadline); both
  return what they removed, so the caller can answer with errors, and both
  count drops.
- Receiving: :func:`receive_order` orders the class sockets that are ready to
  read, critical first and again between the lower classes;
  :func:`receive_plan` adds how many messages to drain from each
  (:data:`RECEIVE_BATCH`) so every ready socket is read every round.

Time comes in as ``now`` (monotonic seconds).  No I/O.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Generic, TypeVar

from operone_zmq.errors import Overloaded
from operone_zmq.qos.bucket import TokenBucket
from operone_zmq.qos.priority import PRIORITIES, Priority

__all__ = [
    "MAX_LINKS",
    "MAX_QUEUE",
    "MAX_QUEUE_BYTES",
    "RECEIVE_BATCH",
    "STARVATION_LIMIT",
    "ClassScheduler",
    "ClassStats",
    "Entry",
    "receive_order",
    "receive_plan",
]

T = TypeVar("T")

_MIB: Final = 1024 * 1024

#: Messages queued per class over all links.
MAX_QUEUE: Final[Mapping[Priority, int]] = MappingProxyType(
    {
        # Heartbeats and handshakes: a few per link per second; a thousand
        # waiting means the links are dead, and stale heartbeats are useless.
        Priority.CRITICAL: 1_000,
        # Jobs and results: 100 in flight per client times many clients.
        Priority.HIGH: 10_000,
        Priority.NORMAL: 10_000,
        # File chunks of 64 KiB: 1,024 of them is the 64 MiB byte bound below.
        Priority.LOW: 1_024,
    }
)

#: Bytes queued per class over all links: 64 MiB per bulk class bounds a
#: broker's send buffers to a few hundred MiB even when every class is full;
#: critical messages are tiny, so 1 MiB is already thousands of them.
MAX_QUEUE_BYTES: Final[Mapping[Priority, int]] = MappingProxyType(
    {
        Priority.CRITICAL: 1 * _MIB,
        Priority.HIGH: 64 * _MIB,
        Priority.NORMAL: 64 * _MIB,
        Priority.LOW: 64 * _MIB,
    }
)

#: Consecutive picks a class with a sendable message may be passed over before
#: it is served anyway.  The ratios give, under full saturation, about
#: 64 / 20 / 10 / 6 % of picks to critical / high / normal / low: urgent traffic
#: dominates, yet a bulk transfer still moves.  Critical has no limit: it is
#: served first whenever no other class is overdue.
STARVATION_LIMIT: Final[Mapping[Priority, int]] = MappingProxyType(
    {Priority.HIGH: 4, Priority.NORMAL: 8, Priority.LOW: 16}
)

#: Links with queues or buckets at once; QoS state is per direct link and the
#: mesh is designed for 10,000 nodes, so more is a leak (drop_link() not called).
MAX_LINKS = 10_000

#: Messages to drain from a ready receive socket per round, weighted 8:4:2:1 so
#: critical gets most of each round; even the smallest batch of 32 amortises
#: the cost of waking up (DESIGN.md section 11: drain in batches).
RECEIVE_BATCH: Final[Mapping[Priority, int]] = MappingProxyType(
    {Priority.CRITICAL: 256, Priority.HIGH: 128, Priority.NORMAL: 64, Priority.LOW: 32}
)


class Entry(Generic[T]):
    """A queued message: the caller's item, its class, size, link and enqueue time.

    Read-only, compared and hashed by its fields.  (Not a frozen dataclass:
    compiled by mypyc, a generic dataclass fails at import.)
    """

    __slots__ = ("_cls", "_enqueued_at", "_item", "_link", "_size")

    def __init__(self, item: T, cls: Priority, size: int, link: str, enqueued_at: float) -> None:
        self._item = item
        self._cls = cls
        self._size = size
        self._link = link
        self._enqueued_at = enqueued_at

    @property
    def item(self) -> T:
        """What the caller queued."""
        return self._item

    @property
    def cls(self) -> Priority:
        """Its priority class."""
        return self._cls

    @property
    def size(self) -> int:
        """Its size in bytes."""
        return self._size

    @property
    def link(self) -> str:
        """The link it waits for."""
        return self._link

    @property
    def enqueued_at(self) -> float:
        """When it was queued (monotonic seconds)."""
        return self._enqueued_at

    def _fields(self) -> tuple[object, ...]:
        return (self._item, self._cls, self._size, self._link, self._enqueued_at)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entry) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (f"Entry(item={self._item!r}, cls={self._cls!r}, size={self._size!r},"
                f" link={self._link!r}, enqueued_at={self._enqueued_at!r})")


@dataclass(frozen=True, slots=True)
class ClassStats:
    """Counters of one class: what is queued now, and what came and went."""

    depth: int
    depth_bytes: int
    pushed: int
    popped: int
    refused: int
    dropped: int


class _ClassQueue(Generic[T]):
    """The queue of one class: per-link FIFOs in round-robin order, with counters."""

    __slots__ = (
        "by_link",
        "depth",
        "depth_bytes",
        "dropped",
        "popped",
        "pushed",
        "refused",
        "waits",
    )

    def __init__(self) -> None:
        self.by_link: OrderedDict[str, deque[Entry[T]]] = OrderedDict()
        self.depth = 0
        self.depth_bytes = 0
        self.pushed = 0
        self.popped = 0
        self.refused = 0
        self.dropped = 0
        self.waits = 0  # consecutive picks passed over while sendable

    def remove(self, entry: Entry[T]) -> None:
        self.depth -= 1
        self.depth_bytes -= entry.size
        if self.depth == 0:
            self.waits = 0


class ClassScheduler(Generic[T]):
    """Bounded per-class send queues, strict priority with anti-starvation, rate gating."""

    def __init__(
        self,
        *,
        rates: Mapping[Priority, float | None] | None = None,
        max_queue: Mapping[Priority, int] | None = None,
        max_queue_bytes: Mapping[Priority, int] | None = None,
        starvation_limit: Mapping[Priority, int] | None = None,
    ) -> None:
        self._queues: dict[Priority, _ClassQueue[T]] = {p: _ClassQueue() for p in PRIORITIES}
        self._max_queue = _per_class(MAX_QUEUE, max_queue, "max_queue")
        self._max_bytes = _per_class(MAX_QUEUE_BYTES, max_queue_bytes, "max_queue_bytes")
        given = STARVATION_LIMIT if starvation_limit is None else starvation_limit
        self._limits: dict[Priority, int] = {}
        for cls, limit in _items(given):
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ValueError(
                    f"starvation limit of {cls!s} must be an integer >= 1, not {limit!r}"
                )
            self._limits[Priority.parse(cls)] = limit
        # Default rate per class (bytes/s per link; None = unlimited).
        self._rates: dict[Priority, float | None] = dict.fromkeys(PRIORITIES)
        for cls, rate in _items(rates):
            self._rates[Priority.parse(cls)] = _check_rate(rate)
        # Default burst per class (bytes; None = the bucket's default for its rate).
        self._bursts: dict[Priority, float | None] = dict.fromkeys(PRIORITIES)
        # Per-link overrides: (link, class) -> (rate, burst).
        self._link_rates: dict[tuple[str, Priority], tuple[float | None, float | None]] = {}
        # (link, class) -> bucket, or None when unlimited; created on first push.
        self._buckets: dict[tuple[str, Priority], TokenBucket | None] = {}
        self._links: set[str] = set()

    # ------------------------------------------------------------------ input
    def push(
        self, cls: Priority | str | int, item: T, size: object, now: float, *, link: str = ""
    ) -> bool:
        """Queue *item* of *size* bytes for *link* in class *cls*; False when the class is full.

        *size* must be a non-negative integer (``object``, checked here:
        compiled by mypyc, an ``int`` parameter would take a boolean as 1 and
        refuse a float with TypeError instead of ValueError).
        """
        cls = Priority.parse(cls)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"size must be a non-negative integer of bytes, not {size!r}")
        queue = self._queues[cls]
        if (
            queue.depth >= self._max_queue[cls]
            or (queue.depth > 0 and queue.depth_bytes + size > self._max_bytes[cls])
            or (link not in self._links and len(self._links) >= MAX_LINKS)
        ):
            queue.refused += 1
            return False
        self._links.add(link)
        key = (link, cls)
        if key not in self._buckets:
            self._buckets[key] = self._new_bucket(link, cls, now)
        fifo = queue.by_link.get(link)
        if fifo is None:
            fifo = queue.by_link[link] = deque()
        fifo.append(Entry(item, cls, size, link, now))
        queue.depth += 1
        queue.depth_bytes += size
        queue.pushed += 1
        return True

    def put(
        self, cls: Priority | str | int, item: T, size: object, now: float, *, link: str = ""
    ) -> None:
        """Queue like :meth:`push`, raising :class:`Overloaded` when the class is full."""
        cls = Priority.parse(cls)
        if not self.push(cls, item, size, now, link=link):
            queue = self._queues[cls]
            raise Overloaded(
                f"the {cls.label} send queue is full ({queue.depth} messages, "
                f"{queue.depth_bytes} bytes); retry later",
                details={"class": cls.label, "depth": queue.depth, "bytes": queue.depth_bytes},
            )

    # ----------------------------------------------------------------- output
    def pop_entry(self, now: float) -> Entry[T] | None:
        """Remove and return the next message to send at *now*, or ``None`` if none may go."""
        sendable: dict[Priority, str] = {}
        for cls in PRIORITIES:
            link = self._sendable_link(cls, now)
            if link is not None:
                sendable[cls] = link
        if not sendable:
            return None
        overdue = [
            cls
            for cls in sendable
            if cls in self._limits and self._queues[cls].waits >= self._limits[cls]
        ]
        chosen = min(overdue) if overdue else min(sendable)
        for cls in sendable:
            if cls != chosen:
                self._queues[cls].waits += 1
        queue = self._queues[chosen]
        queue.waits = 0
        link = sendable[chosen]
        fifo = queue.by_link[link]
        entry = fifo.popleft()
        if fifo:
            queue.by_link.move_to_end(link)  # the next pick in this class starts with another link
        else:
            del queue.by_link[link]
        queue.remove(entry)
        queue.popped += 1
        bucket = self._buckets.get((link, chosen))
        if bucket is not None:
            bucket.charge(entry.size, now)
        return entry

    def pop(self, now: float) -> T | None:
        """Remove and return the next item to send at *now*, or ``None`` if none may go."""
        entry = self.pop_entry(now)
        return None if entry is None else entry.item

    def next_deadline(self, now: float) -> float | None:
        """Return when the next message may be sent (*now* if one may), ``None`` if all empty."""
        best = math.inf
        for cls in PRIORITIES:
            for link, fifo in self._queues[cls].by_link.items():
                bucket = self._buckets.get((link, cls))
                wait = 0.0 if bucket is None else bucket.time_until(fifo[0].size, now)
                if wait <= 0:
                    return now
                best = min(best, now + wait)
        return None if best == math.inf else best

    # ------------------------------------------------------------------ rates
    def set_rate(
        self,
        cls: Priority | str | int,
        rate: object,
        now: float,
        *,
        link: str | None = None,
        burst: float | None = None,
    ) -> None:
        """Set the rate in bytes/s (``None``: unlimited) and burst of *cls* for one or all links.

        Without *link* this is the class default, applied to every link that
        has no rate of its own.  Without *burst* the bucket's default burst
        for the rate is used.  A rate that is not a positive number, None or
        0 raises ValueError (*rate* is an ``object`` checked here: see
        :func:`_items`).
        """
        cls = Priority.parse(cls)
        checked = _check_rate(rate)
        if link is None:
            self._rates[cls] = checked
            self._bursts[cls] = burst
            keys = [k for k in self._buckets if k[1] == cls and k not in self._link_rates]
        else:
            self._link_rates[(link, cls)] = (checked, burst)
            keys = [(link, cls)] if (link, cls) in self._buckets else []
        for key in keys:
            bucket = self._buckets[key]
            if checked is None:
                self._buckets[key] = None
            elif bucket is None:
                self._buckets[key] = TokenBucket(checked, burst, now)
            else:
                bucket.set_rate(checked, now, burst)

    def rate(self, cls: Priority | str | int, *, link: str | None = None) -> float | None:
        """Return the rate in bytes/s of *cls* for *link* (or the class default)."""
        cls = Priority.parse(cls)
        if link is not None and (link, cls) in self._link_rates:
            return self._link_rates[(link, cls)][0]
        return self._rates[cls]

    # ------------------------------------------------------------------ drops
    def drop_link(self, link: str) -> list[Entry[T]]:
        """Remove and return every message queued for *link* and forget its buckets."""
        dropped: list[Entry[T]] = []
        for cls in PRIORITIES:
            queue = self._queues[cls]
            fifo = queue.by_link.pop(link, None)
            if fifo:
                for entry in fifo:
                    queue.remove(entry)
                    queue.dropped += 1
                dropped.extend(fifo)
            self._buckets.pop((link, cls), None)
        self._links.discard(link)
        return dropped

    def drop_expired(
        self, now: float, max_age: float, cls: Priority | str | int | None = None
    ) -> list[Entry[T]]:
        """Remove and return messages queued for more than *max_age* seconds (in *cls*, or all)."""
        classes = PRIORITIES if cls is None else (Priority.parse(cls),)
        dropped: list[Entry[T]] = []
        for c in classes:
            queue = self._queues[c]
            for link in list(queue.by_link):
                fifo = queue.by_link[link]
                while fifo and now - fifo[0].enqueued_at > max_age:
                    entry = fifo.popleft()
                    queue.remove(entry)
                    queue.dropped += 1
                    dropped.append(entry)
                if not fifo:
                    del queue.by_link[link]
        return dropped

    # ---------------------------------------------------------------- queries
    def depth(self, cls: Priority | str | int | None = None, *, link: str | None = None) -> int:
        """Return the messages queued in *cls* (or all classes), for *link* (or all links)."""
        classes = PRIORITIES if cls is None else (Priority.parse(cls),)
        if link is None:
            return sum(self._queues[c].depth for c in classes)
        return sum(len(self._queues[c].by_link.get(link, ())) for c in classes)

    def depth_bytes(self, cls: Priority | str | int | None = None) -> int:
        """Return the bytes queued in *cls* (or all classes)."""
        classes = PRIORITIES if cls is None else (Priority.parse(cls),)
        return sum(self._queues[c].depth_bytes for c in classes)

    def stats(self) -> dict[Priority, ClassStats]:
        """Return the counters of every class."""
        return {
            cls: ClassStats(q.depth, q.depth_bytes, q.pushed, q.popped, q.refused, q.dropped)
            for cls, q in self._queues.items()
        }

    def __len__(self) -> int:
        return self.depth()

    # ---------------------------------------------------------------- private
    def _new_bucket(self, link: str, cls: Priority, now: float) -> TokenBucket | None:
        rate, burst = self._link_rates.get((link, cls), (self._rates[cls], self._bursts[cls]))
        return None if rate is None else TokenBucket(rate, burst, now)

    def _sendable_link(self, cls: Priority, now: float) -> str | None:
        for link, fifo in self._queues[cls].by_link.items():
            bucket = self._buckets.get((link, cls))
            if bucket is None or bucket.time_until(fifo[0].size, now) <= 0:
                return link
        return None


def receive_order(ready: Iterable[Priority | str | int]) -> list[Priority]:
    """Return the order in which to drain the ready receive sockets.

    Strict priority, and when ``critical`` is ready it is read again before each
    lower class, so a long batch of bulk data never delays a heartbeat by more
    than one batch.  Every ready class appears, so none starves.
    """
    classes = sorted({Priority.parse(c) for c in ready})
    if Priority.CRITICAL not in classes:
        return classes
    order = [Priority.CRITICAL]
    for cls in classes[1:]:
        if order[-1] != Priority.CRITICAL:
            order.append(Priority.CRITICAL)
        order.append(cls)
    return order


def receive_plan(ready: Iterable[Priority | str | int]) -> list[tuple[Priority, int]]:
    """Return :func:`receive_order` with how many messages to drain from each socket."""
    return [(cls, RECEIVE_BATCH[cls]) for cls in receive_order(ready)]


def _per_class(
    defaults: Mapping[Priority, int], given: Mapping[Priority, int] | None, name: str
) -> dict[Priority, int]:
    values = dict(defaults)
    for cls, value in _items(given):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} of {cls!s} must be a positive integer, not {value!r}")
        values[Priority.parse(cls)] = value
    return values


def _items(given: Mapping[Priority, object] | None) -> list[tuple[object, object]]:
    """The (class, value) pairs of a per-class mapping, as objects until the
    caller parses the class and checks the value.

    (Compiled by mypyc, a pair unpacked from ``Mapping[Priority, int]`` is
    checked against that type: a class given by its name, or a float bound,
    would raise TypeError instead of the ValueError of the check, and a
    boolean bound pass as 1.)
    """
    return list((given or {}).items())


def _check_rate(rate: object) -> float | None:
    """Return a rate in bytes/s as a float, or None (unlimited) for None or 0."""
    if rate is None or (type(rate) is not bool and rate == 0):
        return None
    if (isinstance(rate, bool) or not isinstance(rate, int | float)
            or not (rate > 0 and math.isfinite(rate))):
        raise ValueError(f"rate must be a positive number of bytes/s or None, not {rate!r}")
    return float(rate)
