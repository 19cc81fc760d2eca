"""TokenBucket: rate, burst, debt for large messages, unlimited mode, fake time."""

from __future__ import annotations

import math
import random

import pytest

from operone_zmq.qos.bucket import BURST_SECONDS, MIN_BURST_BYTES, TokenBucket, default_burst
from operone_zmq.testing import FakeClock

MB = 1_000_000


def test_starts_full_and_refuses_when_empty() -> None:
    """A new bucket holds its burst; once spent, the next message waits."""
    b = TokenBucket(rate=1000.0, burst=500.0, now=0.0)
    assert b.tokens(0.0) == 500.0
    assert b.consume(300, 0.0)
    assert b.consume(200, 0.0)
    assert not b.consume(1, 0.0)
    assert b.tokens(0.0) == pytest.approx(0.0)


def test_refills_at_rate_up_to_burst() -> None:
    """Tokens come back at ``rate`` per second and never exceed the burst."""
    b = TokenBucket(rate=1000.0, burst=500.0, now=0.0)
    b.consume(500, 0.0)
    assert b.tokens(0.1) == pytest.approx(100.0)
    assert b.tokens(10.0) == 500.0


def test_time_until_is_exact_and_zero_when_available() -> None:
    """time_until says how long to wait; after waiting that long the message passes."""
    b = TokenBucket(rate=1000.0, burst=500.0, now=0.0)
    assert b.time_until(400, 0.0) == 0.0
    b.consume(500, 0.0)
    wait = b.time_until(250, 0.0)
    assert wait == pytest.approx(0.25)
    assert not b.consume(250, 0.2)
    assert b.consume(250, 0.0 + wait)


def test_waiting_exactly_time_until_passes_despite_float_rounding() -> None:
    """At large monotonic timestamps, sleeping exactly time_until is never refused."""
    rate = 5 * MB
    now = 987_654.321
    b = TokenBucket(rate=rate, burst=default_burst(rate), now=now)
    rng = random.Random(7)
    for _ in range(2000):
        size = rng.randint(1, 200_000)
        now += b.time_until(size, now)
        assert b.consume(size, now), (size, now)


def test_message_larger_than_burst_passes_when_full_and_leaves_debt() -> None:
    """A message over the burst goes when the bucket is full and is paid back at the rate."""
    b = TokenBucket(rate=1000.0, burst=100.0, now=0.0)
    assert b.consume(50, 0.0)
    assert not b.consume(1000, 0.0)  # not full: waits for a full bucket
    assert b.time_until(1000, 0.0) == pytest.approx(0.05)
    assert b.consume(1000, 0.05)
    assert b.tokens(0.05) == pytest.approx(-900.0)
    # The debt (900 bytes) plus the next small message (10 bytes) take 0.91 s.
    assert b.time_until(10, 0.05) == pytest.approx(0.91)
    assert not b.consume(10, 0.9)
    assert b.consume(10, 0.96)


def test_large_messages_hold_the_average_rate() -> None:
    """Messages ten times the burst still go out at the configured rate on average."""
    rate, burst, size = 1 * MB, 64 * 1024.0, 640 * 1024
    now = 0.0
    b = TokenBucket(rate, burst, now)
    sent = 0
    while now < 100.0:
        now += b.time_until(size, now)
        assert b.consume(size, now)
        sent += size
    assert sent / now == pytest.approx(rate, rel=0.01)


def test_holds_rate_within_one_percent_over_a_long_run() -> None:
    """A greedy sender of random sizes, woken by a coarse timer, gets rate within 1%."""
    clock = FakeClock(start=5000.0)
    rate = 5 * MB
    b = TokenBucket(rate, default_burst(rate), clock())
    rng = random.Random(42)
    start = clock()
    sent = 0
    size = rng.randint(100, 64 * 1024)
    while clock() - start < 120.0:
        while b.consume(size, clock()):
            sent += size
            size = rng.randint(100, 64 * 1024)
        clock.advance(0.003)  # a 3 ms timer tick, not the exact wait
    elapsed = clock() - start
    # The initial burst is the only excess allowed over rate * elapsed.
    assert sent <= rate * elapsed + default_burst(rate) + 64 * 1024
    assert sent / elapsed == pytest.approx(rate, rel=0.01)


