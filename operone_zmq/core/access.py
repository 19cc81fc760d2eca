"""What a client key may do: its role and allow-lists (no I/O).

Rules:

* A client connection is who ZAP verified: the ZAP ``User-Id`` (its Curve
  key, Z85) is looked up in the trust store by a :data:`GrantLookup` the
  shell injects; a key not trusted as a client gets ``None`` and every
  message it sends is answered ``refused``.
* Role ``operator`` may do everything; role ``submit`` may run its own jobs,
  cancel its own jobs and ask read-only queries (:data:`WRITE_QUERIES` and a
  ``qos`` query with ``allocate`` are refused).  Broadcasting is an operator's.
* The optional allow-lists narrow what a key may run: ``tools`` (names; a
  name ending in ``*`` is a prefix, ``fs.*``), ``nodes`` (where a job may
  run; checked on the node the origin chose).  Empty means no limit.
* A broker core without a lookup (tests, simulations) treats every client
  as an operator without allow-lists: the checks are the shell's to enable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "OPERATOR",
    "ROLES",
    "WRITE_QUERIES",
    "Grant",
    "GrantLookup",
    "query_refusal",
]

#: The roles of a client key, most powerful first.
ROLES: Final = ("operator", "submit")

#: Queries that change the broker's state (besides ``qos`` with ``allocate``).
WRITE_QUERIES: Final = frozenset({"connect"})


@dataclass(frozen=True, slots=True)
class Grant:
    """What one client key may do."""

    role: str = "operator"
    #: Tools it may run (a trailing ``*`` is a prefix); empty: any tool.
    tools: frozenset[str] = frozenset()
    #: Nodes its jobs may run on; empty: any node.
    nodes: frozenset[str] = frozenset()
    #: The key's fingerprint (16 hex digits), carried with its jobs.
    fingerprint: str = ""

    @property
    def operator(self) -> bool:
        return self.role == "operator"

    def tool_refusal(self, tool: str) -> str | None:
        """Why this key may not run ``tool``, or None."""
        if not self.tools or tool in self.tools:
            return None
        for pattern in self.tools:
            if pattern.endswith("*") and tool.startswith(pattern[:-1]):
                return None
        return (f"this client key ({self.fingerprint or 'unnamed'}) may not run tool"
                f" '{tool}' (allowed: {', '.join(sorted(self.tools))})")

    def node_refusal(self, node: str) -> str | None:
        """Why a job of this key may not run on ``node``, or None."""
        if not self.nodes or node in self.nodes:
            return None
        return (f"this client key ({self.fingerprint or 'unnamed'}) may not run jobs on"
                f" node '{node}' (allowed: {', '.join(sorted(self.nodes))})")


#: Every client of a core without a lookup.
OPERATOR: Final = Grant()

#: (Curve key Z85 from ZAP User-Id, or None) -> its grant, or None when the
#: key is not trusted as a client.
GrantLookup = Callable[["str | None"], "Grant | None"]


def query_refusal(grant: Grant, what: str, allocate: bool) -> str | None:
    """Why ``grant`` may not ask query ``what`` (``allocate``: a qos
    allocation), or None."""
    if grant.operator:
        return None
    if what in WRITE_QUERIES or (what == "qos" and allocate):
        return (f"query '{what}'{' with allocate' if what == 'qos' else ''} needs role"
                f" 'operator'; this client key has role '{grant.role}'")
    return None
