"""QoSManager (the original's tests and our enforcement), policies, priorities, purity."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import operone_zmq.qos as qos
from operone_zmq.errors import Overloaded
from operone_zmq.qos import (
    BYTES_PER_MB,
    DEEP_QUEUE_DEPTH,
    DEFAULT_POLICY,
    EVENT_LATENCY_VIOLATION,
    EVENT_PACKET_LOSS_VIOLATION,
    Priority,
    QoSManager,
    QoSPolicy,
    RetryPolicy,
    health_score,
)
from operone_zmq.qos import manager as manager_module
from operone_zmq.testing import FakeClock

PEER = "peer-1"


@pytest.fixture
def clock() -> FakeClock:
    """A fake monotonic clock."""
    return FakeClock()


@pytest.fixture
def qm(clock: FakeClock) -> QoSManager:
    """A manager driven by the fake clock."""
    return QoSManager(clock=clock)


def _spy(qm: QoSManager, event: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    qm.on(event, calls.append)
    return calls


# ============================================================ original's tests


def test_original_initialize_metrics_for_new_peer(qm: QoSManager) -> None:
    """Updating an unknown peer creates its metrics."""
    qm.update_metrics(PEER, latency=50)
    m = qm.get_metrics(PEER)
    assert m is not None
    assert m.latency == 50
    assert m.peer_id == PEER


def test_original_update_existing_metrics(qm: QoSManager) -> None:
    """An update keeps the fields it does not mention."""
    qm.update_metrics(PEER, latency=50)
    qm.update_metrics(PEER, bandwidth=100)
    m = qm.get_metrics(PEER)
    assert m is not None
    assert (m.latency, m.bandwidth) == (50, 100)


def test_original_jitter_is_five(qm: QoSManager) -> None:
    """RTTs 10, 20, 10, 20 give jitter 5."""
    for rtt in (10, 20, 10, 20):
        qm.record_latency(PEER, rtt)
    m = qm.get_metrics(PEER)
    assert m is not None
    assert m.jitter == 5


def test_original_throttle_on_allocated_bandwidth(qm: QoSManager) -> None:
    """Usage of 15 MB/s over an allocation of 10 MB/s throttles."""
    qm.allocate_bandwidth(PEER, 10)
    qm.update_metrics(PEER, bandwidth=15)
    assert qm.should_throttle(PEER, "tool-call", 1000)


def test_original_throttle_on_policy_max_bandwidth(qm: QoSManager) -> None:
    """Usage of 6 MB/s over a type's 5 MB/s cap throttles that type."""
    qm.set_policy(
        "custom-type",
        QoSPolicy(
            priority=Priority.LOW,
            max_bandwidth=5,
            retry_policy=RetryPolicy(max_retries=1, backoff="linear", initial_delay=100),
        ),
    )
    qm.update_metrics(PEER, bandwidth=6)
    assert qm.should_throttle(PEER, "custom-type", 1000)


def test_original_deep_queue_throttles_low_not_critical(qm: QoSManager) -> None:
    """With 100 messages queued, file transfers wait and heartbeats do not."""
    qm.update_metrics(PEER, queue_depth=100)
    assert qm.should_throttle(PEER, "file-transfer", 1000)
    assert not qm.should_throttle(PEER, "heartbeat", 1000)


def test_original_perfect_health(qm: QoSManager) -> None:
    """50 ms latency, no loss, 10 ms jitter: health 100."""
    qm.update_metrics(PEER, latency=50, packet_loss=0, jitter=10)
    assert qm.get_health_score(PEER) == 100


def test_original_latency_penalty(qm: QoSManager) -> None:
    """300 ms latency costs 10 points."""
    qm.update_metrics(PEER, latency=300, packet_loss=0, jitter=0)
    assert qm.get_health_score(PEER) == 90


def test_original_packet_loss_penalty(qm: QoSManager) -> None:
    """10 % packet loss costs 10 points."""
    qm.update_metrics(PEER, latency=50, packet_loss=0.1, jitter=0)
    assert qm.get_health_score(PEER) == 90


def test_original_latency_violation_event(qm: QoSManager) -> None:
    """A latency of 1,500 ms emits violation:latency with the peer and the latency."""
    calls = _spy(qm, "violation:latency")
    qm.update_metrics(PEER, latency=1500)
    assert calls == [{"peer_id": PEER, "latency": 1500}]