def test_charge_takes_tokens_unconditionally() -> None:
    """charge() goes into debt, delaying later messages so the rate holds."""
    b = TokenBucket(rate=100.0, burst=100.0, now=0.0)
    b.charge(300, 0.0)
    assert b.tokens(0.0) == pytest.approx(-200.0)
    assert b.time_until(100, 0.0) == pytest.approx(3.0)


@pytest.mark.parametrize("rate", [None, 0, 0.0])
def test_unlimited(rate: float | None) -> None:
    """Rate None or 0 lets everything through at once."""
    b = TokenBucket(rate, now=0.0)
    assert b.unlimited
    assert b.rate is None
    assert b.burst == math.inf
    assert b.tokens(0.0) == math.inf
    for _ in range(1000):
        assert b.consume(10**9, 0.0)
    assert b.time_until(10**12, 0.0) == 0.0
    b.charge(10**9, 0.0)
    assert b.tokens(1.0) == math.inf


def test_set_rate_keeps_earned_tokens_and_changes_speed() -> None:
    """A rate change applies from now on; tokens earned before are kept, capped."""
    b = TokenBucket(rate=100.0, burst=1000.0, now=0.0)
    b.consume(1000, 0.0)
    b.set_rate(1000.0, 1.0)  # 100 tokens earned at the old rate
    assert b.tokens(1.0) == pytest.approx(100.0)
    assert b.tokens(1.5) == pytest.approx(600.0)
    b.set_rate(1000.0, 1.5, burst=200.0)
    assert b.burst == 200.0
    assert b.tokens(1.5) == pytest.approx(200.0)


def test_set_rate_between_limited_and_unlimited() -> None:
    """Turning a limit off lets everything pass; turning it on starts full."""
    b = TokenBucket(rate=100.0, burst=100.0, now=0.0)
    b.consume(100, 0.0)
    b.set_rate(None, 0.0)
    assert b.consume(10**6, 0.0)
    b.set_rate(50.0, 5.0, burst=80.0)
    assert b.rate == 50.0
    assert b.tokens(5.0) == 80.0
    assert b.consume(80, 5.0)
    assert not b.consume(1, 5.0)


def test_default_burst() -> None:
    """The default burst is a quarter second of rate, at least one 64 KiB chunk."""
    assert default_burst(100.0) == MIN_BURST_BYTES
    assert default_burst(10 * MB) == 10 * MB * BURST_SECONDS
    assert TokenBucket(10 * MB, now=0.0).burst == 10 * MB * BURST_SECONDS


def test_clock_going_backwards_adds_no_tokens() -> None:
    """Time that runs backwards is treated as no time passing."""
    b = TokenBucket(rate=100.0, burst=100.0, now=10.0)
    b.consume(100, 10.0)
    assert b.tokens(5.0) == 0.0
    assert b.tokens(10.5) == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("rate", "burst"), [(-1.0, None), (math.inf, None), (math.nan, None), (10.0, 0.0), (10.0, -5.0)]
)
def test_invalid_configuration_is_refused(rate: float, burst: float | None) -> None:
    """Negative, infinite or NaN rates and non-positive bursts raise ValueError."""
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, 0.0)


@pytest.mark.parametrize("size", [-1, math.nan])
def test_invalid_size_is_refused(size: float) -> None:
    """Negative or NaN sizes raise ValueError."""
    b = TokenBucket(10.0, 10.0, 0.0)
    with pytest.raises(ValueError):
        b.consume(size, 0.0)
    with pytest.raises(ValueError):
        b.charge(size, 0.0)


def test_repr_mentions_rate() -> None:
    """repr shows the configuration, for debugging."""
    assert "rate=None" in repr(TokenBucket(None))
    assert "rate=10.0" in repr(TokenBucket(10.0, 20.0, 0.0))
