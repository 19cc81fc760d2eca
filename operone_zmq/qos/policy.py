"""QoS policies per message type, and the retry policies they carry.

Rules:

- A :class:`QoSPolicy` is immutable and validates itself: a priority class
  (a name such as ``"high"`` is accepted and parsed), an optional
  ``max_bandwidth`` in MB/s (:data:`BYTES_PER_MB` bytes per MB), an optional
  ``max_latency`` in ms and an optional :class:`RetryPolicy`.
- A :class:`RetryPolicy` says how often and how late a failed send or job is
  retried.  Attempts are numbered from 1 (the first *retry*).  ``linear``
  waits ``initial_delay * attempt``; ``exponential`` waits
  ``initial_delay * 2 ** (attempt - 1)``; both are capped at ``max_delay``.
  An attempt beyond ``max_retries`` is not made (:meth:`RetryPolicy.should_retry`).
- The defaults are the original package's: ``heartbeat`` and ``handshake`` are
  critical (1,000 and 5,000 ms), ``tool-call`` and ``tool-result`` high,
  ``file-transfer`` low at 5 MB/s; every other type gets
  :data:`DEFAULT_POLICY` (normal, 3 exponential retries from 1 s).

No I/O, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

from operone_zmq.qos.priority import Priority

__all__ = [
    "BYTES_PER_MB",
    "DEFAULT_MAX_RETRY_DELAY_MS",
    "DEFAULT_POLICIES",
    "DEFAULT_POLICY",
    "Backoff",
    "QoSPolicy",
    "RetryPolicy",
]

#: Bytes in the "MB" of every MB/s in this package: SI megabytes, the unit that
#: network tools and our benchmarks report, so a 5 MB/s allocation means
#: 5,000,000 bytes per second.
BYTES_PER_MB: Final = 1_000_000

#: Cap on one retry delay in ms: past 30 s a peer is better declared lost by
#: the heartbeat than waited for.
DEFAULT_MAX_RETRY_DELAY_MS: Final = 30_000.0

#: Doublings after which an exponential delay is certainly past any sane cap;
#: keeps ``2 ** n`` from overflowing a float for absurd attempt numbers.
_MAX_DOUBLINGS: Final = 64

Backoff = Literal["linear", "exponential"]
_BACKOFFS: Final[frozenset[str]] = frozenset({"linear", "exponential"})


@dataclass(frozen=True, slots=True, init=False)
class RetryPolicy:
    """How many times, and how long apart, a failed message is retried.

    Built as ``RetryPolicy(max_retries, backoff, initial_delay, max_delay=...)``:
    a non-negative integer, ``"linear"`` or ``"exponential"``, and delays in
    ms (non-negative numbers); anything else raises :class:`ValueError`.
    """

    max_retries: int
    backoff: Backoff
    initial_delay: float  # ms
    max_delay: float = DEFAULT_MAX_RETRY_DELAY_MS  # ms

    # (Checked before they are bound, so the parameters are ``object``:
    # compiled by mypyc, a field's type is checked when it is set, and a
    # float count or a text delay would raise TypeError instead of the
    # ValueError above, and a boolean count pass as 1.)
    def __init__(
        self,
        max_retries: object,
        backoff: object,
        initial_delay: object,
        max_delay: object = DEFAULT_MAX_RETRY_DELAY_MS,
    ) -> None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int):
            raise ValueError(f"max_retries must be an integer, not {max_retries!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, not {max_retries!r}")
        if not isinstance(backoff, str) or backoff not in _BACKOFFS:
            raise ValueError(f"backoff must be 'linear' or 'exponential', not {backoff!r}")
        set_ = object.__setattr__
        set_(self, "max_retries", max_retries)
        set_(self, "backoff", backoff)
        set_(self, "initial_delay", _check_non_negative("initial_delay", initial_delay))
        set_(self, "max_delay", _check_non_negative("max_delay", max_delay))

    def should_retry(self, attempt: int) -> bool:
        """Whether retry number *attempt* (counting from 1) may be made."""
        return 1 <= attempt <= self.max_retries

    def delay(self, attempt: int) -> float:
        """Return the wait in ms before retry number *attempt* (counting from 1)."""
        if attempt < 1:
            raise ValueError(f"retry attempts are numbered from 1, not {attempt!r}")
        if self.backoff == "linear":
            raw = self.initial_delay * attempt
        elif attempt - 1 >= _MAX_DOUBLINGS:
            raw = math.inf if self.initial_delay > 0 else 0.0
        else:
            raw = self.initial_delay * 2.0 ** (attempt - 1)
        return min(raw, self.max_delay)


@dataclass(frozen=True, slots=True, init=False)
class QoSPolicy:
    """How messages of one type are treated: class, bandwidth cap, latency goal, retries.

    Built as ``QoSPolicy(priority, max_bandwidth=None, max_latency=None,
    retry_policy=None)``: a :class:`Priority` or its name or number, positive
    finite numbers (MB/s, ms) or ``None``, a :class:`RetryPolicy` or ``None``;
    anything else raises :class:`ValueError`.
    """

    priority: Priority
    max_bandwidth: float | None = None  # MB/s
    max_latency: float | None = None  # ms
    retry_policy: RetryPolicy | None = field(default=None)

    # (``object`` parameters, checked before they are bound: see RetryPolicy.)
    def __init__(
        self,
        priority: object,
        max_bandwidth: object = None,
        max_latency: object = None,
        retry_policy: object = None,
    ) -> None:
        if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
            raise ValueError(
                f"retry_policy must be a RetryPolicy or None, not {type(retry_policy).__name__}"
            )
        set_ = object.__setattr__
        set_(self, "priority", Priority.parse(priority))
        set_(self, "max_bandwidth",
             None if max_bandwidth is None else _check_positive("max_bandwidth", max_bandwidth))
        set_(self, "max_latency",
             None if max_latency is None else _check_positive("max_latency", max_latency))
        set_(self, "retry_policy", retry_policy)

    @property
    def max_bandwidth_bytes(self) -> float | None:
        """The bandwidth cap in bytes per second, or ``None`` when uncapped."""
        return None if self.max_bandwidth is None else self.max_bandwidth * BYTES_PER_MB


def _check_non_negative(name: str, value: object) -> float:
    """Return *value* as a float if it is a number >= 0 (not a bool), else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, not {value!r}")
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"{name} must be >= 0, not {value!r}")
    try:
        return float(value)
    except OverflowError:  # an int beyond any float
        raise ValueError(f"{name} is too large: {value!r}") from None


