"""The HELLO/WELCOME handshake of peer links: what we say, whom we accept (no I/O).

:class:`~.links.PeerLinks` owns the table of links and brings a transport up
or down; this part decides whether a handshake message lets it, and writes
the messages of the handshake:

* HELLO on a dialled link (:meth:`Handshake.send_hello`): our identity, a
  fresh token from the token factory (tokens expire; links outlive them),
  our Ed25519 public key (``direct`` when we have one) and ``batch`` when
  the face batches; each retry doubles the backoff up to
  :data:`~.peers.MAX_HELLO_BACKOFF`.
* A HELLO on a frontend ROUTER (:meth:`Handshake.check_hello`) is accepted
  only when it is well formed, claims the node id its routing id names
  (not ours), comes in a cluster that is ours, from an unguessable dial
  incarnation when signatures are on, passes the
  :data:`~.context.Authorizer` and the learned-key check, and does not take
  us past ``max_peers``; else it is refused with BYE ``refused`` (counted
  ``peers_refused``, event ``peer:refused``).  A late HELLO of a connection
  its dialler has replaced since is dropped unanswered
  (``superseded_hellos``).  An accepted one is answered with WELCOME
  (:meth:`Handshake.send_welcome`).
* A WELCOME on one of our dialled DEALERs (:meth:`Handshake.check_welcome`)
  must come from the node and cluster we dialled and pass the learned-key
  check; else the dialled transport stays (or goes) DOWN with the reason in
  the link's ``last_error``.

The checks write nothing of a link but the outcome of a refused WELCOME and
the HELLO schedule (``dial_state`` DOWN -> HELLO_SENT, ``next_hello``,
``backoff``); what an accepted handshake sets on the link, and the link
coming up, are :class:`~.links.PeerLinks`'.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ProtocolError
from ..protocol.bodies import Bye, Hello, Welcome
from ..protocol.codec import TAG, Header
from ..protocol.frame import Frame
from .context import _BYE, _HELLO, _WELCOME, Authorizer, BrokerContext
from .peers import (
    DOWN,
    HELLO_SENT,
    MAX_HELLO_BACKOFF,
    PeerLink,
    superseded,
    unguessable_rid,
)

__all__ = ["Handshake"]


def _refuse_all(node: str, key: str | None, token: str | None) -> str | None:
    return "this broker accepts no peer links (no authorizer configured)"


class Handshake:
    """Who may become a neighbour, and the HELLO and WELCOME we send."""

    def __init__(self, ctx: BrokerContext, links: dict[str, PeerLink], *,
                 authorize: Authorizer | None = None,
                 token_factory: Callable[[], str | None] | None = None,
                 signing_key: str = "",
                 learn_key: Callable[[str, str], str | None] | None = None) -> None:
        self._ctx = ctx
        #: The table of links (:attr:`~.links.PeerLinks.links`, the same dict),
        #: read only here.
        self._links = links
        #: Our Ed25519 public key, sent in HELLO and WELCOME; and the check of a
        #: neighbour's (None: signatures are off in this core).
        self._signing_key = signing_key
        self._learn_key = learn_key
        self._authorize = authorize or _refuse_all
        #: Mints a fresh token for each HELLO (tokens expire; links outlive them).
        self._token_factory = token_factory

    def send_hello(self, link: PeerLink, now: float, batch: bool,
                   sig_in_tag: bool = True) -> None:
        """Say HELLO on the dialled link (``batch``: we offer BATCH;
        ``sig_in_tag``: we say we take signatures after the tag) and
        schedule the next try."""
        if link.dial is None:
            return
        ctx = self._ctx
        token = link.token
        if token is None and self._token_factory is not None:
            token = self._token_factory()
        body = Hello(ctx.node_id, ctx.name, ctx.cluster, token, self._signing_key,
                     incarnation=ctx.incarnation,
                     direct=bool(self._signing_key), batch=batch,
                     sig_in_tag=sig_in_tag).pack()
        ctx.out.append((link.dial[0], [TAG, ctx.header(_HELLO, ctx.next_id(), link.node, 0),
                                       body]))
        if link.dial_state == DOWN:
            link.dial_state = HELLO_SENT
        link.next_hello = now + link.backoff
        link.backoff = min(MAX_HELLO_BACKOFF, link.backoff * 2)

    def check_hello(self, cls: int, rid: bytes, node: str, uid: str | None,
                    body: Frame) -> Hello | None:
        """The HELLO from routing id ``rid`` (naming ``node``, Curve key
        ``uid``) on the frontend ROUTER of class ``cls``, when it may bring
        the accepted transport up; None when it was refused (BYE sent) or
        is a superseded one (dropped)."""
        ctx = self._ctx
        limits = ctx.limits

        def refuse(reason: str) -> None:
            ctx.counters["peers_refused"] += 1
            ctx.events.append(("peer:refused", {"node": node, "reason": reason}))
            ctx.out.append((cls, [rid, TAG, ctx.header(_BYE, ctx.next_id(), node, cls),
                                  Bye(reason, "refused").pack()]))

        try:
            hello = Hello.unpack(body)
        except ProtocolError as exc:
            refuse(f"bad HELLO: {exc}")
            return None
        if hello.node != node:
            refuse(f"HELLO claims to be '{hello.node}' on a connection whose routing id"
                   f" names '{node}'")
            return None
        if node == ctx.node_id:
            refuse(f"'{node}' is this broker's own node id")
            return None
        if self._learn_key is not None and not unguessable_rid(rid):
            # What we send to this neighbour goes to whoever holds its routing
            # id: it must be one nobody else can present (peers.py).
            refuse(f"the routing id of '{node}' must be a dial incarnation NODE#EPOCH.SEQ"
                   " with a random 64-bit EPOCH (a signing broker always dials so)")
            return None
        if hello.cluster != ctx.cluster:
            refuse(f"cluster '{hello.cluster}' is not this broker's cluster '{ctx.cluster}'")
            return None
        reason = self._authorize(node, uid, hello.token)
        if reason is None and self._learn_key is not None:
            reason = self._learn_key(node, hello.signing_key)
        if reason is not None:
            refuse(reason)
            return None
        links = self._links
        link = links.get(node)
        up_now = sum(1 for lk in links.values() if lk.up)
        if (link is None or not link.up) and up_now >= limits.max_peers:
            refuse(f"this broker already has {up_now} peers (max_peers"
                   f" {limits.max_peers})")
            return None
        if (link is not None and link.accepted_up and link.rid is not None
                and superseded(rid, link.rid)):
            # A late HELLO of a connection the dialler has replaced since.
            ctx.counters["superseded_hellos"] += 1
            return None
        return hello

    def send_welcome(self, cls: int, rid: bytes, node: str, h: Header, batch: bool,
                     sig_in_tag: bool = True) -> None:
        """Answer the accepted HELLO ``h`` from ``rid`` (``batch``: we offer
        BATCH; ``sig_in_tag`` as in :meth:`send_hello`)."""
        ctx = self._ctx
        ctx.out.append((cls, [rid, TAG, ctx.header(_WELCOME, h.id, node, cls, h.id),
                              Welcome(ctx.node_id, ctx.name, ctx.cluster,
                                      self._signing_key,
                                      incarnation=ctx.incarnation,
                                      direct=bool(self._signing_key),
                                      batch=batch, sig_in_tag=sig_in_tag).pack()]))

    def check_welcome(self, link: PeerLink, body: Frame) -> Welcome | None:
        """The WELCOME on the dialled link, when it may bring that transport
        up; None when it may not (the reason in ``link.last_error``)."""
        try:
            w = Welcome.unpack(body)
        except ProtocolError as exc:
            link.last_error = f"bad WELCOME: {exc}"
            return None
        ctx = self._ctx
        if w.node != link.node or w.cluster != ctx.cluster:
            link.last_error = (f"dialled '{link.node}' of cluster '{ctx.cluster}' but"
                               f" '{w.node}' of cluster '{w.cluster}' answered")
            link.dial_state = DOWN
            return None
        if self._learn_key is not None:
            refusal = self._learn_key(link.node, w.signing_key)
            if refusal is not None:
                link.last_error = refusal
                link.dial_state = DOWN
                ctx.events.append(("peer:refused", {"node": link.node, "reason": refusal}))
                return None
        return w
