"""Link-state database rules: seq, age, self-LSAs, bounds, flooding; LSA wire form."""

from __future__ import annotations

import math

import pytest

from operone_zmq.errors import ProtocolError
from operone_zmq.routing.lsa import (
    LSA,
    MAX_LINKS_PER_LSA,
    LinkInfo,
)
from operone_zmq.routing.lsdb import (
    EXPIRY_RESOLUTION,
    REFRESH_FRACTION,
    Flooder,
    LinkStateDB,
    flood_targets,
    initial_seq,
)
from operone_zmq.testing import FakeClock


def lsa(origin: str, seq: int, *links: tuple[str, float], max_age: float = 60.0) -> LSA:
    """Build an LSA with the given links."""
    return LSA(origin, seq, tuple(LinkInfo(n, c) for n, c in links), max_age=max_age)


# ----------------------------------------------------------------- seq rules
def test_first_lsa_of_an_origin_is_installed() -> None:
    """An LSA of an unknown origin is stored and must be flooded."""
    db = LinkStateDB("me")
    assert db.install(lsa("a", 5, ("b", 1.0)), now=0.0, received_from="b")
    assert db.get("a") == lsa("a", 5, ("b", 1.0))
    assert db.origins() == ["a"]


def test_newer_seq_replaces() -> None:
    """A higher seq replaces the stored LSA."""
    db = LinkStateDB("me")
    db.install(lsa("a", 5), 0.0, "x")
    assert db.install(lsa("a", 6, ("b", 2.0)), 1.0, "x")
    stored = db.get("a")
    assert stored is not None
    assert stored.seq == 6


@pytest.mark.parametrize("seq", [5, 4, 0])
def test_equal_or_older_seq_is_ignored(seq: int) -> None:
    """An equal or lower seq changes nothing and is not flooded again."""
    db = LinkStateDB("me")
    db.install(lsa("a", 5, ("b", 1.0)), 0.0, "x")
    version = db.version
    assert not db.install(lsa("a", seq, ("c", 9.0)), 1.0, "y")
    stored = db.get("a")
    assert stored is not None
    assert stored.seq == 5
    assert stored.links[0].neighbor == "b"
    assert db.version == version


def test_install_many_sorts_a_batch() -> None:
    """A batch is split into accepted, duplicates and older (ours is newer)."""
    db = LinkStateDB("me")
    held = lsa("a", 5)
    db.install(held, 0.0, "x")
    db.install(lsa("b", 5), 0.0, "x")
    result = db.install_many([held, lsa("b", 4), lsa("c", 1), lsa("b", 5)], 1.0, "y")
    assert [x.origin for x in result.accepted] == ["c"]
    assert [x.origin for x in result.duplicates] == ["a", "b"]
    assert [(x.origin, x.seq) for x in result.older] == [("b", 4)]
    assert result.refused == []


@pytest.mark.parametrize(
    ("order", "stored", "accepted", "older"),
    [((1, 2), 2, [1, 2], []), ((2, 1), 2, [2], [1]), ((1, 1), 1, [1], [])],
)
def test_install_many_same_origin_twice_in_a_batch(
    order: tuple[int, int], stored: int, accepted: list[int], older: list[int]
) -> None:
    """Two LSAs of one new origin in a batch are applied in order, the newest kept."""
    db = LinkStateDB("me")
    result = db.install_many([lsa("a", seq) for seq in order], 0.0, "x")
    current = db.get("a")
    assert current is not None
    assert current.seq == stored
    assert [x.seq for x in result.accepted] == accepted
    assert [x.seq for x in result.older] == older


def test_versions_track_changes() -> None:
    """version moves on every change; topology_version only when links or membership change."""
    db = LinkStateDB("me")
    db.install(lsa("a", 1, ("b", 1.0)), 0.0)
    v, tv = db.version, db.topology_version
    db.install(LSA("a", 2, (LinkInfo("b", 1.0),), load=3.0), 0.0)  # load only
    assert db.version > v
    assert db.topology_version == tv
    db.install(lsa("a", 3, ("b", 2.0)), 0.0)  # cost changed
    assert db.topology_version > tv


