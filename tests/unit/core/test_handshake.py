"""Handshake: the checks of HELLO and WELCOME, and the HELLO schedule.

Through its own methods, on a context and a table of links as PeerLinks
gives them: the checks decide and answer a refusal; they add no link to the
table and bring none up (that is PeerLinks', tests/unit/core/test_links.py).
"""

from __future__ import annotations

from collections.abc import Callable

from operone_zmq.core.context import BrokerContext, BrokerLimits
from operone_zmq.core.handshake import Handshake
from operone_zmq.core.peers import (
    DOWN,
    HELLO_SENT,
    MAX_HELLO_BACKOFF,
    MIN_HELLO_BACKOFF,
    UP,
    PeerLink,
)
from operone_zmq.protocol import MsgType, decode
from operone_zmq.protocol.bodies import Bye, Hello, Welcome

NOW = 1000.0
GOOD, EVIL, OURS = "a" * 64, "b" * 64, "c" * 64  # Ed25519 public keys (hex)


def _ctx(**limits: int) -> BrokerContext:
    return BrokerContext("n1", BrokerLimits(**limits), NOW, lambda: NOW, "", "c", "")


def _trusting(ctx: BrokerContext, table: dict[str, PeerLink],
              learn_key: Callable[[str, str], str | None] | None = None) -> Handshake:
    """Accepts Curve key "k"."""
    return Handshake(ctx, table, learn_key=learn_key,
                     authorize=lambda node, key, token: None if key == "k" else "untrusted")


def _refusal(ctx: BrokerContext) -> str:
    ((sock, frames),) = ctx.out
    msg = decode(frames, 1)
    assert sock == 1 and frames[0] == b"n2" and msg.header.type == MsgType.BYE
    bye = Bye.unpack(msg.body)
    assert bye.code == "refused"
    return bye.reason


def test_an_accepted_hello_is_returned_and_the_table_left_alone() -> None:
    ctx = _ctx()
    table: dict[str, PeerLink] = {}
    hs = _trusting(ctx, table)
    hello = hs.check_hello(1, b"n2", "n2", "k", Hello("n2", "two", "c", batch=True).pack())
    assert hello is not None and hello.name == "two" and hello.batch
    assert table == {} and ctx.out == [] and ctx.counters["peers_refused"] == 0


def test_a_refused_hello_is_answered_and_counted_and_adds_no_link() -> None:
    ctx = _ctx()
    table: dict[str, PeerLink] = {}
    hs = _trusting(ctx, table)
    assert hs.check_hello(1, b"n2", "n2", "other", Hello("n2", cluster="c").pack()) is None
    assert _refusal(ctx) == "untrusted"
    assert ctx.counters["peers_refused"] == 1 and table == {}
    assert ctx.events == [("peer:refused", {"node": "n2", "reason": "untrusted"})]


def test_max_peers_counts_the_up_links_of_the_table() -> None:
    ctx = _ctx(max_peers=1)
    table = {"n3": PeerLink("n3", accepted_up=True)}
    hs = _trusting(ctx, table)
    assert hs.check_hello(1, b"n2", "n2", "k", Hello("n2", cluster="c").pack()) is None
    assert "already has 1 peers" in _refusal(ctx)
    table["n3"].accepted_up = False  # the table is read at each HELLO
    ctx.out.clear()
    assert hs.check_hello(1, b"n2", "n2", "k", Hello("n2", cluster="c").pack()) is not None


def test_a_welcome_from_another_cluster_or_an_unlearnable_key_keeps_the_dial_down() -> None:
    ctx = _ctx()
    hs = _trusting(ctx, {}, learn_key=lambda node, key: None if key == GOOD else "bad key")
    link = PeerLink("n2", dial=[5, 6, 7, 8], dial_state=HELLO_SENT)
    assert hs.check_welcome(link, Welcome("n2", cluster="x", signing_key=GOOD).pack()) is None
    assert link.dial_state == DOWN and "of cluster 'x' answered" in link.last_error
    link.dial_state = HELLO_SENT
    assert hs.check_welcome(link, Welcome("n2", cluster="c", signing_key=EVIL).pack()) is None
    assert link.dial_state == DOWN and link.last_error == "bad key"
    assert ctx.events == [("peer:refused", {"node": "n2", "reason": "bad key"})]
    link.dial_state = HELLO_SENT
    w = hs.check_welcome(link, Welcome("n2", "two", "c", signing_key=GOOD).pack())
    assert w is not None and w.name == "two"
    assert link.dial_state == HELLO_SENT  # bringing it UP is PeerLinks'


def test_each_hello_has_a_fresh_token_and_the_backoff_doubles_to_its_maximum() -> None:
    ctx = _ctx()
    tokens = iter(range(100))
    hs = Handshake(ctx, {}, token_factory=lambda: f"t{next(tokens)}", signing_key=OURS)
    link = PeerLink("n2", dial=[5, 6, 7, 8])
    said = []
    for _ in range(8):
        hs.send_hello(link, NOW, batch=False)
        ((sock, frames),) = ctx.out
        ctx.out.clear()
        hello = Hello.unpack(decode(frames).body)
        assert sock == 5 and hello.signing_key == OURS and hello.direct and not hello.batch
        said.append(hello.token)
    assert said == [f"t{i}" for i in range(8)]
    assert link.dial_state == HELLO_SENT and link.backoff == MAX_HELLO_BACKOFF
    assert MIN_HELLO_BACKOFF * 2 ** 7 > MAX_HELLO_BACKOFF
    link.dial_state = UP
    hs.send_hello(link, NOW, batch=True)
    assert link.dial_state == UP and Hello.unpack(decode(ctx.out[0][1]).body).batch
