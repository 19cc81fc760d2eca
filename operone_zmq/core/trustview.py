"""The trust store's answers the per-message checks ask, kept per snapshot (no I/O).

Two questions are asked for every routed message at its two ends: the
signing key of a node id (to sign, MAC or verify it) and the grant of the
client key a JOB was submitted with (the executing node's own check).  The
trust store answers them through interpreted code (the Authority, the
store's snapshot and its freshness check): measured with callgrind on the
destination of a two-hop job, 3k instructions per key asked and 12k per
grant, ~18k per job there and ~6k at its origin.

:class:`TrustView` keeps each answer while the store's snapshot is the same
object (a changed ``trusted/`` is a new snapshot), and asks the store for
its snapshot at most every :data:`RECHECK` seconds of the loop's clock, so a
revocation or a rotated key takes effect within that of the store noticing
it (the store re-reads ``trusted/`` within about half a second).  Without a
snapshot to ask (``snapshot`` None: a core built without a trust store, as
in unit tests) nothing is kept: every question goes to the lookups.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

from .access import Grant
from .context import BrokerContext

__all__ = ["MAX_KEPT", "RECHECK", "TrustView"]

_T = TypeVar("_T")

#: Seconds (loop clock) between two looks at the store's snapshot: a tenth of
#: the store's own re-read interval, so what it notices is seen here within
#: about 0.05 s more.
RECHECK: Final = 0.05

#: Answers kept per kind (node ids, fingerprints); past that all are
#: forgotten and asked again (an answer costs one lookup).
MAX_KEPT: Final = 10_000


class TrustView:
    """Signing keys by node id and grants by client-key fingerprint, from the
    trust store's lookups, kept while its snapshot is unchanged."""

    def __init__(self, ctx: BrokerContext, snapshot: Callable[[], object] | None,
                 signing_key: Callable[[str], str | None] | None,
                 grant: Callable[[str], Grant | None] | None) -> None:
        self._ctx = ctx
        self._snapshot = snapshot
        self._signing_key = signing_key
        self._grant = grant
        self._snap: object = None
        self._next_check = -1.0
        self._keys: dict[str, str | None] = {}
        self._grants: dict[str, Grant | None] = {}

    def _current(self) -> bool:
        """Whether kept answers may be used (after dropping them if the store's
        snapshot changed since they were asked)."""
        snapshot = self._snapshot
        if snapshot is None:
            return False
        now = self._ctx.now
        if now >= self._next_check or now < self._next_check - RECHECK:
            # (A clock set back, as a test's injected one may be: look again.)
            self._next_check = now + RECHECK
            snap = snapshot()
            if snap is not self._snap:
                self._snap = snap
                self.forget()
        return True

    def signing_key(self, node: str) -> str | None:
        """The signing key (hex) the trust store binds to ``node``, if any."""
        return self._ask(self._keys, self._signing_key, node)

    def grant(self, fingerprint: str) -> Grant | None:
        """What the trust store grants the client key of ``fingerprint``."""
        return self._ask(self._grants, self._grant, fingerprint)

    def _ask(self, kept: dict[str, _T | None], lookup: Callable[[str], _T | None] | None,
             key: str) -> _T | None:
        """``lookup(key)``, from ``kept`` while the snapshot is unchanged."""
        if lookup is None:
            return None
        if not self._current():
            return lookup(key)
        try:
            return kept[key]
        except KeyError:
            pass
        answer = lookup(key)
        if len(kept) >= MAX_KEPT:
            kept.clear()
        kept[key] = answer
        return answer

    def forget(self) -> None:
        """Ask the store again for everything (its snapshot changed)."""
        self._keys.clear()
        self._grants.clear()
