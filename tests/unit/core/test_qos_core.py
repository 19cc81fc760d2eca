"""QoS on peer links, in memory with a fake clock: shaping, isolation, refusal."""

from __future__ import annotations

from operone_zmq.core.broker import BrokerLimits
from operone_zmq.core.client import JobResult
from operone_zmq.qos.bucket import BURST_SECONDS
from operone_zmq.testing import CoreMesh

CHUNK = 256 * 1024


def pair() -> CoreMesh:
    m = CoreMesh(BrokerLimits(peer_interval=0.5))
    m.add("a")
    m.add("b")
    m.dial("a", "b")
    m.run()
    m.advance(1)
    m.add_worker("b", ["echo"], slots=1000)
    m.advance(0.5)
    return m


def drain(m: CoreMesh, ids: list[str], step: float = 0.05, limit: float = 30.0) -> float:
    """Advance until every job answered; returns the virtual time it took."""
    t0 = m.clock()
    got: dict[str, object] = {}
    while len(got) < len(ids) and m.clock() - t0 < limit:
        m.advance(step, step)
        got.update(m.replies("a"))
    assert all(isinstance(got[i], JobResult) for i in ids)
    return m.clock() - t0


def test_low_class_is_held_to_the_file_transfer_rate() -> None:
    """40 x 256 KiB on the low class cross the link at 5 MB/s (the
    file-transfer policy), within 5%."""
    m = pair()
    ids = [m.submit("a", "echo", {"blob": b"x" * CHUNK}, on="b", cls=3) for _ in range(40)]
    elapsed = drain(m, ids)
    total = 40 * (CHUNK + 200)
    rate = 5_000_000
    expected = (total - rate * BURST_SECONDS) / rate
    assert abs(elapsed - expected) / expected < 0.05, (elapsed, expected)
    assert m.nodes["a"].qos_metrics("b")["bandwidth_mb_s"] > 0


def test_other_classes_are_not_held_back_by_low() -> None:
    """While low is saturated, high-priority jobs and heartbeats pass at once."""
    m = pair()
    low = [m.submit("a", "echo", {"blob": b"x" * CHUNK}, on="b", cls=3) for _ in range(40)]
    m.run()
    hi = m.submit("a", "echo", {"v": 1}, on="b", cls=1)
    m.run()
    r = m.replies("a")
    assert isinstance(r[hi], JobResult)
    assert not any(i in r for i in low[-10:])  # the bulk is still waiting
    m.advance(2.0, 0.1)
    assert m.nodes["a"].links["b"].up  # heartbeats kept flowing
    assert m.nodes["a"].qos_metrics("b")["health_score"] == 100


def test_allocation_shapes_a_peer() -> None:
    """allocate_bandwidth(peer, 1 MB/s) holds normal-class traffic to it."""
    m = pair()
    m.nodes["a"].allocate_bandwidth("b", 1.0)
    ids = [m.submit("a", "echo", {"blob": b"x" * 100_000}, on="b") for _ in range(20)]
    elapsed = drain(m, ids)
    assert elapsed > 1.5  # 2 MB at 1 MB/s, minus the burst


def test_full_class_queue_refuses_with_overloaded() -> None:
    """Past MAX_LINK_QUEUE messages waiting, the origin answers Overloaded."""
    from operone_zmq.core import outbound as core_outbound
    from operone_zmq.errors import Overloaded

    m = pair()
    old = core_outbound.MAX_LINK_QUEUE
    core_outbound.MAX_LINK_QUEUE = 5
    try:
        ids = [m.submit("a", "echo", {"blob": b"x" * CHUNK}, on="b", cls=3)
               for _ in range(20)]
        m.run()
        r = m.replies("a")
        assert any(isinstance(r.get(i), Overloaded) for i in ids)
        assert m.nodes["a"].stats(m.clock())["qos_refused"] > 0
    finally:
        core_outbound.MAX_LINK_QUEUE = old


def test_a_tiny_allocation_reset_releases_what_waits_at_once() -> None:
    """Issue 11: QUERY qos allocate 1e-6 (1 byte/s) and then a reset left the
    normal class stuck: what had queued under the tiny allocation waited as
    long as that allocation said (minutes).  After the reset it goes at once."""
    m = pair()
    m.nodes["a"].allocate_bandwidth("b", 1e-6)
    ids = [m.submit("a", "echo", {"blob": b"x" * 70_000}, on="b", cls=2) for _ in range(5)]
    m.advance(0.5, 0.1)
    early = m.replies("a")
    held = [i for i in ids if i not in early]
    assert len(held) >= 4  # the first passes on the bucket's 64 KiB burst; the rest wait
    m.nodes["a"].allocate_bandwidth("b", None)
    elapsed = drain(m, held, step=0.05, limit=5.0)
    assert elapsed < 1.0


def test_a_bad_allocation_in_a_qos_query_is_an_error_reply() -> None:
    """QUERY qos with ``allocate`` infinite, NaN, so big that its rate
    overflows, or not a number: an ERROR naming what is wrong, and the link's
    budget is left as it was (infinity escaped the query handler as a
    ValueError, so no reply came at all; NaN removed the budget; a text was
    ignored)."""
    from operone_zmq.errors import BadRequest

    m = pair()
    m.nodes["a"].allocate_bandwidth("b", 2.0)
    client = m.client("a")
    for bad in (float("inf"), float("nan"), 1e308, "5", True, [1]):
        qid, frames = client.query("qos", {"peer": "b", "allocate": bad})
        m.send_client("a", frames)
        m.run()
        reply = m.replies("a").get(qid)
        assert isinstance(reply, BadRequest), (bad, reply)
        assert "allocat" in str(reply)
    metrics = m.nodes["a"].qos_metrics("b")
    assert metrics is not None
    assert metrics["allocation_mb_s"] == 2.0
