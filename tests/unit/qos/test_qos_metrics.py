"""LinkMetrics (RTT window, jitter, heartbeat loss) and BandwidthMeter, with fake time."""

from __future__ import annotations

import math

import pytest

from operone_zmq.qos.metrics import (
    BANDWIDTH_RESOLUTION,
    BANDWIDTH_WINDOW,
    DEFAULT_PING_TIMEOUT,
    JITTER_WINDOW,
    LOSS_WINDOW,
    MAX_OUTSTANDING_PINGS,
    BandwidthMeter,
    LinkMetrics,
)

# ------------------------------------------------------------------- RTT window


def test_jitter_of_original_example_is_five() -> None:
    """RTTs 10, 20, 10, 20 give jitter 5 (population standard deviation) and latency 15."""
    m = LinkMetrics()
    for rtt in (10, 20, 10, 20):
        m.record_rtt(rtt)
    assert m.jitter == 5.0
    assert m.latency == 15.0
    assert m.last_rtt == 20.0


def test_no_samples_and_one_sample() -> None:
    """Before any sample everything is 0; one sample gives its latency and no jitter."""
    m = LinkMetrics()
    assert (m.latency, m.jitter, m.last_rtt) == (0.0, 0.0, None)
    m.record_rtt(42.0)
    assert (m.latency, m.jitter, m.last_rtt) == (42.0, 0.0, 42.0)


def test_window_keeps_the_last_twenty() -> None:
    """Only the last JITTER_WINDOW RTTs count."""
    assert JITTER_WINDOW == 20
    m = LinkMetrics()
    for rtt in range(100):
        m.record_rtt(float(rtt))
    assert m.rtt_samples == tuple(float(x) for x in range(80, 100))
    assert m.latency == pytest.approx(89.5)
    # A constant window has no jitter, whatever came before it.
    for _ in range(JITTER_WINDOW):
        m.record_rtt(7.0)
    assert m.jitter == 0.0
    assert m.latency == 7.0


@pytest.mark.parametrize("rtt", [-1.0, math.nan, math.inf])
def test_invalid_rtt_is_refused(rtt: float) -> None:
    """Negative, NaN or infinite RTTs raise ValueError."""
    with pytest.raises(ValueError):
        LinkMetrics().record_rtt(rtt)


# ------------------------------------------------------------------ heartbeats


def test_pong_returns_rtt_and_records_it() -> None:
    """A pong answers its ping: RTT in ms, added to the window, no loss."""
    m = LinkMetrics()
    m.ping_sent(1, 100.0)
    assert m.pings_outstanding == 1
    assert m.pong_received(1, 100.025) == pytest.approx(25.0)
    assert len(m.rtt_samples) == 1
    assert m.rtt_samples[0] == pytest.approx(25.0)
    assert m.packet_loss == 0.0
    assert m.pings_outstanding == 0


def test_unknown_and_duplicate_pongs_are_ignored() -> None:
    """A pong for a sequence number never sent, or answered already, returns None."""
    m = LinkMetrics()
    assert m.pong_received(99, 1.0) is None
    m.ping_sent(1, 1.0)
    assert m.pong_received(1, 1.01) is not None
    assert m.pong_received(1, 1.02) is None
    assert len(m.rtt_samples) == 1
    assert m.packet_loss == 0.0


def test_repeated_ping_sequence_is_ignored() -> None:
    """Registering the same sequence number twice keeps the first send time."""
    m = LinkMetrics()
    m.ping_sent(5, 1.0)
    m.ping_sent(5, 2.0)
    assert m.pings_sent == 1
    assert m.pong_received(5, 2.5) == pytest.approx(1500.0)


def test_unanswered_pings_expire_as_lost() -> None:
    """Pings not answered within the timeout count as lost; loss is a fraction."""
    m = LinkMetrics(ordered=False)
    for seq in range(10):
        m.ping_sent(seq, float(seq))
    for seq in range(9):
        if seq != 3:
            m.pong_received(seq, seq + 0.01)
    assert m.expire(10.0, timeout=5.0) == 1  # seq 3 (sent at 3.0); seq 9 still in time
    assert m.packet_loss == pytest.approx(1 / 9)
    assert m.pings_outstanding == 1
    assert m.expire(20.0, timeout=5.0) == 1
    assert m.packet_loss == pytest.approx(2 / 10)
    assert m.pings_lost == 2


def test_late_pong_after_expiry_is_ignored() -> None:
    """A pong for a ping already counted as lost does not undo the loss."""
    m = LinkMetrics()
    m.ping_sent(1, 0.0)
    m.expire(DEFAULT_PING_TIMEOUT + 1.0)
    assert m.pong_received(1, DEFAULT_PING_TIMEOUT + 2.0) is None
    assert m.packet_loss == 1.0


def test_sequence_gap_counts_as_loss_on_an_ordered_link() -> None:
    """On an ordered link, a pong for a later ping proves the earlier ones lost."""
    m = LinkMetrics()
    for seq in (1, 2, 3, 4):
        m.ping_sent(seq, float(seq))
    assert m.pong_received(3, 3.01) is not None
    assert m.pings_lost == 2
    assert m.pings_outstanding == 1  # seq 4
    assert m.packet_loss == pytest.approx(2 / 3)
    assert m.pong_received(1, 3.02) is None  # already lost


