"""The four priority classes of the mesh and how to name them.

Rules:

- There are exactly four classes, ``critical`` (0), ``high`` (1), ``normal`` (2)
  and ``low`` (3).  A smaller number is a more urgent class, so ``min()`` over a
  set of classes is the most urgent one and ``sorted()`` is the service order.
- Each class has its own sockets (DESIGN.md section 2); the value of a class is
  also its port offset from the broker's base port.
- :meth:`Priority.parse` is the one place that turns user or wire input (a
  name, a number or a :class:`Priority`) into a class; anything else raises
  :class:`ValueError` naming the accepted values.  Booleans are refused even
  though Python treats them as integers.

No I/O, no clock.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

__all__ = ["PRIORITIES", "Priority"]


class Priority(IntEnum):
    """A priority class; smaller values are served first."""

    CRITICAL = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3

    @property
    def label(self) -> str:
        """The lower-case name used in configuration and on the wire (``"critical"``)."""
        return self.name.lower()

    @classmethod
    def parse(cls, value: object) -> Priority:
        """Return the class named or numbered by *value* (a name, a number or a
        :class:`Priority`), or raise :class:`ValueError`.

        (*value* is typed ``object``: it is user or wire input, and compiled
        by mypyc a narrower type would be checked on the call, raising
        TypeError for a float or None instead of the ValueError above.)
        """
        if isinstance(value, Priority):
            return value
        if isinstance(value, bool):
            raise ValueError(f"priority must be a name or 0..3, not a boolean ({value!r})")
        if isinstance(value, int):
            try:
                return cls(value)
            except ValueError:
                raise ValueError(
                    f"unknown priority number {value!r}; expected 0..{len(cls) - 1} "
                    f"({_ACCEPTED_NAMES})"
                ) from None
        if isinstance(value, str):
            member = _BY_LABEL.get(value.strip().lower())
            if member is None:
                raise ValueError(f"unknown priority {value!r}; expected one of {_ACCEPTED_NAMES}")
            return member
        raise ValueError(
            f"priority must be a name or a number, not {type(value).__name__} ({value!r})"
        )

    def __str__(self) -> str:
        return self.label


#: Every class, most urgent first (the strict service order).
PRIORITIES: Final[tuple[Priority, ...]] = tuple(sorted(Priority))

_BY_LABEL: Final[dict[str, Priority]] = {p.label: p for p in Priority}
_ACCEPTED_NAMES: Final = ", ".join(repr(p.label) for p in PRIORITIES)
