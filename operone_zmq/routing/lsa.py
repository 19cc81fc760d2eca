"""Link-State Advertisements: what one node tells the mesh about itself.

An :class:`LSA` is immutable and validates itself when built, so an LSA that
exists is an LSA that may be installed and flooded.  Its fields:

========== ===================================================================
origin     the node the LSA describes (a broker id, or an SSH host id)
seq        sequence number; a higher one replaces a lower one everywhere
links      one :class:`LinkInfo` per neighbour: measured cost (RTT EWMA, ms),
           bandwidth estimate (MB/s, 0 = unknown) and loss (fraction 0..1)
tools      tool names offered by the origin's workers
capabilities
           capability labels (``gpu``, ``linux``...), used for job placement
load       the origin's current load (jobs in flight per worker, >= 0)
workers    number of live workers
public_key the origin's public key(s) as text (may be empty)
kind       ``"broker"``, or ``"ssh"`` for a legacy SSH host that a broker
           advertises on its behalf (the broker originates both LSAs)
name       human-readable node name (may be empty)
max_age    seconds the LSA lives in a database if it is not refreshed
sig        the origin's Ed25519 signature over the other fields (64 bytes;
           empty when unsigned), see :mod:`operone_zmq.protocol.signature`
incarnation
           the origin broker's run (random 63-bit, new at each start; 0 =
           not said, an older broker): a different one in a newer LSA means
           the node restarted, and what it ran before is gone
features   protocol features the origin broker has (revision 8: ``"mac"``,
           it verifies pairwise MACs), believed only under ``xsig``
xsig       the origin's Ed25519 signature over the fields, incarnation and
           features (64 bytes; empty without features); an LSA whose ``xsig``
           does not verify is taken without its features
========== ===================================================================

Wire form (:meth:`LSA.to_wire` / :meth:`LSA.from_wire`) is a plain dict of
msgpack-friendly values, keyed by the field names above, except that each
link is a 4-element list ``[neighbor, cost, bandwidth, loss]`` to keep a
4096-link LSA small.  Decoding rules:

* the value must be a dict with string keys, at most :data:`MAX_WIRE_KEYS`;
* ``origin``, ``seq``, ``links``, ``tools``, ``capabilities``, ``load`` and
  ``workers`` are required; ``public_key``, ``kind``, ``name``, ``max_age``
  and ``incarnation`` are optional and take their defaults (``incarnation``
  is written only when not 0); so is ``sig`` (bytes, empty or exactly 64),
  and so are ``features`` and ``xsig`` (written only with features);
* unknown keys are ignored, so a later version may add an optional field
  without breaking older brokers (a mesh is never upgraded all at once);
* every value is type-checked (``bool`` is not an ``int``; ints are accepted
  where floats are expected, NaN and infinities are not) and size-checked
  against the bounds below;
* any violation raises :class:`~operone_zmq.errors.ProtocolError` naming the
  field, never ``KeyError``/``TypeError``/``AssertionError``.

No I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

from operone_zmq.errors import ProtocolError

__all__ = [
    "DEFAULT_MAX_AGE",
    "KINDS",
    "LSA",
    "MAX_CAPABILITIES_PER_LSA",
    "MAX_ID_LEN",
    "MAX_KEY_LEN",
    "MAX_LINKS_PER_LSA",
    "MAX_LINK_COST_MS",
    "MAX_MAX_AGE",
    "MAX_NAME_LEN",
    "MAX_SEQ",
    "MAX_TOOLS_PER_LSA",
    "MAX_WIRE_KEYS",
    "MAX_WORKERS",
    "MIN_MAX_AGE",
    "LinkInfo",
]

#: Longest node id, in characters.  Node ids become ZeroMQ routing ids,
#: which are limited to 255 bytes.
MAX_ID_LEN: Final = 255

#: Longest node name, tool name or capability label.  Names are for humans
#: and lookup keys; anything longer is a bug or an attack.
MAX_NAME_LEN: Final = 255

#: Longest ``public_key`` text.  A Z85 Curve key is 40 characters and a
#: base64 Ed25519 key 44; this leaves room for a few keys and a label.
MAX_KEY_LEN: Final = 1024

#: Links one LSA may carry.  A PC links to a handful of brokers; 4096 is
#: far beyond a full mesh of a large cluster, and it caps one LSA's size at
#: about 200 KB on the wire.
MAX_LINKS_PER_LSA: Final = 4096

#: Tools one node may advertise; a generous tool pack has dozens.
MAX_TOOLS_PER_LSA: Final = 1024

#: Capability labels one node may advertise; real nodes have a handful.
MAX_CAPABILITIES_PER_LSA: Final = 256

#: Workers one node may report; far more processes than any PC runs.
MAX_WORKERS: Final = 65_536

#: Largest sequence number: msgpack's signed 64-bit integer range.  Seeded
#: from wall-clock milliseconds (about 1.7e12 today) and bumped once per
#: origination, it lasts for millions of years.
MAX_SEQ: Final = 2**63 - 1

#: Highest link cost accepted, in ms.  An RTT of an hour is a broken
#: measurement, not a link; refusing it keeps path sums far from overflow.
MAX_LINK_COST_MS: Final = 3_600_000.0

#: Shortest allowed LSA lifetime, seconds.  An LSA must outlive its own
#: flooding across a large mesh (under a second in the simulator at 10,000
#: nodes) with a wide margin.
MIN_MAX_AGE: Final = 5.0

#: Longest allowed LSA lifetime, seconds.  A dead node's LSA lingers until
#: it expires; an hour bounds how long a stale entry can occupy a database.
MAX_MAX_AGE: Final = 3600.0

#: Default LSA lifetime, seconds.  Owners refresh at a third of it (see
#: ``lsdb.REFRESH_FRACTION``), so two refreshes can be lost before expiry.
DEFAULT_MAX_AGE: Final = 60.0

#: Top-level keys accepted in a wire LSA (known ones plus future optional
#: ones); bounds the work spent on a hostile dict.
MAX_WIRE_KEYS: Final = 32

#: Length of an Ed25519 signature (the ``sig`` and ``xsig`` fields).
_SIG_LEN: Final = 64

#: Protocol features one LSA may name (revision 8 names one): room for
#: later revisions, small enough that a hostile list costs nothing.
MAX_FEATURES: Final = 16

#: The kinds of node an LSA may describe.
KINDS: Final = frozenset({"broker", "ssh"})

_REQUIRED: Final = ("origin", "seq", "links", "tools", "capabilities", "load", "workers")


def _bad(message: str) -> ProtocolError:
    return ProtocolError(f"invalid LSA: {message}")


def _check_id(value: object, what: str) -> str:
    if type(value) is not str:
        raise _bad(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise _bad(f"{what} must not be empty")
    if len(value) > MAX_ID_LEN:
        raise _bad(f"{what} is longer than {MAX_ID_LEN} characters")
    return value


def _check_text(value: object, what: str, limit: int) -> str:
    if type(value) is not str:
        raise _bad(f"{what} must be a string, not {type(value).__name__}")
    if len(value) > limit:
        raise _bad(f"{what} is longer than {limit} characters")
    return value


def _check_number(value: object, what: str, lo: float, hi: float) -> float:
    if type(value) is not float and type(value) is not int:
        raise _bad(f"{what} must be a number, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or not lo <= number <= hi:
        raise _bad(f"{what} must be a finite number in [{lo}, {hi}], got {value!r}")
    return number


def _check_int(value: object, what: str, lo: int, hi: int) -> int:
    if type(value) is not int:
        raise _bad(f"{what} must be an integer, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise _bad(f"{what} must be in [{lo}, {hi}], got {value}")
    return value


def _check_names(value: object, what: str, limit: int) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise _bad(f"{what} must be a list, not {type(value).__name__}")
    if len(value) > limit:
        raise _bad(f"{what} has {len(value)} entries, more than {limit}")
    names = tuple(value)
    for name in names:
        if type(name) is not str or not name or len(name) > MAX_NAME_LEN:
            raise _bad(f"{what} entries must be non-empty strings of at most {MAX_NAME_LEN}")
    if len(set(names)) != len(names):
        raise _bad(f"{what} contains duplicates")
    return names


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """One advertised link: the neighbour and what the origin measured on it."""

    neighbor: str
    #: Round-trip time, exponentially weighted moving average, in ms.
    cost: float
    #: Bandwidth estimate in MB/s; 0 means unknown.
    bandwidth: float = 0.0
    #: Packet loss as a fraction 0..1 (never percent).
    loss: float = 0.0

    def __post_init__(self) -> None:
        _check_id(self.neighbor, "link neighbor")
        what = f"link to {self.neighbor!r}"
        set_ = object.__setattr__
        set_(self, "cost", _check_number(self.cost, f"cost of {what}", 0.0, MAX_LINK_COST_MS))
        set_(self, "bandwidth", _check_number(self.bandwidth, f"bandwidth of {what}", 0, math.inf))
        set_(self, "loss", _check_number(self.loss, f"loss of {what}", 0.0, 1.0))

    def to_wire(self) -> list[Any]:
        """Return the link as ``[neighbor, cost, bandwidth, loss]``."""
        return [self.neighbor, self.cost, self.bandwidth, self.loss]

    @classmethod
    def from_wire(cls, value: object) -> LinkInfo:
        """Decode ``[neighbor, cost, bandwidth, loss]``, raising ProtocolError if malformed."""
        if not isinstance(value, (list, tuple)) or len(value) != 4:
            raise _bad("each link must be a list [neighbor, cost, bandwidth, loss]")
        neighbor, cost, bandwidth, loss = value
        _check_id(neighbor, "link neighbor")
        return cls(
            neighbor,
            _check_number(cost, "link cost", 0.0, MAX_LINK_COST_MS),
            _check_number(bandwidth, "link bandwidth", 0.0, math.inf),
            _check_number(loss, "link loss", 0.0, 1.0),
        )


@dataclass(frozen=True, slots=True)
class LSA:
    """A link-state advertisement; immutable and valid by construction."""

    origin: str
    seq: int
    links: tuple[LinkInfo, ...]
    tools: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    load: float = 0.0
    workers: int = 0
    public_key: str = ""
    kind: str = "broker"
    name: str = ""
    max_age: float = DEFAULT_MAX_AGE
    #: The origin's signature (not part of equality: the same content signed
    #: twice is the same LSA).
    sig: bytes = field(default=b"", compare=False, repr=False)
    incarnation: int = 0
    #: Protocol features (revision 8), and the signature that covers them
    #: (neither part of equality: they say what the origin can, not where
    #: it is).
    features: tuple[str, ...] = field(default=(), compare=False)
    xsig: bytes = field(default=b"", compare=False, repr=False)
    # Derived, not part of equality or hashing: neighbour -> link, for the
    # both-ends rule (looked up once per link when a graph is built).
    _by_neighbor: dict[str, LinkInfo] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        _check_id(self.origin, "origin")
        _check_int(self.seq, "seq", 0, MAX_SEQ)
        links: object = self.links
        if not isinstance(links, tuple):
            if not isinstance(links, list):
                raise _bad("links must be a tuple of LinkInfo")
            object.__setattr__(self, "links", tuple(links))
        if len(self.links) > MAX_LINKS_PER_LSA:
            raise _bad(f"{len(self.links)} links, more than {MAX_LINKS_PER_LSA}")
        by_neighbor: dict[str, LinkInfo] = {}
        for link in self.links:
            if type(link) is not LinkInfo:
                raise _bad("links must contain LinkInfo objects")
            if link.neighbor == self.origin:
                raise _bad(f"{self.origin!r} advertises a link to itself")
            by_neighbor[link.neighbor] = link
        if len(by_neighbor) != len(self.links):
            raise _bad(f"{self.origin!r} advertises the same neighbour twice")
        object.__setattr__(self, "_by_neighbor", by_neighbor)
        object.__setattr__(self, "tools", _check_names(self.tools, "tools", MAX_TOOLS_PER_LSA))
        object.__setattr__(
            self,
            "capabilities",
            _check_names(self.capabilities, "capabilities", MAX_CAPABILITIES_PER_LSA),
        )
        object.__setattr__(self, "load", _check_number(self.load, "load", 0.0, math.inf))
        _check_int(self.workers, "workers", 0, MAX_WORKERS)
        _check_text(self.public_key, "public_key", MAX_KEY_LEN)
        if self.kind not in KINDS:
            raise _bad(f"kind must be one of {sorted(KINDS)}, got {self.kind!r}")
        _check_text(self.name, "name", MAX_NAME_LEN)
        object.__setattr__(
            self, "max_age", _check_number(self.max_age, "max_age", MIN_MAX_AGE, MAX_MAX_AGE)
        )
        _check_int(self.incarnation, "incarnation", 0, MAX_SEQ)
        object.__setattr__(
            self, "features", _check_names(self.features, "features", MAX_FEATURES))

    @property
    def neighbors(self) -> frozenset[str]:
        """The set of neighbour ids this LSA advertises links to."""
        return frozenset(self._by_neighbor)

    def link_to(self, neighbor: str) -> LinkInfo | None:
        """Return the advertised link to ``neighbor``, or None."""
        return self._by_neighbor.get(neighbor)

    def same_content(self, other: LSA) -> bool:
        """Return whether ``other`` says the same as this LSA, ignoring ``seq``."""
        return (
            self.origin == other.origin
            and self.links == other.links
            and self.tools == other.tools
            and self.capabilities == other.capabilities
            and self.load == other.load
            and self.workers == other.workers
            and self.public_key == other.public_key
            and self.kind == other.kind
            and self.name == other.name
            and self.max_age == other.max_age
            and self.incarnation == other.incarnation
        )

    def to_wire(self) -> dict[str, Any]:
        """Return the LSA as a dict of msgpack-friendly values."""
        wire: dict[str, Any] = {
            "origin": self.origin,
            "seq": self.seq,
            "links": [link.to_wire() for link in self.links],
            "tools": list(self.tools),
            "capabilities": list(self.capabilities),
            "load": self.load,
            "workers": self.workers,
            "public_key": self.public_key,
            "kind": self.kind,
            "name": self.name,
            "max_age": self.max_age,
            **({"sig": self.sig} if self.sig else {}),
        }
        if self.incarnation:
            wire["incarnation"] = self.incarnation
        if self.features:
            wire["features"] = list(self.features)
            if self.xsig:
                wire["xsig"] = self.xsig
        return wire

    @classmethod
    def from_wire(cls, value: object) -> LSA:
        """Decode a wire dict strictly, raising ProtocolError if anything is wrong."""
        if not isinstance(value, dict):
            raise _bad(f"expected a dict, got {type(value).__name__}")
        if len(value) > MAX_WIRE_KEYS:
            raise _bad(f"{len(value)} keys, more than {MAX_WIRE_KEYS}")
        for key in value:
            if type(key) is not str:
                raise _bad("keys must be strings")
        missing = [key for key in _REQUIRED if key not in value]
        if missing:
            raise _bad(f"missing field(s) {', '.join(missing)}")
        links = value["links"]
        if not isinstance(links, (list, tuple)):
            raise _bad(f"links must be a list, not {type(links).__name__}")
        if len(links) > MAX_LINKS_PER_LSA:
            raise _bad(f"{len(links)} links, more than {MAX_LINKS_PER_LSA}")
        kind = value.get("kind", "broker")
        _check_text(kind, "kind", MAX_NAME_LEN)
        sig = value.get("sig", b"")
        if type(sig) is not bytes or len(sig) not in (0, _SIG_LEN):
            raise _bad(f"sig must be {_SIG_LEN} bytes")
        xsig = value.get("xsig", b"")
        if type(xsig) is not bytes or len(xsig) not in (0, _SIG_LEN):
            raise _bad(f"xsig must be {_SIG_LEN} bytes")
        return cls(
            origin=_check_id(value["origin"], "origin"),
            seq=_check_int(value["seq"], "seq", 0, MAX_SEQ),
            links=tuple(LinkInfo.from_wire(link) for link in links),
            tools=_check_names(value["tools"], "tools", MAX_TOOLS_PER_LSA),
            capabilities=_check_names(
                value["capabilities"], "capabilities", MAX_CAPABILITIES_PER_LSA
            ),
            load=_check_number(value["load"], "load", 0.0, math.inf),
            workers=_check_int(value["workers"], "workers", 0, MAX_WORKERS),
            public_key=_check_text(value.get("public_key", ""), "public_key", MAX_KEY_LEN),
            kind=kind,
            name=_check_text(value.get("name", ""), "name", MAX_NAME_LEN),
            max_age=_check_number(
                value.get("max_age", DEFAULT_MAX_AGE), "max_age", MIN_MAX_AGE, MAX_MAX_AGE
            ),
            sig=sig,
            incarnation=_check_int(value.get("incarnation", 0), "incarnation", 0, MAX_SEQ),
            features=_check_names(value.get("features", ()), "features", MAX_FEATURES),
            xsig=xsig,
        )
