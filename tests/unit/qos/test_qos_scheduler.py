"""ClassScheduler: bounds, strict priority, fairness, bucket gating, counters; receive order."""

from __future__ import annotations

from collections import Counter

import pytest

from operone_zmq.errors import Overloaded
from operone_zmq.qos.priority import PRIORITIES, Priority
from operone_zmq.qos.scheduler import (
    MAX_QUEUE,
    MAX_QUEUE_BYTES,
    RECEIVE_BATCH,
    STARVATION_LIMIT,
    ClassScheduler,
    Entry,
    receive_order,
    receive_plan,
)
from operone_zmq.testing import FakeClock

C, H, N, L = Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW


def _drain(s: ClassScheduler[str], now: float) -> list[str]:
    out: list[str] = []
    while (item := s.pop(now)) is not None:
        out.append(item)
    return out


# ---------------------------------------------------------------- basic order


def test_empty_scheduler() -> None:
    """An empty scheduler pops nothing and has no deadline."""
    s: ClassScheduler[str] = ClassScheduler()
    assert s.pop(0.0) is None
    assert s.pop_entry(0.0) is None
    assert s.next_deadline(0.0) is None
    assert len(s) == 0


def test_strict_priority_when_not_saturated() -> None:
    """With a few messages queued, classes leave in priority order, FIFO within a class."""
    s: ClassScheduler[str] = ClassScheduler()
    for item, cls in [("l1", L), ("n1", N), ("h1", H), ("l2", L), ("c1", C), ("h2", H)]:
        assert s.push(cls, item, 10, 0.0)
    assert _drain(s, 0.0) == ["c1", "h1", "h2", "n1", "l1", "l2"]


def test_critical_is_served_first_whenever_present() -> None:
    """A critical message pushed behind bulk traffic is the very next one out."""
    s: ClassScheduler[str] = ClassScheduler()
    for i in range(50):
        s.push(L, f"l{i}", 64 * 1024, 0.0)
        s.push(N, f"n{i}", 1000, 0.0)
    for _ in range(7):
        s.pop(0.0)
    s.push(C, "heartbeat", 50, 0.0)
    assert s.pop(0.0) == "heartbeat"


def test_pop_entry_carries_class_link_size_and_time() -> None:
    """pop_entry says which class and link the item goes to."""
    s: ClassScheduler[bytes] = ClassScheduler()
    s.push("high", b"frames", 6, 12.5, link="node-b")
    e = s.pop_entry(13.0)
    assert e == Entry(item=b"frames", cls=H, size=6, link="node-b", enqueued_at=12.5)
    assert e is not None and e.size == 6 and hash(e) == hash(Entry(b"frames", H, 6, "node-b", 12.5))
    assert e != Entry(b"frames", H, 7, "node-b", 12.5)
    assert repr(e).startswith("Entry(item=b'frames', cls=<Priority.HIGH: 1>, size=6")
    with pytest.raises(AttributeError):
        e.size = 7  # type: ignore[misc]


def test_class_names_and_numbers_are_accepted() -> None:
    """Classes may be given as names or numbers; bad ones raise ValueError."""
    s: ClassScheduler[str] = ClassScheduler()
    assert s.push("low", "a", 1, 0.0)
    assert s.push(0, "b", 1, 0.0)
    assert s.depth("low") == 1
    assert s.depth(0) == 1
    with pytest.raises(ValueError):
        s.push("urgent", "c", 1, 0.0)


@pytest.mark.parametrize("size", [-1, 1.5, True])
def test_bad_sizes_are_refused(size: object) -> None:
    """Sizes are non-negative integers."""
    s: ClassScheduler[str] = ClassScheduler()
    with pytest.raises(ValueError):
        s.push(L, "x", size, 0.0)  # type: ignore[arg-type]


# ------------------------------------------------------------------- fairness