def test_unordered_link_waits_for_timeout() -> None:
    """Without ordering, out-of-order pongs are not loss."""
    m = LinkMetrics(ordered=False)
    for seq in (1, 2, 3):
        m.ping_sent(seq, 0.0)
    m.pong_received(3, 0.1)
    m.pong_received(1, 0.2)
    assert m.pings_lost == 0
    assert m.packet_loss == 0.0


def test_loss_is_over_the_last_loss_window() -> None:
    """Old losses leave the window: loss covers the last LOSS_WINDOW resolved pings."""
    m = LinkMetrics()
    now = 0.0
    for seq in range(10):
        m.ping_sent(seq, now)
        now += 1.0
        m.expire(now, timeout=0.5)
    assert m.packet_loss == 1.0
    for seq in range(10, 10 + LOSS_WINDOW - 5):
        m.ping_sent(seq, now)
        m.pong_received(seq, now + 0.001)
        now += 1.0
    assert m.packet_loss == pytest.approx(5 / LOSS_WINDOW)
    for seq in range(1000, 1005):
        m.ping_sent(seq, now)
        m.pong_received(seq, now + 0.001)
    assert m.packet_loss == 0.0
    assert m.pings_lost == 10


def test_outstanding_pings_are_bounded() -> None:
    """Sending more than MAX_OUTSTANDING_PINGS unanswered pings counts the oldest as lost."""
    m = LinkMetrics()
    for seq in range(MAX_OUTSTANDING_PINGS + 3):
        m.ping_sent(seq, 0.0)
    assert m.pings_outstanding == MAX_OUTSTANDING_PINGS
    assert m.pings_lost == 3
    assert m.pong_received(0, 1.0) is None


def test_queue_depth_is_a_plain_field() -> None:
    """The send path sets the queue depth."""
    m = LinkMetrics()
    assert m.queue_depth == 0
    m.queue_depth = 17
    assert m.queue_depth == 17


# -------------------------------------------------------------------- bandwidth


def test_bandwidth_of_a_steady_stream() -> None:
    """A steady 1 MB/s stream is measured as 1 MB/s once the window is full."""
    meter = BandwidthMeter()
    now = 100.0
    for _ in range(2000):  # 10 s of 5 kB every 5 ms
        meter.record(5000, now)
        now += 0.005
    assert meter.rate(now) == pytest.approx(1_000_000, rel=0.01)
    assert meter.total_bytes == 10_000_000


def test_bandwidth_decays_to_zero_after_the_window() -> None:
    """Bytes older than the window no longer count."""
    meter = BandwidthMeter()
    meter.record(500_000, 10.0)
    assert meter.rate(10.05) == pytest.approx(500_000 / BANDWIDTH_WINDOW, rel=0.03)
    assert meter.rate(10.0 + BANDWIDTH_WINDOW + BANDWIDTH_RESOLUTION) == 0.0
    meter.record(1000, 100.0)
    assert meter.rate(100.0) == pytest.approx(1000 / BANDWIDTH_WINDOW, rel=0.03)


def test_bandwidth_follows_a_change_of_rate() -> None:
    """After a rate change, the meter reports the new rate within one window."""
    meter = BandwidthMeter(window=2.0, resolution=0.1)
    now = 0.0
    for _ in range(400):  # 4 s at 100 kB/s
        meter.record(1000, now)
        now += 0.01
    for _ in range(400):  # 4 s at 10 kB/s
        meter.record(100, now)
        now += 0.01
    assert meter.rate(now) == pytest.approx(10_000, rel=0.05)


def test_bandwidth_tolerates_a_clock_going_backwards() -> None:
    """A timestamp earlier than the last one adds to the newest bucket."""
    meter = BandwidthMeter()
    meter.record(100, 10.0)
    meter.record(100, 9.0)
    assert meter.total_bytes == 200
    assert meter.rate(10.0) > 0


def test_bandwidth_memory_is_bounded() -> None:
    """However many records, at most one bucket per resolution step is kept."""
    meter = BandwidthMeter(window=1.0, resolution=0.1)
    now = 0.0
    for _ in range(10_000):
        meter.record(1, now)
        now += 0.001
    assert len(meter._buckets) <= 11


@pytest.mark.parametrize(("window", "resolution"), [(0.0, 0.1), (1.0, 0.0), (1.0, 2.0)])
def test_bandwidth_meter_refuses_bad_shapes(window: float, resolution: float) -> None:
    """Window and resolution must be positive and resolution at most the window."""
    with pytest.raises(ValueError):
        BandwidthMeter(window, resolution)


def test_negative_byte_count_is_refused() -> None:
    """A negative byte count raises ValueError."""
    with pytest.raises(ValueError):
        BandwidthMeter().record(-1, 0.0)


def test_link_has_sent_and_received_meters() -> None:
    """Sent and received bytes are measured separately."""
    m = LinkMetrics()
    m.sent.record(5000, 1.0)
    m.received.record(1000, 1.0)
    assert m.sent.rate(1.0) == pytest.approx(5 * m.received.rate(1.0))
