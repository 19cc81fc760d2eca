"""How QoS metrics are reported: a slow link must not read 0 (issue 9)."""

from __future__ import annotations

from operone_zmq.qos.manager import QoSManager, metrics_report
from operone_zmq.testing import FakeClock


def test_400_bytes_per_second_does_not_round_to_zero() -> None:
    clock = FakeClock(100.0)
    qos = QoSManager(clock=clock)
    for _ in range(100):  # 400 B/s for 10 s, the bandwidth window
        clock.advance(0.1)
        qos.record_sent("p", 40)
    m = qos.get_metrics("p")
    assert m is not None
    r = metrics_report(m)
    assert 360 <= r["bandwidth_bytes_s"] <= 440
    assert 0.00036 <= r["bandwidth_mb_s"] <= 0.00044
    assert round(m.bandwidth, 3) == 0.0  # what the report used to say
    assert set(r) == {"latency_ms", "jitter_ms", "packet_loss", "bandwidth_mb_s",
                      "bandwidth_bytes_s", "queue_depth", "health_score"}


def test_one_byte_per_second_is_visible() -> None:
    clock = FakeClock(0.0)
    qos = QoSManager(clock=clock)
    qos.update_metrics("p", bandwidth=0.000001)
    m = qos.get_metrics("p")
    assert m is not None
    assert metrics_report(m)["bandwidth_bytes_s"] == 1
    assert metrics_report(m)["bandwidth_mb_s"] == 0.000001