def test_no_class_starves_under_saturation() -> None:
    """With every class always full, each is served within its bound over 10,000 picks."""
    s: ClassScheduler[Priority] = ClassScheduler()
    for cls in PRIORITIES:
        for _ in range(10):
            s.push(cls, cls, 100, 0.0)
    last = dict.fromkeys(PRIORITIES, -1)
    max_gap = dict.fromkeys(PRIORITIES, 0)
    served: Counter[Priority] = Counter()
    for i in range(10_000):
        e = s.pop_entry(0.0)
        assert e is not None
        served[e.cls] += 1
        max_gap[e.cls] = max(max_gap[e.cls], i - last[e.cls])
        last[e.cls] = i
        s.push(e.cls, e.cls, 100, 0.0)
    for cls, limit in STARVATION_LIMIT.items():
        assert max_gap[cls] <= limit + 3, (cls, max_gap)
    # Shares still follow priority.
    assert served[C] > served[H] > served[N] > served[L] > 0
    assert served[L] >= 10_000 // (STARVATION_LIMIT[L] + 3)


def test_lower_classes_progress_under_critical_flood() -> None:
    """Even a flood of critical messages cannot stop a bulk class entirely."""
    s: ClassScheduler[str] = ClassScheduler()
    s.push(L, "bulk", 100, 0.0)
    for i in range(100):
        s.push(C, f"c{i}", 10, 0.0)
    out = _drain(s, 0.0)
    assert out.index("bulk") == STARVATION_LIMIT[L]


def test_custom_starvation_limits() -> None:
    """Limits can be tuned; a limit must be at least 1."""
    s: ClassScheduler[str] = ClassScheduler(starvation_limit={L: 1})
    s.push(L, "l", 1, 0.0)
    for i in range(3):
        s.push(C, f"c{i}", 1, 0.0)
    assert _drain(s, 0.0) == ["c0", "l", "c1", "c2"]
    with pytest.raises(ValueError):
        ClassScheduler(starvation_limit={L: 0})


def test_links_take_turns_within_a_class() -> None:
    """Within a class, links are served round robin, each link FIFO."""
    s: ClassScheduler[str] = ClassScheduler()
    for i in range(3):
        s.push(N, f"a{i}", 1, 0.0, link="a")
    for i in range(2):
        s.push(N, f"b{i}", 1, 0.0, link="b")
    s.push(N, "c0", 1, 0.0, link="c")
    assert _drain(s, 0.0) == ["a0", "b0", "c0", "a1", "b1", "a2"]


# ------------------------------------------------------------------ gating


def test_bucket_gates_a_class_and_next_deadline_says_when(clock: FakeClock) -> None:
    """A class out of tokens waits; next_deadline is when its head fits; others go on."""
    s: ClassScheduler[str] = ClassScheduler(rates={L: 100_000.0})  # 100 kB/s, 64 KiB burst
    chunk = 64 * 1024
    now = clock()
    for i in range(3):
        s.push(L, f"chunk{i}", chunk, now)
    assert s.pop(now) == "chunk0"
    assert s.pop(now) is None  # bucket empty
    deadline = s.next_deadline(now)
    assert deadline == pytest.approx(now + chunk / 100_000.0)
    s.push(H, "job", 500, now)
    assert s.next_deadline(now) == now  # something is sendable right away
    assert s.pop(now) == "job"
    assert deadline is not None
    clock.advance(deadline - now - 0.01)
    assert s.pop(clock()) is None
    clock.advance(0.01)
    assert s.pop(clock()) == "chunk1"


def test_gating_holds_the_rate_over_a_long_run(clock: FakeClock) -> None:
    """A saturated gated class is sent at its rate within 1 % over a long simulated run."""
    rate = 2_000_000.0
    s: ClassScheduler[int] = ClassScheduler(rates={L: rate})
    start = clock()
    sent = 0
    i = 0
    while clock() - start < 60.0:
        while s.depth(L) < 100:
            s.push(L, i, 8_000 + (i % 7) * 1000, clock())
            i += 1
        while (e := s.pop_entry(clock())) is not None:
            sent += e.size
        deadline = s.next_deadline(clock())
        assert deadline is not None
        clock.advance(max(deadline - clock(), 0.001))
    assert sent / (clock() - start) == pytest.approx(rate, rel=0.01)