# ----------------------------------------------------------------- ageing
def test_entries_expire_after_max_age() -> None:
    """An unrefreshed LSA is removed once install time + max_age has passed."""
    clock = FakeClock(100.0)
    db = LinkStateDB("me")
    db.install(lsa("a", 1, max_age=30.0), clock(), "x")
    db.install(lsa("b", 1, max_age=60.0), clock(), "x")
    deadline = db.next_deadline()
    assert deadline is not None
    assert 130.0 <= deadline <= 130.0 + EXPIRY_RESOLUTION + 1e-9
    assert db.expire(clock.advance(29.9)) == []
    assert db.expire(clock.advance(0.1 + EXPIRY_RESOLUTION)) == ["a"]
    assert "a" not in db
    assert "b" in db
    assert db.expire(clock.advance(31.0)) == ["b"]
    assert len(db) == 0


def test_refresh_restarts_the_lifetime() -> None:
    """A newer LSA installed later lives max_age from its own install time."""
    db = LinkStateDB("me")
    db.install(lsa("a", 1, max_age=30.0), 0.0)
    db.install(lsa("a", 2, max_age=30.0), 20.0)
    assert db.expire(31.0) == []
    assert db.expire(50.0 + EXPIRY_RESOLUTION) == ["a"]


def test_expired_origin_can_come_back() -> None:
    """After expiry the same origin (even the same seq) is accepted as new."""
    db = LinkStateDB("me")
    first = lsa("a", 7, max_age=10.0)
    db.install(first, 0.0)
    assert db.expire(11.0) == ["a"]
    assert db.install(first, 12.0)
    assert db.expire(21.0) == []
    assert db.expire(22.1) == ["a"]


def test_expiry_index_stays_bounded_under_fast_refresh() -> None:
    """Many refreshes of one origin do not grow the expiry index without end."""
    db = LinkStateDB("me")
    for seq in range(1, 20_000):
        db.install(lsa("a", seq), seq * 0.001)
    assert db._bucket_refs < 20_000
    assert db.expire(1000.0) == ["a"]


# ----------------------------------------------------------------- our own LSAs
def test_originate_increments_seq_from_initial() -> None:
    """Our LSAs start at initial_seq and go up by one, and are stored locally."""
    db = LinkStateDB("me", initial_seq=1000)
    first = db.originate([LinkInfo("a", 1.0)], ["echo"], ["gpu"], 0.5, 2, now=0.0)
    second = db.originate([LinkInfo("a", 1.5)], ["echo"], ["gpu"], 0.5, 2, now=1.0)
    assert (first.seq, second.seq) == (1000, 1001)
    assert db.get("me") is second
    assert second.tools == ("echo",)
    assert second.capabilities == ("gpu",)


def test_initial_seq_from_wall_clock_orders_restarts() -> None:
    """A later start gets a larger first seq (milliseconds since the epoch)."""
    assert initial_seq(1_700_000_000.0) == 1_700_000_000_000
    assert initial_seq(1_700_000_001.0) > initial_seq(1_700_000_000.0) + 999


def test_stale_self_lsa_from_previous_incarnation_raises_floor() -> None:
    """A copy of our LSA with a higher seq is not stored; we jump past it."""
    db = LinkStateDB("me", initial_seq=10)
    db.originate([], [], [], 0.0, 1, now=0.0)
    assert db.self_seq_floor == -1
    stale = lsa("me", 500, ("ghost", 1.0))
    assert not db.install(stale, 1.0, received_from="a")
    own = db.get("me")
    assert own is not None
    assert own.seq == 10
    assert db.self_seq_floor == 500
    assert db.needs_reorigination
    assert db.last_stale_from == "a"
    assert db.refresh_due(1.0) == ["me"]
    fresh = db.originate([], [], [], 0.0, 1, now=1.0)
    assert fresh.seq == 501
    assert not db.needs_reorigination


def test_same_seq_different_content_about_us_is_stale() -> None:
    """Our seq with other content comes from a previous incarnation too."""
    db = LinkStateDB("me", initial_seq=10)
    db.originate([], [], [], 0.0, 1, now=0.0)
    assert not db.install(lsa("me", 10, ("ghost", 1.0)), 1.0, "a")
    assert db.needs_reorigination
    assert db.originate([], [], [], 0.0, 1, now=1.0).seq == 11