# ==================================================================== policies


def test_default_policies(qm: QoSManager) -> None:
    """The original's defaults: critical heartbeats/handshakes, high tools, low files."""
    hb = qm.get_policy("heartbeat")
    hs = qm.get_policy("handshake")
    assert (hb.priority, hb.max_latency) == (Priority.CRITICAL, 1000)
    assert (hs.priority, hs.max_latency) == (Priority.CRITICAL, 5000)
    assert qm.get_policy("tool-call").priority == Priority.HIGH
    assert qm.get_policy("tool-result").priority == Priority.HIGH
    ft = qm.get_policy("file-transfer")
    assert (ft.priority, ft.max_bandwidth) == (Priority.LOW, 5)
    assert ft.max_bandwidth_bytes == 5 * BYTES_PER_MB


def test_unknown_type_gets_normal_default(qm: QoSManager) -> None:
    """A type without a policy is normal, with the default retries."""
    p = qm.get_policy("something-else")
    assert p is DEFAULT_POLICY
    assert p.priority == Priority.NORMAL
    assert p.retry_policy == RetryPolicy(3, "exponential", 1000)
    assert qm.priority_of("something-else") == Priority.NORMAL


def test_set_policy_replaces_and_lists(qm: QoSManager) -> None:
    """set_policy overrides a default; policies lists every explicit policy."""
    qm.set_policy("heartbeat", QoSPolicy(priority=Priority.HIGH))
    assert qm.priority_of("heartbeat") == Priority.HIGH
    assert set(qm.policies) >= {"heartbeat", "handshake", "tool-call", "file-transfer"}


def test_set_policy_refuses_non_policies(qm: QoSManager) -> None:
    """A dict is not a policy."""
    with pytest.raises(TypeError):
        qm.set_policy("x", {"priority": "high"})  # type: ignore[arg-type]


def test_policy_count_is_bounded(qm: QoSManager) -> None:
    """More than MAX_POLICIES message types is refused."""
    n = manager_module.MAX_POLICIES - len(qm.policies)
    for i in range(n):
        qm.set_policy(f"t{i}", QoSPolicy(Priority.LOW))
    with pytest.raises(Overloaded):
        qm.set_policy("one-too-many", QoSPolicy(Priority.LOW))
    qm.set_policy("t0", QoSPolicy(Priority.HIGH))  # replacing is still fine


def test_policy_parses_priority_names() -> None:
    """A policy given a priority name stores the class."""
    assert QoSPolicy(priority="high").priority is Priority.HIGH


@pytest.mark.parametrize(
    "kwargs",
    [
        {"priority": "urgent"},
        {"priority": Priority.LOW, "max_bandwidth": 0},
        {"priority": Priority.LOW, "max_bandwidth": -1},
        {"priority": Priority.LOW, "max_latency": float("nan")},
        {"priority": Priority.LOW, "max_latency": True},
    ],
)
def test_policy_validates_itself(kwargs: dict[str, Any]) -> None:
    """Bad priorities and non-positive caps raise ValueError."""
    with pytest.raises(ValueError):
        QoSPolicy(**kwargs)


def test_policy_is_frozen() -> None:
    """Policies are immutable."""
    p = QoSPolicy(Priority.LOW)
    with pytest.raises(AttributeError):
        p.priority = Priority.HIGH  # type: ignore[misc]


def test_retry_delays() -> None:
    """Linear and exponential backoff, numbered from 1, capped at max_delay."""
    lin = RetryPolicy(max_retries=10, backoff="linear", initial_delay=5000)
    assert [lin.delay(a) for a in (1, 2, 3)] == [5000, 10000, 15000]
    assert lin.delay(10) == 30000  # default cap
    exp = RetryPolicy(max_retries=5, backoff="exponential", initial_delay=500, max_delay=3000)
    assert [exp.delay(a) for a in (1, 2, 3, 4, 5)] == [500, 1000, 2000, 3000, 3000]
    assert exp.delay(10_000) == 3000  # no overflow
    assert RetryPolicy(0, "exponential", 0).delay(10_000) == 0
    with pytest.raises(ValueError):
        exp.delay(0)