def _check_positive(name: str, value: object) -> float:
    number = _check_non_negative(name, value)
    if number == 0 or not math.isfinite(number):
        raise ValueError(f"{name} must be a positive finite number, not {value!r}")
    return number


#: The policy of every message type that has none of its own.
DEFAULT_POLICY: Final = QoSPolicy(
    priority=Priority.NORMAL,
    retry_policy=RetryPolicy(max_retries=3, backoff="exponential", initial_delay=1000.0),
)

#: The original package's policies for its standard message types.
DEFAULT_POLICIES: Final[MappingProxyType[str, QoSPolicy]] = MappingProxyType(
    {
        "heartbeat": QoSPolicy(
            priority=Priority.CRITICAL,
            max_latency=1000.0,
            retry_policy=RetryPolicy(max_retries=0, backoff="linear", initial_delay=0.0),
        ),
        "handshake": QoSPolicy(
            priority=Priority.CRITICAL,
            max_latency=5000.0,
            retry_policy=RetryPolicy(max_retries=5, backoff="exponential", initial_delay=500.0),
        ),
        "tool-call": QoSPolicy(
            priority=Priority.HIGH,
            retry_policy=RetryPolicy(max_retries=3, backoff="exponential", initial_delay=1000.0),
        ),
        "tool-result": QoSPolicy(
            priority=Priority.HIGH,
            retry_policy=RetryPolicy(max_retries=3, backoff="exponential", initial_delay=1000.0),
        ),
        "file-transfer": QoSPolicy(
            priority=Priority.LOW,
            max_bandwidth=5.0,
            retry_policy=RetryPolicy(max_retries=10, backoff="linear", initial_delay=5000.0),
        ),
    }
)