def test_echo_of_our_own_lsa_is_a_duplicate() -> None:
    """Our own LSA flooded back to us is an ordinary duplicate."""
    db = LinkStateDB("me")
    ours = db.originate([LinkInfo("a", 1.0)], [], [], 0.0, 1, now=0.0)
    copy = LSA.from_wire(ours.to_wire())
    result = db.install_many([ours, copy], 1.0, "a")
    assert len(result.duplicates) == 2
    assert not db.needs_reorigination


def test_stale_self_before_first_origination() -> None:
    """A stale LSA about us seen before we originated still raises the floor."""
    db = LinkStateDB("me", initial_seq=10)
    assert not db.install(lsa("me", 3), 0.0, "a")  # older than anything we will send
    assert not db.needs_reorigination
    assert not db.install(lsa("me", 12), 0.0, "a")
    assert db.originate([], [], [], 0.0, 1, now=0.0).seq == 13


def test_own_lsa_does_not_expire_but_refresh_is_due() -> None:
    """Our own LSA never ages out locally; refresh_due asks for it in time."""
    db = LinkStateDB("me")
    db.originate([], [], [], 0.0, 1, now=0.0, max_age=60.0)
    assert db.next_deadline() == pytest.approx(60.0 * REFRESH_FRACTION)
    assert db.refresh_due(19.0) == []
    assert db.refresh_due(20.0) == ["me"]
    assert db.expire(1000.0) == []
    assert "me" in db


def test_ssh_host_advertised_and_withdrawn() -> None:
    """A broker originates an SSH host's LSA; withdrawing floods a link-less one that ages out."""
    db = LinkStateDB("me", initial_seq=100)
    host = db.originate([LinkInfo("me", 5.0)], ["shell"], [], 0.0, 0, 0.0, origin="h1", kind="ssh")
    assert host.kind == "ssh"
    assert host.seq == 100
    assert "h1" in db.owned
    last = db.withdraw("h1", now=1.0)
    assert last.links == ()
    assert last.seq == 101
    assert "h1" not in db.owned
    assert db.expire(62.0) == ["h1"]
    with pytest.raises(ValueError):
        db.withdraw("me", 0.0)


# ----------------------------------------------------------------- bounds
def test_database_full_is_a_protocol_error() -> None:
    """A new origin beyond max_entries is refused with ProtocolError."""
    db = LinkStateDB("me", max_entries=2)
    db.install(lsa("a", 1), 0.0)
    db.install(lsa("b", 1), 0.0)
    with pytest.raises(ProtocolError, match="full"):
        db.install(lsa("c", 1), 0.0)
    assert db.install(lsa("a", 2), 0.0)  # known origins still update
    result = db.install_many([lsa("c", 1), lsa("b", 2)], 0.0)
    assert [x.origin for x in result.accepted] == ["b"]
    assert [x.origin for x, _ in result.refused] == ["c"]


def test_too_many_links_is_a_protocol_error() -> None:
    """An LSA with more than MAX_LINKS_PER_LSA links cannot even be built."""
    links = tuple(LinkInfo(f"n{i}", 1.0) for i in range(MAX_LINKS_PER_LSA + 1))
    with pytest.raises(ProtocolError, match="links"):
        LSA("a", 1, links)
    wire = LSA("a", 1, links[:MAX_LINKS_PER_LSA]).to_wire()
    wire["links"].append(["extra", 1.0, 0.0, 0.0])
    with pytest.raises(ProtocolError, match="links"):
        LSA.from_wire(wire)


# ----------------------------------------------------------------- wire form
def test_wire_round_trip() -> None:
    """to_wire/from_wire give back an equal LSA."""
    original = LSA(
        "a",
        2**40,
        (LinkInfo("b", 1.25, 100.0, 0.01), LinkInfo("c", 3.0)),
        ("echo", "shell"),
        ("gpu",),
        0.75,
        4,
        public_key="k" * 40,
        kind="ssh",
        name="host A",
        max_age=120.0,
    )
    assert LSA.from_wire(original.to_wire()) == original


def test_wire_defaults_and_unknown_keys() -> None:
    """Optional fields default; unknown keys from newer peers are ignored."""
    wire = {
        "origin": "a",
        "seq": 1,
        "links": [],
        "tools": [],
        "capabilities": [],
        "load": 0,
        "workers": 0,
        "future": {"x": 1},
    }
    decoded = LSA.from_wire(wire)
    assert decoded.kind == "broker"
    assert decoded.max_age == 60.0
    assert decoded.load == 0.0