def test_a_gated_link_does_not_block_other_links(clock: FakeClock) -> None:
    """Per (link, class) buckets: one exhausted link leaves the others free."""
    s: ClassScheduler[str] = ClassScheduler()
    s.set_rate(N, 1000.0, clock(), link="slow", burst=1000.0)
    s.push(N, "s0", 1000, clock(), link="slow")
    s.push(N, "s1", 1000, clock(), link="slow")
    s.push(N, "f0", 1000, clock(), link="fast")
    s.push(N, "f1", 1000, clock(), link="fast")
    assert _drain(s, clock()) == ["s0", "f0", "f1"]
    assert s.depth(N, link="slow") == 1
    assert s.next_deadline(clock()) == pytest.approx(clock() + 1.0)


def test_gated_class_does_not_accumulate_starvation(clock: FakeClock) -> None:
    """A class waiting for tokens is not 'passed over': it does not jump the queue later."""
    s: ClassScheduler[str] = ClassScheduler(rates={L: 1000.0}, starvation_limit={L: 2})
    s.push(L, "l0", 64 * 1024, clock())  # uses the whole (minimum) burst
    assert s.pop(clock()) == "l0"
    s.push(L, "l1", 10, clock())
    for i in range(5):
        s.push(H, f"h{i}", 10, clock())
        assert s.pop(clock()) == f"h{i}"  # low is gated, not starved
    clock.advance(1000.0)
    s.push(H, "h5", 10, clock())
    assert _drain(s, clock()) == ["h5", "l1"]


def test_set_rate_for_all_links_and_unlimited(clock: FakeClock) -> None:
    """A class rate applies to existing and new links; None lifts it; link rates override."""
    s: ClassScheduler[str] = ClassScheduler()
    s.push(L, "a0", 10, clock(), link="a")
    s.pop(clock())
    s.set_rate(L, 100.0, clock())
    assert s.rate(L) == 100.0
    s.set_rate(L, 5000.0, clock(), link="b")
    assert s.rate(L, link="b") == 5000.0
    assert s.rate(L, link="a") == 100.0
    big = 70_000  # over the 64 KiB minimum burst: needs a full bucket
    s.push(L, "a1", big, clock(), link="a")
    s.push(L, "a2", big, clock(), link="a")
    assert s.pop(clock()) == "a1"
    assert s.pop(clock()) is None
    s.set_rate(L, None, clock())
    assert s.pop(clock()) == "a2"
    with pytest.raises(ValueError):
        s.set_rate(L, -5.0, clock())
    s.set_rate(L, 5.0, clock(), burst=10.0)
    s.push(L, "a3", 10, clock(), link="a")
    s.push(L, "a4", 10, clock(), link="a")
    assert s.pop(clock()) == "a3"
    assert s.pop(clock()) is None  # the class burst of 10 bytes is spent
    assert s.next_deadline(clock()) == pytest.approx(clock() + 2.0)


# -------------------------------------------------------------- bounds, counters


def test_full_class_refuses_and_counts(clock: FakeClock) -> None:
    """A class at its bound refuses; other classes still accept; refusals are counted."""
    s: ClassScheduler[int] = ClassScheduler(max_queue={L: 3})
    assert all(s.push(L, i, 1, clock()) for i in range(3))
    assert not s.push(L, 3, 1, clock())
    assert s.push(N, 4, 1, clock())
    st = s.stats()
    assert (st[L].depth, st[L].pushed, st[L].refused) == (3, 3, 1)
    assert s.pop(clock()) == 4  # normal first
    assert s.pop(clock()) == 0
    assert s.push(L, 5, 1, clock())


def test_put_raises_overloaded(clock: FakeClock) -> None:
    """put() turns a refusal into an Overloaded error for the submitter."""
    s: ClassScheduler[int] = ClassScheduler(max_queue={H: 1})
    s.put(H, 1, 10, clock())
    with pytest.raises(Overloaded) as info:
        s.put(H, 2, 10, clock())
    assert info.value.code == "overloaded"
    assert info.value.details["class"] == "high"
    assert s.stats()[H].refused == 1


def test_byte_bound(clock: FakeClock) -> None:
    """A class is also bounded in bytes, but one message alone always fits."""
    s: ClassScheduler[int] = ClassScheduler(max_queue_bytes={L: 1000})
    assert s.push(L, 0, 5000, clock())  # alone: accepted whatever its size
    assert not s.push(L, 1, 1, clock())
    s.pop(clock())
    assert s.push(L, 2, 600, clock())
    assert s.push(L, 3, 400, clock())
    assert not s.push(L, 4, 1, clock())
    assert s.depth_bytes(L) == 1000


