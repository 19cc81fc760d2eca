"""The default clock of the QoS package, imported lazily.

Rule: the QoS modules do not import :mod:`time` at module level (they are pure
logic, and tests drive them with :class:`operone_zmq.testing.FakeClock`); a
component that needs a clock and was not given one calls :func:`monotonic`,
which imports :mod:`time` on first use.
"""

from __future__ import annotations

__all__ = ["monotonic"]


def monotonic() -> float:
    """Return :func:`time.monotonic`, importing :mod:`time` only when first called."""
    import time  # lazily: the package must not import it at module level

    return time.monotonic()
