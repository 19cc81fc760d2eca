"""Loss over TCP is measured (late pongs), jitter is robust to retransmission
spikes, violations are edges, and the LSA advertises the loss (issue 15,
"Measurement that means something")."""

from __future__ import annotations

import random
import statistics

import pytest

from operone_zmq.qos.manager import (
    EVENT_LATENCY_RECOVERED,
    EVENT_LATENCY_VIOLATION,
    EVENT_PACKET_LOSS_RECOVERED,
    EVENT_PACKET_LOSS_VIOLATION,
    QoSManager,
)
from operone_zmq.qos.metrics import LATE_MARGIN_MS, LinkMetrics
from operone_zmq.testing import CoreMesh


def exchange(m: LinkMetrics, seq: int, now: float, rtt_ms: float) -> float:
    m.ping_sent(seq, now)
    m.pong_received(seq, now + rtt_ms / 1000.0)
    return now + 1.0


def test_retransmitted_pongs_count_as_loss_not_jitter() -> None:
    """A true RTT of 10 +- 15 ms uniform with 5 % of round trips delayed by a
    200 ms retransmission: the loss reads ~5 %, and jitter is the uniform's
    deviation (~8.7 ms), not the spikes' (tens of ms)."""
    rng = random.Random(7)
    m = LinkMetrics()
    now = 0.0
    spikes = 0
    for seq in range(1, 101):
        rtt = 25.0 + rng.uniform(-15, 15)
        if rng.random() < 0.05:
            rtt += 200.0 + rng.uniform(0, 50)
            spikes += 1
        now = exchange(m, seq, now, rtt)
    assert m.packet_loss == pytest.approx(spikes / 100, abs=0.02)
    assert m.pings_late == pytest.approx(spikes, abs=2)
    assert 5.0 < m.jitter < 12.0
    assert m.min_rtt is not None and m.min_rtt < 15


def test_a_delay_that_moved_up_is_not_loss_for_long() -> None:
    """+300 ms for good: after LATE_RUN late pongs the new delay is the level,
    and the loss window forgets them."""
    m = LinkMetrics()
    now = 0.0
    seq = 0
    for _ in range(20):
        seq += 1
        now = exchange(m, seq, now, 2.0)
    for _ in range(20):
        seq += 1
        now = exchange(m, seq, now, 2.0 + LATE_MARGIN_MS * 2)
    assert m.packet_loss == 0.0
    assert m.min_rtt == pytest.approx(302.0)


def test_violations_fire_once_on_crossing_and_once_on_recovery() -> None:
    qm = QoSManager(clock=lambda: 0.0)
    seen: list[tuple[str, dict[str, object]]] = []
    for ev in (EVENT_LATENCY_VIOLATION, EVENT_LATENCY_RECOVERED, EVENT_PACKET_LOSS_VIOLATION,
               EVENT_PACKET_LOSS_RECOVERED):
        qm.on(ev, lambda d, ev=ev: seen.append((ev, d)))
    for _ in range(50):
        qm.record_latency("p", 1500.0)
    for _ in range(5):
        qm.record_latency("p", 10.0)
    for _ in range(10):
        qm.record_packet_loss("p", 0.3)
    qm.record_packet_loss("p", 0.045)  # between 4 % and 5 %: still violated
    qm.record_packet_loss("p", 0.01)
    assert [e for e, _ in seen] == [EVENT_LATENCY_VIOLATION, EVENT_LATENCY_RECOVERED,
                                    EVENT_PACKET_LOSS_VIOLATION, EVENT_PACKET_LOSS_RECOVERED]


def test_the_lsa_advertises_the_measured_loss() -> None:
    """Heartbeats that go unanswered on a-b show as loss in a's LSA (the link's
    4th field), so route reliability is no longer always 1.0."""
    m = CoreMesh()
    m.add("a")
    m.add("b")
    m.dial("a", "b")
    m.run()
    m.advance(5)
    a = m.nodes["a"]
    assert a.lsdb.get("a").link_to("b").loss == 0.0  # type: ignore[union-attr]
    # b answers only some PINGs: a's expired pings are loss.
    for i in range(20):
        m.cut("a", "b") if i % 4 == 0 else m.heal("a", "b")
        m.advance(1)
    m.heal("a", "b")
    m.advance(2)
    loss = a.lsdb.get("a").link_to("b").loss  # type: ignore[union-attr]
    assert loss > 0.05, loss
    assert a.route_info("b")["reliability"] < 1.0


def test_jitter_is_population_deviation_of_on_time_samples() -> None:
    m = LinkMetrics()
    now = 0.0
    samples = [10.0, 20.0, 10.0, 20.0]
    for seq, rtt in enumerate(samples, 1):
        now = exchange(m, seq, now, rtt)
    assert m.jitter == pytest.approx(statistics.pstdev(samples))
