"""A token bucket that holds a byte rate, with time passed in.

Rules:

- Tokens are bytes.  The bucket fills at ``rate`` bytes per second up to
  ``burst`` bytes and starts full.  Every method takes ``now`` (monotonic
  seconds); time that appears to run backwards is treated as no time passing.
- ``rate`` of ``None`` or ``0`` means *unlimited*: every message passes at once
  and :meth:`TokenBucket.tokens` reports infinity.
- A message of ``n <= burst`` bytes passes when ``n`` tokens are present.
- A message larger than the burst could never collect enough tokens, so it
  passes when the bucket is *full* and leaves the bucket in debt (negative
  tokens).  The debt is repaid at ``rate`` before anything else passes, so
  large messages still go out at the configured average rate, one at a time.
- :meth:`TokenBucket.charge` takes tokens unconditionally (for traffic that must
  never wait, such as heartbeats): it may also leave the bucket in debt, which
  keeps the long-run rate honest for everyone else.
- Comparisons allow a tolerance of one microsecond's worth of tokens, so a
  sender that sleeps exactly :meth:`TokenBucket.time_until` is never refused
  because of floating-point rounding of the clock.

No I/O, no clock of its own.
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ["BURST_SECONDS", "MIN_BURST_BYTES", "TokenBucket", "default_burst"]

#: Default burst as seconds of traffic at the bucket's rate: a quarter second
#: absorbs event-loop and scheduling jitter without letting the short-term rate
#: stray far from the configured one.
BURST_SECONDS: Final = 0.25

#: Smallest default burst: one 64 KiB file chunk (the largest message we send
#: routinely) passes without going into debt even on a slow link.
MIN_BURST_BYTES: Final = 64 * 1024

#: Time tolerance of comparisons, in seconds: far below any timer granularity,
#: yet above the rounding error of monotonic timestamps (ulp(1e9 s) ~ 1.2e-7 s).
_TIME_EPSILON: Final = 1e-6

#: Smallest token tolerance, in bytes, for very slow buckets.
_MIN_TOKEN_EPSILON: Final = 1e-9


def default_burst(rate: float) -> float:
    """Return the default burst in bytes for a bucket filling at *rate* bytes/s."""
    return max(rate * BURST_SECONDS, float(MIN_BURST_BYTES))


class TokenBucket:
    """A byte-rate limiter: ``rate`` bytes/s on average, ``burst`` bytes at once."""

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float | None, burst: float | None = None, now: float = 0.0) -> None:
        self._rate: float | None = None
        self._burst = 0.0
        self._tokens = 0.0
        self._last = float(now)
        self._configure(rate, burst)
        self._tokens = self._burst

    # ------------------------------------------------------------- properties
    @property
    def rate(self) -> float | None:
        """Fill rate in bytes per second, or ``None`` when unlimited."""
        return self._rate

    @property
    def burst(self) -> float:
        """Capacity in bytes (infinite when unlimited)."""
        return math.inf if self._rate is None else self._burst

    @property
    def unlimited(self) -> bool:
        """Whether this bucket lets everything through at once."""
        return self._rate is None

    # ------------------------------------------------------------------ query
    def tokens(self, now: float) -> float:
        """Return the tokens available at *now* (negative while in debt)."""
        if self._rate is None:
            return math.inf
        self._refill(now)
        return self._tokens

    def time_until(self, n: float, now: float) -> float:
        """Return the seconds to wait before *n* bytes may pass (0 when they may now)."""
        if self._rate is None:
            return 0.0
        self._refill(now)
        missing = self._need(n) - self._tokens
        if missing <= self._epsilon():
            return 0.0
        return missing / self._rate

    # ----------------------------------------------------------------- change
    def consume(self, n: float, now: float) -> bool:
        """Take *n* bytes' worth of tokens if they are available at *now*; say whether."""
        _check_size(n)
        if self._rate is None:
            return True
        self._refill(now)
        if self._tokens + self._epsilon() < self._need(n):
            return False
        self._tokens -= n
        return True

    def charge(self, n: float, now: float) -> None:
        """Take *n* bytes' worth of tokens unconditionally, going into debt if needed."""
        _check_size(n)
        if self._rate is None:
            return
        self._refill(now)
        self._tokens -= n

    def set_rate(self, rate: float | None, now: float, burst: float | None = None) -> None:
        """Change the rate (and optionally the burst) from *now* on.

        Tokens earned so far are kept, capped at the new burst; a bucket that
        was unlimited starts full.
        """
        was_unlimited = self._rate is None
        if not was_unlimited:
            self._refill(now)
        else:
            self._last = float(now)
        self._configure(rate, burst)
        if was_unlimited:
            self._tokens = self._burst
        else:
            self._tokens = min(self._tokens, self._burst)

    # ---------------------------------------------------------------- private
    def _configure(self, rate: float | None, burst: float | None) -> None:
        if rate is None or rate == 0:
            self._rate = None
            self._burst = 0.0
            return
        if not math.isfinite(rate) or rate < 0:
            raise ValueError(f"rate must be a positive number of bytes/s or None, not {rate!r}")
        if burst is None:
            burst = default_burst(rate)
        if not math.isfinite(burst) or burst <= 0:
            raise ValueError(f"burst must be a positive number of bytes, not {burst!r}")
        self._rate = float(rate)
        self._burst = float(burst)

    def _refill(self, now: float) -> None:
        assert self._rate is not None  # callers check; internal invariant
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
            self._last = float(now)

    def _need(self, n: float) -> float:
        # A message larger than the burst needs a full bucket (and then goes into debt).
        return min(n, self._burst)

    def _epsilon(self) -> float:
        assert self._rate is not None
        return max(_MIN_TOKEN_EPSILON, self._rate * _TIME_EPSILON)

    def __repr__(self) -> str:
        if self._rate is None:
            return "TokenBucket(rate=None)"
        return f"TokenBucket(rate={self._rate!r}, burst={self._burst!r}, tokens={self._tokens!r})"


def _check_size(n: float) -> None:
    if not n >= 0:  # also refuses NaN
        raise ValueError(f"size must be a non-negative number of bytes, not {n!r}")
