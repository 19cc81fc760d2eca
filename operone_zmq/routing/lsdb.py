"""The link-state database (LSDB) and the flooding rules that fill it.

Every broker keeps one :class:`LinkStateDB`: the newest LSA of every origin it
has heard of.  The rules, applied by :meth:`LinkStateDB.install` to an LSA
received from the network (``new`` is the received LSA, ``cur`` the one we
hold for the same origin):

================================= =========================== ===============
situation                         action                      install returns
================================= =========================== ===============
no ``cur``                        store ``new``               True (flood it)
``new.seq > cur.seq``             replace ``cur``             True (flood it)
``new.seq == cur.seq``            ignore (a duplicate)        False
``new.seq < cur.seq``             ignore (sender is behind)   False
origin is us (or a host we        never store; if ``new``     False
advertise) and ``new`` is not     is newer than ours, or has
the LSA we sent                   our seq but other content,
                                  raise our seq floor past
                                  it and mark us for
                                  re-origination
database full (``max_entries``,   refuse                      ProtocolError
at most :data:`MAX_LSDB_ENTRIES`)
and the origin is unknown
more than ``MAX_LINKS_PER_LSA``   cannot happen: such an LSA   --
links                             cannot be built (``LSA``
                                  raises ProtocolError)
================================= =========================== ===============

:meth:`LinkStateDB.install_many` applies the same rules to a batch from one
sender and sorts it into an :class:`InstallResult` (``accepted`` to flood,
``duplicates`` the sender already has, ``older`` ones to answer with our
newer copy, ``refused`` with reasons) instead of raising, so one bad LSA
does not hide what happened to the rest.

Only accepted LSAs are flooded (:func:`flood_targets`, :class:`Flooder`):
an LSA goes to every neighbour except the one it came from, and an LSA we
already had is never sent on, so flooding ends once every node has it.

Sequence numbers and restarts.  A node's first LSA carries the seq passed as
``initial_seq``; each :meth:`LinkStateDB.originate` adds one.  Seed it with
:func:`initial_seq` (wall-clock milliseconds at process start): a restarted
node then starts above every seq its previous incarnation used, as long as
that incarnation originated fewer than 1,000 LSAs per second of uptime
(refresh plus changes is orders of magnitude less), so its new LSAs replace
the old ones everywhere at once.  If the clock went backwards or the node
restarted within the same millisecond, the stale-self rule above repairs it:
the old LSA comes back to us by flooding, we jump past its seq and flood a
newer one.

Ageing.  A stored LSA expires ``lsa.max_age`` seconds after it was installed
unless a newer one replaces it; :meth:`LinkStateDB.expire` removes expired
origins.  Expiry is kept in buckets of :data:`EXPIRY_RESOLUTION` seconds (one
list per bucket, not one float and timer per entry, so 10,000 simulated
brokers x 10,000 entries fit in memory): an entry is never removed before
its expiry time and at most one resolution step after it.  Our own LSAs (and
those we originate for SSH hosts) never expire here: we refresh them every
``max_age * REFRESH_FRACTION`` seconds instead (:meth:`refresh_due`).

Retention of nodes that went away.  An expired LSA is not forgotten at
once: it moves to the *retired* set, with the time it expired, for
``retention`` seconds (default :data:`DEFAULT_DOWN_RETENTION`, hours; the
broker's ``routing.down_retention_s``).  A retired origin is not in the
database (``in``, ``get``, ``lsas``, ``len`` and routing ignore it, and it
is never flooded), but :meth:`LinkStateDB.knows` still answers True and
:meth:`LinkStateDB.retired` gives its last LSA and expiry time, so "known
but unreachable, down since T" can be said about a node dead for an hour
instead of "unknown node" a minute after it died.  A new LSA of the origin
replaces the retired copy at once.  Not retained: our own origins and a last
LSA with neither links nor tools (a withdrawal).  At most
:data:`MAX_RETIRED` origins are retained, the oldest dropped first.

Versions.  ``version`` increments on every change to the stored set;
``topology_version`` only when an origin appears, disappears or changes its
links, so a routing table recomputes on topology changes and not on every
periodic refresh or load report; ``adjacency_version`` only when an origin
appears or disappears or the *set* of its neighbours changes (not a cost),
so SPF throttling can run reachability changes at once and damp cost churn.

No I/O; ``now`` is monotonic seconds passed in by the caller.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import compress, repeat
from operator import attrgetter, is_, is_not, ne, not_
from typing import Final, NamedTuple

from operone_zmq.errors import ProtocolError
from operone_zmq.routing.lsa import (
    DEFAULT_MAX_AGE,
    LSA,
    MAX_LINKS_PER_LSA,
    MAX_MAX_AGE,
    MAX_SEQ,
    LinkInfo,
)

__all__ = [
    "DEFAULT_DOWN_RETENTION",
    "EXPIRY_RESOLUTION",
    "MAX_LSDB_ENTRIES",
    "MAX_RETIRED",
    "REFRESH_FRACTION",
    "Flooder",
    "InstallResult",
    "LinkStateDB",
    "flood_targets",
    "initial_seq",
]

#: Origins one database may hold.  Each entry costs a few hundred bytes
#: (mostly its LSA); 100,000 nodes is ten times the largest mesh we simulate,
#: and a flood of invented origins must stop somewhere.
MAX_LSDB_ENTRIES: Final = 100_000

#: Width of an expiry bucket, seconds.  Far below any LSA lifetime
#: (``MIN_MAX_AGE`` is 5 s) and any heartbeat period, so expiring up to
#: 0.1 s late changes nothing, while entries installed together share one
#: bucket instead of a timer each.
EXPIRY_RESOLUTION: Final = 0.1

#: Seconds an expired origin stays known as "down" (see the module rules):
#: four hours, long enough that an operator who comes back to a dead node
#: after a meeting or a lunch still reads "down since T", short enough that
#: a decommissioned node stops being listed the same day.
DEFAULT_DOWN_RETENTION: Final = 4 * 3600.0

#: Retired origins kept at most: as many as live ones, so a mesh that lost
#: every node still names them all, and a flood of invented origins that
#: expire cannot grow the set beyond what the database itself allowed.
MAX_RETIRED: Final = MAX_LSDB_ENTRIES

#: Fraction of ``max_age`` after which the owner re-originates its LSA.
#: A third means two consecutive refreshes can be lost before it expires.
REFRESH_FRACTION: Final = 1 / 3

#: The bucket lists may hold references to replaced LSAs until their bucket
#: fires; they are compacted when they exceed this many per stored entry
#: (plus :data:`_COMPACT_SLACK`), so a node that re-originates very often
#: cannot make the expiry index grow without bound.
_COMPACT_FACTOR: Final = 4

#: Slack before compaction kicks in, so small databases never compact.
_COMPACT_SLACK: Final = 4096


_origin_of: Final = attrgetter("origin")
_max_age_of: Final = attrgetter("max_age")

# Outcomes of LinkStateDB._install_one (a refusal is its reason string).
_ACCEPTED: Final = "accepted"
_ACCEPTED_NEW_LINKS: Final = "accepted, links changed"
_DUPLICATE: Final = "duplicate"
_OLDER: Final = "older"
_IGNORED: Final = "ignored"


def initial_seq(wall_time: float) -> int:
    """Return a first sequence number from wall-clock seconds (``time.time()``).

    Milliseconds since the epoch: a restarted node starts above the seqs of
    its previous incarnation (see the module docstring).
    """
    return min(MAX_SEQ, max(0, int(wall_time * 1000)))


class InstallResult(NamedTuple):
    """What :meth:`LinkStateDB.install_many` did with a batch of LSAs."""

    #: Stored: flood these to every neighbour except the sender.
    accepted: list[LSA]
    #: Same seq as ours: the sender already has them; do not send them back.
    duplicates: list[LSA]
    #: Older than ours: the sender is behind; send it our copy.
    older: list[LSA]
    #: Over a bound (too many links, database full), with the reason.
    refused: list[tuple[LSA, str]]


class LinkStateDB:
    """The newest LSA per origin, with the install, ageing and origination rules."""

    def __init__(
        self,
        self_id: str,
        initial_seq: int = 1,
        *,
        max_entries: int = MAX_LSDB_ENTRIES,
        retention: float = DEFAULT_DOWN_RETENTION,
    ) -> None:
        if not 0 <= initial_seq <= MAX_SEQ:
            raise ValueError(f"initial_seq must be in [0, {MAX_SEQ}]")
        if not 1 <= max_entries <= MAX_LSDB_ENTRIES:
            raise ValueError(f"max_entries must be in [1, {MAX_LSDB_ENTRIES}]")
        if not (0.0 <= retention < math.inf):
            raise ValueError("retention must be a finite number of seconds >= 0")
        self.self_id = self_id
        self.max_entries = max_entries
        #: Seconds an expired origin stays known (retired) before it is forgotten.
        self.retention = retention
        # Expired origins still known: origin -> (last LSA, when it expired), oldest first.
        self._retired: dict[str, tuple[LSA, float]] = {}
        #: Increments on every change to the stored LSAs.
        self.version = 0
        #: Increments when an origin appears, disappears or changes its links.
        self.topology_version = 0
        #: Increments when an origin appears, disappears or changes its set of neighbours.
        self.adjacency_version = 0
        self._entries: dict[str, LSA] = {}
        # When the stored LSA of each received origin was installed (its keys
        # are stored or retired origins, so bounded by max_entries + MAX_RETIRED).
        self._installed_at: dict[str, float] = {}
        # Origins we originate (ourselves, SSH hosts we advertise): next seq to use.
        self._next_seq: dict[str, int] = {self_id: initial_seq}
        # When each owned origin must be re-originated (monotonic seconds).
        self._refresh_at: dict[str, float] = {}
        # Owned origins for which a stale copy from a previous incarnation was seen.
        self._stale: set[str] = set()
        self._seq_floor: dict[str, int] = {}
        #: Owned origins whose sequence space ran out: when their numbering
        #: restarts (OSPF's wrap: the old copies age out first, everywhere).
        self._wrap_at: dict[str, float] = {}
        #: Applied to every LSA we originate before it is stored (signing).
        self.seal: Callable[[LSA], LSA] | None = None
        #: The neighbour that last sent us a stale copy of one of our own LSAs.
        self.last_stale_from: str | None = None
        # Expiry index: bucket number -> LSAs installed into it; heap of bucket numbers.
        self._buckets: dict[int, list[LSA]] = {}
        self._bucket_heap: list[int] = []
        self._bucket_refs = 0

    # ------------------------------------------------------------ read access
    def get(self, origin: str) -> LSA | None:
        """Return the stored LSA of ``origin``, or None."""
        return self._entries.get(origin)

    def installed_at(self, origin: str) -> float | None:
        """Return when the stored LSA of ``origin`` (or a retired origin's last
        one) was received and installed (the ``now`` of that install), or None
        for our own or an unknown origin."""
        return self._installed_at.get(origin)

    def origins(self) -> list[str]:
        """Return the origins currently stored, in installation order."""
        return list(self._entries)

    def lsas(self) -> Iterator[LSA]:
        """Iterate over the stored LSAs (for database exchange with a new neighbour)."""
        return iter(tuple(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, origin: object) -> bool:
        return origin in self._entries

    def knows(self, origin: str) -> bool:
        """Return whether ``origin`` is stored or retired (expired within ``retention``)."""
        return origin in self._entries or origin in self._retired

    def retired(self, origin: str) -> tuple[LSA, float] | None:
        """Return the last LSA of a retired origin and when it expired, or None."""
        return self._retired.get(origin)

    def retired_origins(self) -> list[str]:
        """Return the retired origins, the longest gone first."""
        return list(self._retired)

    def known_origins(self) -> list[str]:
        """Return every origin this database knows: stored, then retired."""
        return [*self._entries, *self._retired]

    def same_as(self, other: LinkStateDB) -> bool:
        """Return whether ``other`` holds exactly the same LSAs (origins, seqs and content)."""
        return self._entries == other._entries

    @property
    def self_seq_floor(self) -> int:
        """Return the highest seq of a stale LSA about us seen from the network (-1 if none)."""
        return self._seq_floor.get(self.self_id, -1)

    @property
    def owned(self) -> frozenset[str]:
        """Return the origins this database originates (ourselves and advertised SSH hosts)."""
        return frozenset(self._next_seq)

    # ---------------------------------------------------------------- install
    def install(self, lsa: LSA, now: float, received_from: str | None = None) -> bool:
        """Apply the install rules to one received LSA; return True if it must be flooded.

        Raise ProtocolError if it breaks a bound (too many links, database full).
        """
        result = self.install_many((lsa,), now, received_from)
        if result.refused:
            raise ProtocolError(result.refused[0][1])
        return bool(result.accepted)

    def install_many(
        self, lsas: Sequence[LSA], now: float, received_from: str | None = None
    ) -> InstallResult:
        """Apply the install rules to a batch of LSAs from one sender.

        Never raises for one bad LSA: those over a bound are listed in
        ``refused`` (count them against the sender) and the rest of the
        batch is still processed.
        """
        # The simulator pushes 10^8 LSAs through here at 10,000 nodes, so the
        # two common cases run as C-level map/compress passes: duplicates that
        # are the very object we hold, and origins we have never seen.  The
        # rest (and anything unusual) takes the per-LSA loop below.
        entries = self._entries
        get = entries.get
        origins = list(map(_origin_of, lsas))
        curs = list(map(get, origins))
        same = list(map(is_, curs, lsas))
        n_same = same.count(True)
        accepted: list[LSA] = []
        older: list[LSA] = []
        refused: list[tuple[LSA, str]] = []
        if n_same == len(same):  # all duplicates: the tail of every flood
            return InstallResult(accepted, list(lsas), older, refused)
        duplicates: list[LSA] = list(compress(lsas, same)) if n_same else []
        new = list(map(is_, curs, repeat(None)))
        n_new = new.count(True)
        topology_changes = 0
        bulk = False
        if n_new:
            new_origins = list(compress(origins, new))
            if (
                len(set(new_origins)) == n_new
                and self._next_seq.keys().isdisjoint(new_origins)
                and len(entries) + n_new <= self.max_entries
            ):
                accepted = list(compress(lsas, new))
                if self._retired:
                    for origin in new_origins:
                        self._retired.pop(origin, None)
                entries.update(zip(new_origins, accepted, strict=True))
                self.adjacency_version += 1
                self._installed_at.update(zip(new_origins, repeat(now)))
                self._add_expiries(accepted, now)
                topology_changes = n_new
                bulk = True
        if n_same + (n_new if bulk else 0) < len(lsas):
            for lsa, is_same, is_new in zip(lsas, same, new, strict=True):
                if is_same or (bulk and is_new):
                    continue
                outcome = self._install_one(lsa, now, received_from)
                if outcome is _ACCEPTED or outcome is _ACCEPTED_NEW_LINKS:
                    accepted.append(lsa)
                    topology_changes += outcome is _ACCEPTED_NEW_LINKS
                elif outcome is _DUPLICATE:
                    duplicates.append(lsa)
                elif outcome is _OLDER:
                    older.append(lsa)
                elif outcome is not _IGNORED:
                    refused.append((lsa, outcome))
        if accepted:
            self.version += 1
            if topology_changes:
                self.topology_version += 1
            if self._bucket_refs > _COMPACT_FACTOR * len(entries) + _COMPACT_SLACK:
                self._compact()
        return InstallResult(accepted, duplicates, older, refused)

    def _install_one(self, lsa: LSA, now: float, received_from: str | None) -> str:
        """Apply the rules to one LSA; return an outcome constant or a refusal reason."""
        origin = lsa.origin
        cur = self._entries.get(origin)
        owned = self._next_seq
        if cur is not None:
            if lsa.seq < cur.seq:
                return _OLDER
            if lsa.seq == cur.seq and (origin not in owned or lsa == cur):
                return _DUPLICATE
        if origin in owned:
            self._stale_copy_of_ours(lsa, cur, received_from)
            return _IGNORED
        if len(lsa.links) > MAX_LINKS_PER_LSA:
            return f"LSA of {origin!r} has {len(lsa.links)} links, more than {MAX_LINKS_PER_LSA}"
        if cur is None and len(self._entries) >= self.max_entries:
            return (
                f"link-state database full ({self.max_entries} origins); "
                f"refusing new origin {origin!r}"
            )
        links_changed = self._store(lsa, cur)
        self._installed_at[origin] = now
        self._add_expiries((lsa,), now)
        return _ACCEPTED_NEW_LINKS if links_changed else _ACCEPTED

    def _stale_copy_of_ours(self, lsa: LSA, cur: LSA | None, received_from: str | None) -> None:
        origin = lsa.origin
        # A copy older than anything we will send is harmless: ours replaces it.
        if cur is None and lsa.seq < self._next_seq[origin]:
            return
        floor = self._seq_floor.get(origin, -1)
        if lsa.seq > floor:
            self._seq_floor[origin] = lsa.seq
        self._stale.add(origin)
        self.last_stale_from = received_from

    def _store(self, lsa: LSA, cur: LSA | None) -> bool:
        """Store ``lsa`` over ``cur``; return whether the topology changed (versions: caller)."""
        self._entries[lsa.origin] = lsa
        if cur is None:
            if self._retired:
                self._retired.pop(lsa.origin, None)
            self.adjacency_version += 1
            return True
        if cur.links == lsa.links and cur.kind == lsa.kind:
            return False
        if [x.neighbor for x in cur.links] != [x.neighbor for x in lsa.links]:
            self.adjacency_version += 1
        return True

    def _add_expiries(self, lsas: Sequence[LSA], now: float) -> None:
        """Put freshly installed LSAs into their expiry buckets."""
        ages = set(map(_max_age_of, lsas))
        for age in ages:
            bucket = math.ceil((now + age) / EXPIRY_RESOLUTION)
            refs = self._buckets.get(bucket)
            if refs is None:
                refs = self._buckets[bucket] = []
                heapq.heappush(self._bucket_heap, bucket)
            if len(ages) == 1:
                refs.extend(lsas)
            else:
                refs.extend([lsa for lsa in lsas if lsa.max_age == age])
        self._bucket_refs += len(lsas)

    def _compact(self) -> None:
        entries = self._entries
        buckets: dict[int, list[LSA]] = {}
        refs = 0
        for bucket, lsas in self._buckets.items():
            live = [lsa for lsa in lsas if entries.get(lsa.origin) is lsa]
            if live:
                buckets[bucket] = live
                refs += len(live)
        self._buckets = buckets
        self._bucket_heap = sorted(buckets)
        self._bucket_refs = refs

    # ----------------------------------------------------------------- ageing
    def expire(self, now: float) -> list[str]:
        """Remove every entry whose lifetime has passed (retiring it) and forget
        retired origins older than ``retention``; return the removed origins."""
        removed: list[str] = []
        heap = self._bucket_heap
        entries = self._entries
        while heap and heap[0] * EXPIRY_RESOLUTION <= now:
            bucket = heapq.heappop(heap)
            lsas = self._buckets.pop(bucket)
            self._bucket_refs -= len(lsas)
            for lsa in lsas:
                origin = lsa.origin
                if entries.get(origin) is lsa and origin not in self._next_seq:
                    del entries[origin]
                    removed.append(origin)
                    if lsa.links or lsa.tools:
                        self._retire(lsa, now)  # keeps its installed_at
                    else:
                        self._installed_at.pop(origin, None)
        forgot = self._forget_retired(now)
        if removed:
            self.adjacency_version += 1
        if removed or forgot:
            self.version += 1
            self.topology_version += 1
        return removed

    def _retire(self, lsa: LSA, now: float) -> None:
        retired = self._retired
        retired.pop(lsa.origin, None)
        retired[lsa.origin] = (lsa, now)
        while len(retired) > MAX_RETIRED:
            oldest = next(iter(retired))
            del retired[oldest]
            self._installed_at.pop(oldest, None)

    def _forget_retired(self, now: float) -> int:
        retired = self._retired
        limit = now - self.retention
        forgot = 0
        while retired:
            origin, (_, since) = next(iter(retired.items()))
            if since > limit:
                break
            del retired[origin]
            self._installed_at.pop(origin, None)
            forgot += 1
        return forgot

    def next_deadline(self) -> float | None:
        """Return when :meth:`expire` or a refresh is next due, or None if never."""
        deadline: float | None = None
        if self._bucket_heap:
            deadline = self._bucket_heap[0] * EXPIRY_RESOLUTION
        if self._retired:
            first = next(iter(self._retired.values()))[1] + self.retention
            deadline = first if deadline is None else min(deadline, first)
        for at in self._refresh_at.values():
            if deadline is None or at < deadline:
                deadline = at
        return deadline

    @property
    def needs_reorigination(self) -> bool:
        """Return whether a stale copy of one of our LSAs was seen (re-originate now)."""
        return bool(self._stale)

    def refresh_due(self, now: float) -> list[str]:
        """Return the owned origins to re-originate now (refresh due, or stale copy seen)."""
        due = {origin for origin, at in self._refresh_at.items() if at <= now}
        due |= self._stale
        return sorted(due)

    # ------------------------------------------------------------ origination
    def originate(
        self,
        links: Iterable[LinkInfo],
        tools: Iterable[str],
        capabilities: Iterable[str],
        load: float,
        workers: int,
        now: float,
        *,
        origin: str | None = None,
        public_key: str = "",
        kind: str = "broker",
        name: str = "",
        max_age: float = DEFAULT_MAX_AGE,
        incarnation: int = 0,
    ) -> LSA:
        """Build, store and return our next LSA (or that of an SSH host we advertise).

        The seq is one more than the last one we used, and above any stale
        copy seen from a previous incarnation.  Flood the result to every
        neighbour.  An SSH host must be advertised by exactly one broker:
        two would keep superseding each other's LSAs.
        """
        origin = self.self_id if origin is None else origin
        if origin not in self._next_seq:
            self._next_seq[origin] = self._next_seq[self.self_id]
        wrap_at = self._wrap_at.get(origin)
        if wrap_at is not None:
            if now < wrap_at:
                raise ProtocolError(
                    f"sequence number space of {origin!r} exhausted: numbering restarts"
                    f" in {wrap_at - now:.0f} s, when the old copies have aged out")
            # The old copies have aged out everywhere: start again from 1.
            del self._wrap_at[origin]
            self._next_seq[origin] = 1
            self._seq_floor.pop(origin, None)
            if self._entries.get(origin) is not None and self._entries[origin].seq > 1:
                del self._entries[origin]
        seq = max(self._next_seq[origin], self._seq_floor.get(origin, -1) + 1)
        cur = self._entries.get(origin)
        if cur is not None:
            seq = max(seq, cur.seq + 1)
        if seq > MAX_SEQ:
            # OSPF's way: stop refreshing, let every copy age out (max_age of
            # the newest one, from when it was last installed anywhere), then
            # start again; never a permanent lockout.
            self._wrap_at[origin] = now + max(MAX_MAX_AGE, cur.max_age if cur else 0.0)
            self._refresh_at.pop(origin, None)
            raise ProtocolError(f"sequence number space of {origin!r} exhausted")
        lsa = LSA(
            origin=origin,
            seq=seq,
            links=tuple(links),
            tools=tuple(tools),
            capabilities=tuple(capabilities),
            load=load,
            workers=workers,
            public_key=public_key,
            kind=kind,
            name=name,
            max_age=max_age,
            incarnation=incarnation,
        )
        if self.seal is not None:
            lsa = self.seal(lsa)
        if cur is None and len(self._entries) >= self.max_entries:
            raise ProtocolError(f"link-state database full ({self.max_entries} origins)")
        if self._store(lsa, cur):
            self.topology_version += 1
        self._installed_at.pop(origin, None)  # ours now, not received
        self.version += 1
        self._next_seq[origin] = seq + 1
        self._refresh_at[origin] = now + max_age * REFRESH_FRACTION
        self._stale.discard(origin)
        return lsa

    def withdraw(self, origin: str, now: float) -> LSA:
        """Stop advertising an SSH host: return a last, link-less LSA to flood; it then ages out."""
        if origin == self.self_id:
            raise ValueError("a node cannot withdraw itself; originate an LSA without links")
        if origin not in self._next_seq:
            raise KeyError(origin)
        cur = self._entries.get(origin)
        lsa = self.originate(
            (),
            (),
            (),
            0.0,
            0,
            now,
            origin=origin,
            kind=cur.kind if cur is not None else "ssh",
            name=cur.name if cur is not None else "",
            max_age=cur.max_age if cur is not None else DEFAULT_MAX_AGE,
        )
        del self._next_seq[origin]
        del self._refresh_at[origin]
        self._seq_floor.pop(origin, None)
        self._add_expiries((lsa,), now)
        return lsa


def flood_targets(
    neighbors: Iterable[str], received_from: str | None, *, installed: bool = True
) -> list[str]:
    """Return the neighbours to forward an LSA to: none unless it was installed,
    else all except the one it came from, sorted."""
    if not installed:
        return []
    return sorted(n for n in neighbors if n != received_from)


class Flooder:
    """Per-neighbour flooding queues with duplicate suppression.

    Rules (those of IS-IS's send flags, batched):

    * :meth:`installed` queues an accepted LSA for every neighbour except
      the sender; a newer LSA of the same origin replaces a queued older one.
    * :meth:`already_has` records that a neighbour sent us the same LSA
      (a duplicate), so it is not sent back to it.
    * :meth:`sync` queues a whole database for one new neighbour (database
      exchange when a link comes up, so a healed partition converges);
      :meth:`queue_for` queues LSAs for one neighbour (our newer copies for
      a neighbour that sent older ones).
    * :meth:`take` returns and clears everything queued, per neighbour.

    The queue is keyed by origin, so it never holds more entries than the
    database it feeds, and a neighbour's batch is at most one LSA per origin
    plus one sync snapshot.
    """

    def __init__(self, neighbors: Iterable[str] = ()) -> None:
        self._neighbors: dict[str, None] = dict.fromkeys(neighbors)
        # origin -> newest LSA to flood, and the neighbour it came from.
        self._pending: dict[str, LSA] = {}
        self._from: dict[str, str | None] = {}
        # origin -> other neighbours that sent us the pending LSA (duplicates).
        self._holders: dict[str, set[str]] = {}
        # neighbour -> LSAs for it alone (database exchange, newer copies).
        self._direct: dict[str, list[LSA]] = {}

    @property
    def neighbors(self) -> list[str]:
        """Return the current neighbours."""
        return list(self._neighbors)

    def add_neighbor(self, neighbor: str) -> None:
        """Start flooding to ``neighbor``."""
        self._neighbors[neighbor] = None

    def remove_neighbor(self, neighbor: str) -> None:
        """Stop flooding to ``neighbor`` and drop what was queued for it alone."""
        self._neighbors.pop(neighbor, None)
        self._direct.pop(neighbor, None)

    def installed(self, lsas: Sequence[LSA], received_from: str | None) -> None:
        """Queue LSAs accepted by the database, to all neighbours but ``received_from``."""
        origins = list(map(_origin_of, lsas))
        if self._holders:
            # A newer LSA replaces a queued one: who held the old one no longer matters.
            for origin in self._holders.keys() & set(origins):
                del self._holders[origin]
        # _pending and _from always have the same keys in the same order.
        self._pending.update(zip(origins, lsas, strict=True))
        self._from.update(zip(origins, repeat(received_from), strict=False))

    def already_has(self, lsas: Sequence[LSA], neighbor: str) -> None:
        """Record that ``neighbor`` sent us these LSAs, so they are not sent back to it."""
        pending = self._pending
        if not pending:
            return
        origins = list(map(_origin_of, lsas))
        queued = list(map(pending.get, origins))
        # C-level pass first: most duplicates arrive after we already flushed.
        present = list(map(is_not, queued, repeat(None)))
        if not any(present):
            return
        holders = self._holders
        for origin, lsa, q in compress(zip(origins, lsas, queued, strict=True), present):
            if q is not None and (q is lsa or q.seq == lsa.seq):
                holders.setdefault(origin, set()).add(neighbor)

    def queue_for(self, neighbor: str, lsas: Iterable[LSA]) -> None:
        """Queue LSAs for one neighbour only (e.g. our newer copies for a neighbour
        that sent us older ones)."""
        if neighbor in self._neighbors:
            self._direct.setdefault(neighbor, []).extend(lsas)

    def sync(self, neighbor: str, lsas: Iterable[LSA]) -> None:
        """Queue a full database snapshot for one (new) neighbour."""
        self.queue_for(neighbor, lsas)

    def __len__(self) -> int:
        return len(self._pending) + sum(len(v) for v in self._direct.values())

    def take(self) -> dict[str, list[LSA]]:
        """Return and clear the queued LSAs, as ``{neighbour: [LSA, ...]}`` (no empty lists)."""
        out: dict[str, list[LSA]] = {}
        lsas = list(self._pending.values())
        senders = list(self._from.values())
        # Per neighbour, the origins it already holds (it sent us a duplicate).
        skip: dict[str, set[str]] = {}
        for origin, holders in self._holders.items():
            for holder in holders:
                skip.setdefault(holder, set()).add(origin)
        direct = self._direct
        for neighbor in self._neighbors:
            batch = direct.pop(neighbor, [])
            # C-level passes: everything not received from this neighbour...
            batch.extend(compress(lsas, map(ne, senders, repeat(neighbor))))
            held = skip.get(neighbor)
            if held:
                # ...minus what it sent us as a duplicate.
                keep = map(not_, map(held.__contains__, map(_origin_of, batch)))
                batch = list(compress(batch, keep))
            if batch:
                out[neighbor] = batch
        self._pending = {}
        self._from = {}
        self._holders = {}
        self._direct = {}
        return out