def test_retry_should_retry() -> None:
    """Retries 1..max_retries are allowed; heartbeats are never retried."""
    p = RetryPolicy(max_retries=2, backoff="linear", initial_delay=1)
    assert [p.should_retry(a) for a in (0, 1, 2, 3)] == [False, True, True, False]
    assert not QoSManager().get_policy("heartbeat").retry_policy.should_retry(1)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((-1, "linear", 0), {}),
        ((1.5, "linear", 0), {}),
        ((True, "linear", 0), {}),
        ((1, "fibonacci", 0), {}),
        ((1, "linear", -1), {}),
        ((1, "linear", 1), {"max_delay": -1}),
    ],
)
def test_retry_policy_validates_itself(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Negative counts or delays and unknown backoffs raise ValueError."""
    with pytest.raises(ValueError):
        RetryPolicy(*args, **kwargs)


# =================================================================== priority


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("critical", Priority.CRITICAL),
        ("HIGH", Priority.HIGH),
        (" normal ", Priority.NORMAL),
        ("low", Priority.LOW),
        (0, Priority.CRITICAL),
        (3, Priority.LOW),
        (Priority.HIGH, Priority.HIGH),
    ],
)
def test_priority_parse(value: str | int | Priority, expected: Priority) -> None:
    """Names (any case), numbers and members parse to the class."""
    assert Priority.parse(value) is expected


@pytest.mark.parametrize("value", ["urgent", "", 4, -1, True, 1.0, None])
def test_priority_parse_refuses(value: Any) -> None:
    """Anything else raises ValueError naming the accepted values."""
    with pytest.raises(ValueError, match="priority"):
        Priority.parse(value)


def test_priority_order_and_labels() -> None:
    """Smaller is more urgent; labels are the lower-case names."""
    assert [int(p) for p in qos.PRIORITIES] == [0, 1, 2, 3]
    assert [p.label for p in Priority] == ["critical", "high", "normal", "low"]
    assert str(Priority.LOW) == "low"
    assert min(Priority.LOW, Priority.HIGH) is Priority.HIGH


# ===================================================================== metrics


def test_unknown_peer(qm: QoSManager) -> None:
    """An unknown peer has no metrics, health 0, and is never throttled."""
    assert qm.get_metrics("nobody") is None
    assert qm.get_health_score("nobody") == 0
    assert not qm.should_throttle("nobody", "file-transfer", 10**9)
    assert qm.time_until("nobody", "file-transfer", 10**9) == 0.0
    assert qm.link_metrics("nobody") is None
    assert qm.pong_received("nobody", 1) is None


def test_metrics_snapshot_has_every_field(qm: QoSManager, clock: FakeClock) -> None:
    """get_metrics carries latency, jitter, loss, bandwidth, depth, health and update time."""
    qm.update_metrics(PEER, latency=300, jitter=60, packet_loss=0.02, bandwidth=1.5, queue_depth=3)
    m = qm.get_metrics(PEER)
    assert m is not None
    assert (m.latency, m.jitter, m.packet_loss, m.bandwidth, m.queue_depth) == (
        300,
        60,
        0.02,
        1.5,
        3,
    )
    assert m.health_score == 100 - 10 - 2 - 5
    assert m.last_update == clock()


def test_record_latency_uses_window_mean(qm: QoSManager) -> None:
    """Latency is the mean of the last 20 RTTs."""
    for rtt in (100, 200, 300):
        qm.record_latency(PEER, rtt)
    m = qm.get_metrics(PEER)
    assert m is not None
    assert m.latency == 200


def test_latency_violation_checks_latest_rtt(qm: QoSManager) -> None:
    """One slow RTT is a violation even when the window mean is below the threshold."""
    calls = _spy(qm, EVENT_LATENCY_VIOLATION)
    for _ in range(10):
        qm.record_latency(PEER, 100)
    assert calls == []
    qm.record_latency(PEER, 1500)
    assert calls == [{"peer_id": PEER, "latency": 1500}]
    m = qm.get_metrics(PEER)
    assert m is not None
    assert m.latency < 1000


def test_latency_at_threshold_is_not_a_violation(qm: QoSManager) -> None:
    """Exactly 1,000 ms is allowed; the rule is 'over'."""
    calls = _spy(qm, EVENT_LATENCY_VIOLATION)
    qm.update_metrics(PEER, latency=1000)
    assert calls == []


def test_unrelated_update_does_not_repeat_violation(qm: QoSManager) -> None:
    """Setting the queue depth does not re-emit an old latency violation."""
    calls = _spy(qm, EVENT_LATENCY_VIOLATION)
    qm.update_metrics(PEER, latency=2000)
    qm.update_metrics(PEER, queue_depth=1)
    assert len(calls) == 1


def test_packet_loss_violation(qm: QoSManager) -> None:
    """Loss over 5 % emits violation:packet-loss; 5 % exactly does not."""
    calls = _spy(qm, EVENT_PACKET_LOSS_VIOLATION)
    qm.record_packet_loss(PEER, 0.05)
    assert calls == []
    qm.record_packet_loss(PEER, 0.2)
    assert calls == [{"peer_id": PEER, "packet_loss": 0.2}]


def test_packet_loss_percentages_are_refused(qm: QoSManager) -> None:
    """Packet loss is a fraction; 10 (meaning 10 %) is refused, not misread."""
    with pytest.raises(ValueError, match="fraction"):
        qm.update_metrics(PEER, packet_loss=10)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"latency": -1},
        {"jitter": float("nan")},
        {"bandwidth": float("inf")},
        {"queue_depth": -1},
        {"latency": "slow"},
    ],
)
def test_invalid_metrics_are_refused(qm: QoSManager, kwargs: dict[str, Any]) -> None:
    """Negative, NaN, infinite or non-numeric metrics raise ValueError."""
    with pytest.raises(ValueError):
        qm.update_metrics(PEER, **kwargs)
    assert qm.get_metrics(PEER) is None  # nothing half-applied


def test_off_removes_listener(qm: QoSManager) -> None:
    """A listener removed with off() is no longer called."""
    calls: list[dict[str, Any]] = []
    qm.on(EVENT_LATENCY_VIOLATION, calls.append)
    assert qm.off(EVENT_LATENCY_VIOLATION, calls.append)
    qm.update_metrics(PEER, latency=5000)
    assert calls == []


def test_failing_listener_does_not_break_the_manager(qm: QoSManager) -> None:
    """A listener that raises is recorded; the metrics are still updated."""

    def boom(_: dict[str, Any]) -> None:
        raise RuntimeError("listener bug")

    qm.on(EVENT_LATENCY_VIOLATION, boom)
    qm.update_metrics(PEER, latency=5000)
    m = qm.get_metrics(PEER)
    assert m is not None
    assert m.latency == 5000
    assert len(qm.errors) == 1


@pytest.mark.parametrize(
    ("latency", "loss", "jitter", "score"),
    [
        (50, 0, 10, 100),
        (300, 0, 0, 90),
        (50, 0.1, 0, 90),
        (200, 0, 50, 100),  # thresholds are "over"
        (10_000, 0, 0, 60),  # latency penalty capped at 40
        (0, 0, 1000, 80),  # jitter penalty capped at 20
        (10_000, 0.5, 1000, 0),  # clamped at 0
        (205, 0, 0, 100),  # 99.5 rounds to 100 (banker's rounding, like 0.5 -> 0)
        (215, 0, 0, 98),  # 98.5 rounds to 98
        (50, 1.0, 0, 0),
    ],
)
def test_health_score(latency: float, loss: float, jitter: float, score: int) -> None:
    """The original's formula, clamped to 0..100 and rounded."""
    assert health_score(latency, jitter, loss) == score


# ================================================================ heartbeats


def test_heartbeats_feed_rtt_jitter_and_loss(qm: QoSManager, clock: FakeClock) -> None:
    """Pings and pongs measure RTT; sequence gaps and timeouts measure loss."""
    qm.ping_sent(PEER, 1)
    clock.advance(0.010)
    assert qm.pong_received(PEER, 1) == pytest.approx(10.0)
    qm.ping_sent(PEER, 2)
    qm.ping_sent(PEER, 3)
    clock.advance(0.020)
    assert qm.pong_received(PEER, 3) == pytest.approx(20.0)  # 2 is lost (gap)
    m = qm.get_metrics(PEER)
    assert m is not None
    assert m.latency == pytest.approx(15.0)
    assert m.jitter == pytest.approx(5.0)
    assert m.packet_loss == pytest.approx(1 / 3)
    assert qm.pong_received(PEER, 3) is None  # duplicate


def test_expire_pings_measures_loss_and_emits(qm: QoSManager, clock: FakeClock) -> None:
    """Pings unanswered past the timeout become loss, with a violation event."""
    calls = _spy(qm, EVENT_PACKET_LOSS_VIOLATION)
    for seq in range(4):
        qm.ping_sent(PEER, seq)
        clock.advance(0.001)
        qm.pong_received(PEER, seq)
    qm.ping_sent(PEER, 4)
    qm.ping_sent("peer-2", 1)
    assert qm.expire_pings(timeout=5.0) == {}
    clock.advance(6.0)
    assert qm.expire_pings(timeout=5.0) == {PEER: 1, "peer-2": 1}
    m = qm.get_metrics(PEER)
    assert m is not None
    assert m.packet_loss == pytest.approx(0.2)
    assert {c["peer_id"] for c in calls} == {PEER, "peer-2"}


def test_slow_pong_emits_latency_violation(qm: QoSManager, clock: FakeClock) -> None:
    """A heartbeat answered after 1.5 s is a latency violation."""
    calls = _spy(qm, EVENT_LATENCY_VIOLATION)
    qm.ping_sent(PEER, 1)
    clock.advance(1.5)
    qm.pong_received(PEER, 1)
    assert calls == [{"peer_id": PEER, "latency": pytest.approx(1500.0)}]


# ================================================================= bandwidth


def test_measured_bandwidth_replaces_manual_value(qm: QoSManager, clock: FakeClock) -> None:
    """Recorded bytes make bandwidth measured (MB/s); a manual value replaces it again."""
    qm.update_metrics(PEER, bandwidth=42)
    for _ in range(500):  # 10 s of 20 kB every 20 ms = 1 MB/s
        qm.record_sent(PEER, 20_000)
        clock.advance(0.02)
    m = qm.get_metrics(PEER)
    assert m is not None
    assert m.bandwidth == pytest.approx(1.0, rel=0.02)
    clock.advance(10.0)  # measured values are read fresh: idle means 0
    m = qm.get_metrics(PEER)
    assert m is not None
    assert m.bandwidth == 0.0
    qm.update_metrics(PEER, bandwidth=3)
    m = qm.get_metrics(PEER)
    assert m is not None
    assert m.bandwidth == 3


def test_record_received_is_measured_separately(qm: QoSManager, clock: FakeClock) -> None:
    """Received bytes go to the link's received meter, not the sent bandwidth."""
    qm.record_received(PEER, 1_000_000)
    link = qm.link_metrics(PEER)
    assert link is not None
    assert link.received.total_bytes == 1_000_000
    assert link.sent.total_bytes == 0


def test_allocation_bucket_throttles_and_consume_takes_tokens(
    qm: QoSManager, clock: FakeClock
) -> None:
    """A 1 MB/s allocation lets the burst through, then makes messages wait."""
    qm.allocate_bandwidth(PEER, 1)
    assert qm.get_allocation(PEER) == 1
    sent = 0
    while not qm.should_throttle(PEER, "tool-call", 10_000):
        assert qm.consume(PEER, "tool-call", 10_000)
        sent += 10_000
    assert sent == 250_000  # the default burst: a quarter second at 1 MB/s
    assert not qm.consume(PEER, "tool-call", 10_000)  # nothing taken when refused
    assert qm.time_until(PEER, "tool-call", 10_000) == pytest.approx(0.01)
    clock.advance(0.01)
    assert not qm.should_throttle(PEER, "tool-call", 10_000)
    assert qm.consume(PEER, "tool-call", 10_000)


def test_allocation_can_be_changed_and_removed(qm: QoSManager, clock: FakeClock) -> None:
    """allocate_bandwidth again changes the rate; None removes the limit."""
    qm.allocate_bandwidth(PEER, 1)
    assert qm.consume(PEER, "tool-call", 250_000)
    qm.allocate_bandwidth(PEER, 10)
    assert qm.time_until(PEER, "tool-call", 10_000) == pytest.approx(0.001)
    qm.allocate_bandwidth(PEER, None)
    assert qm.get_allocation(PEER) is None
    assert qm.time_until(PEER, "tool-call", 10**9) == 0.0
    with pytest.raises(ValueError):
        qm.allocate_bandwidth(PEER, -1)


def test_type_cap_is_enforced_per_peer(qm: QoSManager, clock: FakeClock) -> None:
    """file-transfer's 5 MB/s cap has its own bucket per peer."""
    chunk = 64 * 1024
    n = 0
    while qm.consume(PEER, "file-transfer", chunk):
        n += 1
    assert n == 1_250_000 // chunk  # the burst: a quarter second at 5 MB/s
    assert qm.should_throttle(PEER, "file-transfer", chunk)
    assert not qm.should_throttle(PEER, "tool-call", chunk)  # other types unaffected
    assert qm.consume("peer-2", "file-transfer", chunk)  # other peers unaffected


def test_type_cap_follows_set_policy(qm: QoSManager, clock: FakeClock) -> None:
    """Changing a type's cap re-rates its existing buckets; removing it removes them."""
    qm.consume(PEER, "file-transfer", 5_000_000)  # far over the burst: debt
    assert qm.time_until(PEER, "file-transfer", 1000) > 0.5
    qm.set_policy("file-transfer", QoSPolicy(Priority.LOW, max_bandwidth=50))
    assert qm.time_until(PEER, "file-transfer", 1000) < 0.1
    qm.set_policy("file-transfer", QoSPolicy(Priority.LOW))
    assert qm.time_until(PEER, "file-transfer", 10**9) == 0.0


def test_file_transfer_rate_is_held_over_a_long_run(qm: QoSManager, clock: FakeClock) -> None:
    """A greedy file transfer polled every 2 ms moves 5 MB/s within 2 % (DESIGN: 5 %)."""
    chunk = 64 * 1024
    start = clock()
    sent = 0
    while clock() - start < 60.0:
        while not qm.should_throttle(PEER, "file-transfer", chunk):
            assert qm.consume(PEER, "file-transfer", chunk)
            sent += chunk
        clock.advance(0.002)
    rate_mb = sent / (clock() - start) / BYTES_PER_MB
    assert rate_mb == pytest.approx(5.0, rel=0.02)
    assert rate_mb <= 5.0 * 1.01


def test_allocation_is_held_with_mixed_traffic(qm: QoSManager, clock: FakeClock) -> None:
    """Tool calls and file chunks together stay within a 2 MB/s allocation."""
    qm.allocate_bandwidth(PEER, 2)
    start = clock()
    sent = 0
    types = ["tool-call", "file-transfer", "status"]
    i = 0
    while clock() - start < 30.0:
        for _ in range(100):
            t = types[i % 3]
            if qm.should_throttle(PEER, t, 8000):
                break
            assert qm.consume(PEER, t, 8000)
            sent += 8000
            i += 1
        clock.advance(0.005)
    rate_mb = sent / (clock() - start) / BYTES_PER_MB
    assert rate_mb == pytest.approx(2.0, rel=0.02)


def test_critical_is_never_throttled_but_is_charged(qm: QoSManager, clock: FakeClock) -> None:
    """Heartbeats pass an exhausted allocation and a deep queue; their bytes still count."""
    qm.allocate_bandwidth(PEER, 1)
    assert qm.consume(PEER, "tool-call", 250_000)
    qm.update_metrics(PEER, queue_depth=10_000)
    qm.update_metrics(PEER, bandwidth=50)
    assert qm.should_throttle(PEER, "tool-call", 100)
    assert not qm.should_throttle(PEER, "heartbeat", 100)
    assert qm.time_until(PEER, "heartbeat", 100) == 0.0
    assert qm.consume(PEER, "heartbeat", 100_000)  # goes into debt
    assert qm.time_until(PEER, "tool-call", 1) == pytest.approx(0.1, rel=0.01)


def test_critical_type_with_its_own_cap_is_limited(qm: QoSManager) -> None:
    """An explicit max_bandwidth on a critical type is honoured."""
    qm.set_policy("alarm", QoSPolicy(Priority.CRITICAL, max_bandwidth=0.1))
    assert qm.consume(PEER, "alarm", 64 * 1024)
    assert not qm.consume(PEER, "alarm", 64 * 1024)
    assert qm.should_throttle(PEER, "alarm", 64 * 1024)


@pytest.mark.parametrize(
    ("message_type", "throttled"),
    [("heartbeat", False), ("tool-call", False), ("status", True), ("file-transfer", True)],
)
def test_deep_queue_throttles_normal_and_low(
    qm: QoSManager, message_type: str, throttled: bool
) -> None:
    """Over DEEP_QUEUE_DEPTH, normal and low wait so critical and high get through."""
    qm.set_queue_depth(PEER, DEEP_QUEUE_DEPTH)
    assert not qm.should_throttle(PEER, message_type, 100)
    qm.set_queue_depth(PEER, DEEP_QUEUE_DEPTH + 1)
    assert qm.should_throttle(PEER, message_type, 100) is throttled


def test_consume_refuses_negative_sizes(qm: QoSManager) -> None:
    """A negative size raises ValueError."""
    with pytest.raises(ValueError):
        qm.consume(PEER, "tool-call", -1)


# ================================================================ peer table


def test_remove_peer_forgets_everything(qm: QoSManager) -> None:
    """After remove_peer the peer is unknown, its buckets gone."""
    qm.allocate_bandwidth(PEER, 1)
    qm.consume(PEER, "tool-call", 250_000)
    qm.update_metrics(PEER, latency=10)
    assert qm.peers() == [PEER]
    assert qm.remove_peer(PEER)
    assert not qm.remove_peer(PEER)
    assert qm.get_metrics(PEER) is None
    assert qm.peers() == []
    assert not qm.should_throttle(PEER, "tool-call", 250_000)


def test_peer_table_is_bounded(qm: QoSManager, monkeypatch: pytest.MonkeyPatch) -> None:
    """More than MAX_PEERS peers is refused with Overloaded."""
    monkeypatch.setattr(manager_module, "MAX_PEERS", 3)
    for i in range(3):
        qm.update_metrics(f"p{i}", latency=1)
    with pytest.raises(Overloaded):
        qm.update_metrics("p3", latency=1)
    qm.update_metrics("p0", latency=2)  # known peers still update


def test_default_clock_is_monotonic() -> None:
    """Without a clock the manager uses time.monotonic, imported lazily."""
    qm = QoSManager()
    qm.update_metrics(PEER, latency=1)
    m = qm.get_metrics(PEER)
    assert m is not None
    assert m.last_update > 0


# ============================================================== architecture

_QOS_DIR = Path(qos.__file__).parent
_FORBIDDEN = {"zmq", "asyncio", "socket", "threading", "time"}


def test_no_io_modules_imported_at_module_level() -> None:
    """No module of the package imports zmq, asyncio, socket, threading or time at top level."""
    offenders = []
    for path in sorted(_QOS_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [(path.name, n) for n in names if n.split(".")[0] in _FORBIDDEN]
    assert offenders == []


def test_importing_the_package_pulls_in_no_io() -> None:
    """In a fresh interpreter the package loads no zmq, asyncio, socket or threading."""
    code = (
        "import sys, operone_zmq.qos; "
        "print(sorted(m for m in ('zmq', 'asyncio', 'socket', 'threading') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_public_api_is_pinned() -> None:
    """The package exports exactly its documented names."""
    assert sorted(qos.__all__) == sorted(
        [
            "BYTES_PER_MB",
            "DEEP_QUEUE_DEPTH",
            "DEFAULT_POLICIES",
            "DEFAULT_POLICY",
            "EVENT_LATENCY_VIOLATION",
            "EVENT_PACKET_LOSS_VIOLATION",
            "LATENCY_VIOLATION_MS",
            "PACKET_LOSS_VIOLATION",
            "PRIORITIES",
            "BandwidthMeter",
            "ClassScheduler",
            "ClassStats",
            "Entry",
            "LinkMetrics",
            "Priority",
            "QoSManager",
            "QoSMetrics",
            "QoSPolicy",
            "RetryPolicy",
            "TokenBucket",
            "health_score",
            "receive_order",
            "receive_plan",
        ]
    )
    for name in qos.__all__:
        assert hasattr(qos, name), name
