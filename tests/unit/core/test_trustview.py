"""TrustView: the trust store's signing keys and grants, kept per snapshot.

On a context whose clock the test moves, and lookups that count what they
were asked (the store's side: a dict per snapshot).  A change to the store
is seen once RECHECK of the loop's clock has passed, never answered from
what was kept for the old snapshot; without a snapshot nothing is kept.
"""

from __future__ import annotations

from operone_zmq.core.access import Grant
from operone_zmq.core.context import BrokerContext, BrokerLimits
from operone_zmq.core.trustview import MAX_KEPT, RECHECK, TrustView

NOW = 1000.0


class Store:
    """A trust store's answers, and a new snapshot object whenever they change."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {"a": "aa" * 32}
        self.grants: dict[str, Grant] = {"fp1": Grant("submit", fingerprint="fp1")}
        self.snap = object()
        self.asked: list[str] = []

    def snapshot(self) -> object:
        return self.snap

    def signing_key(self, node: str) -> str | None:
        self.asked.append(node)
        return self.keys.get(node)

    def grant(self, fp: str) -> Grant | None:
        self.asked.append(fp)
        return self.grants.get(fp)

    def change(self) -> None:
        self.snap = object()


def _view(store: Store, *, snapshot: bool = True) -> tuple[BrokerContext, TrustView]:
    ctx = BrokerContext("n1", BrokerLimits(), NOW, lambda: NOW, "", "c", "")
    return ctx, TrustView(ctx, store.snapshot if snapshot else None, store.signing_key,
                          store.grant)


def test_answers_are_kept_while_the_snapshot_is_the_same() -> None:
    store = Store()
    ctx, view = _view(store)
    for _ in range(3):
        assert view.signing_key("a") == "aa" * 32
        assert view.signing_key("nobody") is None  # an unknown node is kept too
        assert view.grant("fp1") == Grant("submit", fingerprint="fp1")
        assert view.grant("fp2") is None
        ctx.now += RECHECK  # the same snapshot after each look
    assert store.asked == ["a", "nobody", "fp1", "fp2"]


def test_a_changed_snapshot_is_seen_within_recheck_and_asked_again() -> None:
    store = Store()
    ctx, view = _view(store)
    assert view.signing_key("a") == "aa" * 32
    assert view.grant("fp1") is not None
    store.keys["a"] = "bb" * 32  # a rotated key
    del store.grants["fp1"]  # a revoked client
    store.change()
    ctx.now += RECHECK / 2
    assert view.signing_key("a") == "aa" * 32  # not looked at yet
    ctx.now += RECHECK / 2
    assert view.signing_key("a") == "bb" * 32
    assert view.grant("fp1") is None
    assert store.asked == ["a", "fp1", "a", "fp1"]


def test_a_clock_set_back_looks_at_the_snapshot_again() -> None:
    store = Store()
    ctx, view = _view(store)
    view.signing_key("a")
    store.keys["a"] = "cc" * 32
    store.change()
    ctx.now -= 10.0
    assert view.signing_key("a") == "cc" * 32


def test_without_a_snapshot_every_question_goes_to_the_store() -> None:
    store = Store()
    _, view = _view(store, snapshot=False)
    assert view.signing_key("a") == "aa" * 32
    store.keys["a"] = "dd" * 32
    assert view.signing_key("a") == "dd" * 32
    assert view.grant("fp1") is not None and view.grant("fp1") is not None
    assert store.asked == ["a", "a", "fp1", "fp1"]


def test_no_lookup_answers_nothing() -> None:
    ctx = BrokerContext("n1", BrokerLimits(), NOW, lambda: NOW, "", "c", "")
    view = TrustView(ctx, object, None, None)
    assert view.signing_key("a") is None and view.grant("fp1") is None


def test_what_is_kept_is_bounded() -> None:
    store = Store()
    _, view = _view(store)
    for i in range(MAX_KEPT + 5):
        view.signing_key(f"n{i}")
        view.grant(f"fp{i}")
    assert len(view._keys) <= MAX_KEPT and len(view._grants) <= MAX_KEPT
    assert view.signing_key("a") == "aa" * 32