def _wire() -> dict[str, object]:
    return LSA("a", 1, (LinkInfo("b", 1.0),), ("t",), ("c",), 0.0, 1).to_wire()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("origin", "", "origin"),
        ("origin", 5, "origin"),
        ("origin", "x" * 300, "origin"),
        ("seq", -1, "seq"),
        ("seq", True, "seq"),
        ("seq", 2**64, "seq"),
        ("seq", 1.0, "seq"),
        ("links", "b", "links"),
        ("links", [["b", 1.0, 0.0]], "link"),
        ("links", [["b", -1.0, 0.0, 0.0]], "cost"),
        ("links", [["b", math.nan, 0.0, 0.0]], "cost"),
        ("links", [["b", 1.0, 0.0, 1.5]], "loss"),
        ("links", [["a", 1.0, 0.0, 0.0]], "itself"),
        ("links", [["b", 1.0, 0.0, 0.0], ["b", 2.0, 0.0, 0.0]], "twice"),
        ("tools", ["x", "x"], "duplicates"),
        ("tools", [""], "tools"),
        ("tools", "echo", "tools"),
        ("capabilities", [1], "capabilities"),
        ("load", math.inf, "load"),
        ("load", "1", "load"),
        ("workers", -1, "workers"),
        ("kind", "satellite", "kind"),
        ("max_age", 0.5, "max_age"),
        ("max_age", 10_000.0, "max_age"),
        ("public_key", "k" * 2000, "public_key"),
    ],
)
def test_from_wire_rejects_malformed(field: str, value: object, message: str) -> None:
    """Every malformed field raises ProtocolError naming it, never another exception."""
    wire = _wire()
    wire[field] = value
    with pytest.raises(ProtocolError, match=message):
        LSA.from_wire(wire)


@pytest.mark.parametrize(
    "wire",
    [None, [], "lsa", {1: 2}, {"origin": "a"}, {f"k{i}": i for i in range(100)}],
)
def test_from_wire_rejects_non_lsa(wire: object) -> None:
    """Non-dicts, non-string keys, missing fields and huge dicts are refused."""
    with pytest.raises(ProtocolError):
        LSA.from_wire(wire)


# ----------------------------------------------------------------- flooding
def test_flood_targets_skip_sender_and_require_install() -> None:
    """Forward to all neighbours but the sender, and only when installed."""
    assert flood_targets(["c", "a", "b"], "b") == ["a", "c"]
    assert flood_targets(["a", "b"], None) == ["a", "b"]
    assert flood_targets(["a", "b"], "a", installed=False) == []


def test_flooder_queues_per_neighbour_and_suppresses_duplicates() -> None:
    """Accepted LSAs go to all but the sender; a neighbour that sent a duplicate is skipped."""
    flooder = Flooder(["a", "b", "c"])
    x, y = lsa("x", 1), lsa("y", 1)
    flooder.installed([x], "a")
    flooder.installed([y], None)
    flooder.already_has([x], "b")
    assert flooder.take() == {"b": [y], "c": [x, y], "a": [y]}
    assert flooder.take() == {}


def test_flooder_newer_replaces_queued() -> None:
    """A newer LSA of a queued origin replaces it and resets who holds it."""
    flooder = Flooder(["a", "b"])
    flooder.installed([lsa("x", 1)], "a")
    flooder.already_has([lsa("x", 1)], "b")
    flooder.installed([lsa("x", 2)], "a")
    assert flooder.take() == {"b": [lsa("x", 2)]}


def test_flooder_sync_and_removed_neighbour() -> None:
    """A database snapshot goes to one neighbour; a removed neighbour gets nothing."""
    flooder = Flooder(["a"])
    flooder.add_neighbor("b")
    flooder.sync("b", [lsa("x", 1), lsa("y", 1)])
    flooder.queue_for("zzz", [lsa("x", 1)])  # unknown neighbour: ignored
    flooder.installed([lsa("z", 1)], None)
    assert len(flooder) == 3
    flooder.remove_neighbor("a")
    assert flooder.take() == {"b": [lsa("x", 1), lsa("y", 1), lsa("z", 1)]}
