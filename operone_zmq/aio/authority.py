"""Authority: a broker's answers from its trust store and its tokens.

Who may link to this broker as which node (:meth:`Authority.authorize`, the
HELLO check of docs/protocol.md §2.1 with its optional JWT), what a client
key may do (:meth:`Authority.grant`, cached per trust snapshot), which
signing key the store binds to a node, and the tokens this broker issues.
The broker core asks these through the callables it is built with; nothing
here touches a socket.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..core.access import Grant
from ..errors import AuthenticationError, ConfigError, OperoneError
from ..security.keys import TrustedKey

__all__ = ["MAX_CACHED_GRANTS", "Authority", "KeyChecker"]

#: Client keys whose Grant is kept per trust snapshot (past this, a key's
#: Grant is built per message, as it would be without the cache).
MAX_CACHED_GRANTS = 4096


class KeyChecker(Protocol):
    """The trust store as the broker uses it."""

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP: is this client key trusted?"""
        ...

    def name_of(self, public_key: bytes) -> str | None:
        """The name a key is trusted under (a peer's must be its node id)."""
        ...

    def key_of(self, name: str) -> bytes | None:
        """The trusted key named ``name`` (to dial that node)."""
        ...

    def entry_of(self, public_key: bytes) -> TrustedKey | None:
        """What a trusted key may do (node, client role, allow-lists), or None."""
        ...

    def named(self, name: str) -> TrustedKey | None:
        """The trusted entry called ``name`` (a node's signing key), or None."""
        ...

    def by_fingerprint(self, fp: str) -> TrustedKey | None:
        """The trusted entry whose key has fingerprint ``fp``, or None."""
        ...

    def snapshot(self) -> object:
        """A token that is another object once what is trusted changed."""
        ...

    def add_pending(self, name: str, public_key: bytes, source: str = "") -> Any:
        """Remember an untrusted key for ``operone keys accept``."""
        ...


def _grant_of(entry: TrustedKey | None) -> Grant | None:
    if entry is None or entry.role is None:
        return None
    return Grant(entry.role, frozenset(entry.tools), frozenset(entry.nodes), entry.fingerprint)


class _Grants:
    """Grants derived from one trust snapshot, by what they were asked by
    (at most MAX_CACHED_GRANTS; past that, built per question)."""

    def __init__(self, trust: KeyChecker, lookup: Callable[[str], TrustedKey | None]) -> None:
        self._trust = trust
        self._lookup = lookup
        self._snap: object = None
        self._by: dict[str, Grant | None] = {}

    def get(self, key: str) -> Grant | None:
        snap = self._trust.snapshot()
        if snap is not self._snap:
            self._snap, self._by = snap, {}
        by = self._by
        try:
            return by[key]
        except KeyError:
            pass
        grant = _grant_of(self._lookup(key))
        if len(by) < MAX_CACHED_GRANTS:
            by[key] = grant
        return grant


class Authority:
    """The trust store and the cluster's token secret, as one broker asks them."""

    def __init__(self, node_id: str, cluster: str, public_key: bytes, trust: KeyChecker, *,
                 jwt_secret: str | None = None, require_token: bool = False,
                 token_ttl: float = 3600.0) -> None:
        self._node_id = node_id
        self._cluster = cluster
        self._public_key = public_key
        self._trust = trust
        self._jwt_secret = jwt_secret
        self._require_token = require_token
        self._token_ttl = token_ttl
        self._grants = _Grants(trust, lambda key: trust.entry_of(key.encode()))
        self._fp_grants = _Grants(trust, trust.by_fingerprint)

    @property
    def issues_tokens(self) -> bool:
        """Whether a jwt_secret is configured (our HELLOs then carry a token)."""
        return self._jwt_secret is not None

    def grant_by_fingerprint(self, fp: str) -> Grant | None:
        """What our trust store grants the client key with fingerprint ``fp``.

        Asked for every routed JOB this node runs; cached per trust snapshot
        as :meth:`grant` is."""
        return self._fp_grants.get(fp)

    def trust_snapshot(self) -> object:
        """The trust store's current snapshot: another object once ``trusted/``
        changed (what the core keeps per snapshot: core/trustview.py)."""
        return self._trust.snapshot()

    def signing_key_of(self, node: str) -> str | None:
        """The signing key the trust store binds to node ``node``, if any."""
        entry = self._trust.named(node)
        return entry.signing_key or None if entry is not None and entry.node else None

    def grant(self, key: str | None) -> Grant | None:
        """What the client with Curve ``key`` may do (None: not trusted as a client).

        Asked for every client message: answered from a cache of the current
        trust snapshot (a key decoded and looked up, and a Grant built, per
        job was ~7 % of the broker's CPU); a changed ``trusted/`` is a new
        snapshot, and a new cache."""
        if key is None:
            return None  # not over CurveZMQ: frontends always are, so never reached
        return self._grants.get(key)

    def own_token(self) -> str | None:
        """A fresh token of ours for a HELLO (None if it cannot be made)."""
        try:
            return self.generate_jwt()
        except OperoneError:
            return None

    def authorize(self, node: str, key: str | None, token: str | None) -> str | None:
        """May ``node``, authenticated by Curve ``key``, be our peer?  None or why not."""
        if key is None:
            return "no CurveZMQ key on this connection"
        entry = self._trust.entry_of(key.encode())
        if entry is None:
            return f"the key of '{node}' is not trusted here"
        if entry.name != node:
            return (f"the key this connection authenticated with is trusted as '{entry.name}',"
                    f" not as node '{node}'")
        if not entry.node:
            return (f"the key this connection authenticated with is trusted as a client"
                    f" ('{node}'), not as a node (operone keys accept --node)")
        if token is not None or self._require_token:
            if token is None:
                return "this broker requires a token (JWT) in HELLO"
            if self._jwt_secret is None:
                return "a token was sent but this broker has no jwt_secret to check it"
            from ..security.tokens import verify_jwt

            try:
                verify_jwt(token, self._jwt_secret, self._cluster, expected_subject=node,
                           expected_curve_key=key.encode())
            except AuthenticationError as exc:
                return f"token refused: {exc}"
        return None

    def generate_jwt(self, subject: str | None = None, ttl: float | None = None) -> str:
        """A token for ``subject`` (default: this node), signed with the cluster's
        jwt_secret and bound to this node's Curve key (the original's generateJWT)."""
        if self._jwt_secret is None:
            raise ConfigError("no security.jwt_secret configured: cannot issue tokens")
        from ..security.tokens import generate_jwt

        return generate_jwt(self._jwt_secret, subject or self._node_id, self._cluster,
                            ttl=ttl or self._token_ttl,
                            curve_key=self._public_key if subject in (None, self._node_id)
                            else None)