def test_default_bounds_are_positive() -> None:
    """Every class has a message and byte bound."""
    for cls in PRIORITIES:
        assert MAX_QUEUE[cls] > 0
        assert MAX_QUEUE_BYTES[cls] > 0
    with pytest.raises(ValueError):
        ClassScheduler(max_queue={L: 0})


def test_depth_counters(clock: FakeClock) -> None:
    """depth and depth_bytes count per class, per link, and in total."""
    s: ClassScheduler[str] = ClassScheduler()
    s.push(H, "a", 10, clock(), link="x")
    s.push(H, "b", 20, clock(), link="y")
    s.push(L, "c", 30, clock(), link="x")
    assert (s.depth(), s.depth(H), s.depth(L), len(s)) == (3, 2, 1, 3)
    assert s.depth(link="x") == 2
    assert s.depth(H, link="y") == 1
    assert (s.depth_bytes(), s.depth_bytes(H)) == (60, 30)
    s.pop(clock())
    st = s.stats()[H]
    assert (st.depth, st.depth_bytes, st.popped) == (1, 20, 1)


def test_drop_link_returns_and_counts(clock: FakeClock) -> None:
    """Dropping a link removes its messages in every class and counts them as dropped."""
    s: ClassScheduler[str] = ClassScheduler()
    s.push(H, "h", 1, clock(), link="gone")
    s.push(L, "l", 1, clock(), link="gone")
    s.push(L, "keep", 1, clock(), link="stays")
    dropped = s.drop_link("gone")
    assert sorted(e.item for e in dropped) == ["h", "l"]
    assert s.stats()[H].dropped == 1
    assert s.stats()[L].dropped == 1
    assert _drain(s, clock()) == ["keep"]
    assert s.drop_link("unknown") == []


def test_drop_expired(clock: FakeClock) -> None:
    """Messages older than max_age are removed, returned and counted; fresh ones stay."""
    s: ClassScheduler[str] = ClassScheduler()
    s.push(C, "old-hb", 1, clock())
    s.push(L, "old-chunk", 1, clock())
    clock.advance(2.0)
    s.push(C, "new-hb", 1, clock())
    dropped = s.drop_expired(clock(), 1.0, C)
    assert [e.item for e in dropped] == ["old-hb"]
    assert s.stats()[C].dropped == 1
    assert [e.item for e in s.drop_expired(clock(), 1.0)] == ["old-chunk"]
    assert _drain(s, clock()) == ["new-hb"]


def test_link_count_is_bounded(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> None:
    """More than MAX_LINKS links is refused like a full queue; dropping one frees a slot."""
    from operone_zmq.qos import scheduler as scheduler_module

    monkeypatch.setattr(scheduler_module, "MAX_LINKS", 2)
    s: ClassScheduler[str] = ClassScheduler()
    assert s.push(N, "a", 1, clock(), link="a")
    assert s.push(N, "b", 1, clock(), link="b")
    assert not s.push(N, "c", 1, clock(), link="c")
    assert s.push(N, "a2", 1, clock(), link="a")
    s.drop_link("a")
    assert s.push(N, "c", 1, clock(), link="c")


# -------------------------------------------------------------------- receive


def test_receive_order_is_critical_first_and_between() -> None:
    """Critical is read first and again before each lower class; all ready classes appear."""
    assert receive_order({L, H, C, N}) == [C, H, C, N, C, L]
    assert receive_order({L, C}) == [C, L]
    assert receive_order({N, L, H}) == [H, N, L]
    assert receive_order(["critical"]) == [C]
    assert receive_order(set()) == []


def test_receive_plan_gives_every_ready_socket_a_batch() -> None:
    """Each entry has a positive batch size, weighted towards urgent classes."""
    plan = receive_plan({C, H, N, L})
    assert [cls for cls, _ in plan] == [C, H, C, N, C, L]
    assert all(n == RECEIVE_BATCH[cls] and n > 0 for cls, n in plan)
    assert RECEIVE_BATCH[C] > RECEIVE_BATCH[H] > RECEIVE_BATCH[N] > RECEIVE_BATCH[L]


@pytest.fixture
def clock() -> FakeClock:
    """A fake monotonic clock."""
    return FakeClock()
