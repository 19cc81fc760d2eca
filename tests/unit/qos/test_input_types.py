"""Values of the wrong type get the documented ValueError in both builds.

Compiled by mypyc (tox env ``compiled``), a parameter, field or loop name
typed ``int`` or ``float`` converts a boolean to 1 / 1.0 and refuses a text
or a float with TypeError before any check of ours runs; the QoS checks
take ``object`` for that reason.  These cases passed the pure build and
failed the compiled one before they did.
"""

from __future__ import annotations

from typing import Any

import pytest

from operone_zmq.qos import ClassScheduler, Priority, QoSManager, QoSPolicy, RetryPolicy
from operone_zmq.testing import FakeClock

PEER = "peer-1"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"priority": 1.0},
        {"priority": None},
        {"priority": "low", "max_bandwidth": True},
        {"priority": "low", "max_bandwidth": "5"},
        {"priority": "low", "retry_policy": "exponential"},
    ],
)
def test_a_policy_refuses_wrong_types_with_value_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        QoSPolicy(**kwargs)


@pytest.mark.parametrize(
    "args",
    [("3", "linear", 0), (1, 5, 0), (1, ["linear"], 0), (1, "linear", True),
     (1, "linear", "0"), (1, "linear", 0, None), (1, "linear", 10**400)],
)
def test_a_retry_policy_refuses_wrong_types_with_value_error(args: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(*args)


def test_policies_keep_their_values_as_floats_and_classes() -> None:
    p = QoSPolicy(3, max_bandwidth=5, max_latency=100,
                  retry_policy=RetryPolicy(2, "linear", 500))
    assert p.priority is Priority.LOW
    assert (p.max_bandwidth, p.max_latency, p.max_bandwidth_bytes) == (5.0, 100.0, 5e6)
    assert p.retry_policy is not None and p.retry_policy.delay(2) == 1000.0
    assert p == QoSPolicy(Priority.LOW, 5.0, 100.0, RetryPolicy(2, "linear", 500.0))


@pytest.mark.parametrize(
    "kwargs",
    [{"latency": True}, {"jitter": "1"}, {"packet_loss": False}, {"bandwidth": "x"},
     {"queue_depth": True}, {"queue_depth": 1.5}],
)
def test_metrics_of_the_wrong_type_are_refused(kwargs: dict[str, Any]) -> None:
    qm = QoSManager(clock=FakeClock())
    with pytest.raises(ValueError):
        qm.update_metrics(PEER, **kwargs)
    assert qm.get_metrics(PEER) is None  # nothing half-applied


def test_a_boolean_rtt_loss_depth_or_allocation_is_refused() -> None:
    qm = QoSManager(clock=FakeClock())
    bad: list[tuple[Any, ...]] = [
        (qm.record_latency, True), (qm.record_packet_loss, True), (qm.set_queue_depth, True),
        (qm.allocate_bandwidth, True), (qm.allocate_bandwidth, "5"),
    ]
    for method, value in bad:
        with pytest.raises(ValueError):
            method(PEER, value)
    assert qm.get_metrics(PEER) is None


@pytest.mark.parametrize(
    "kwargs",
    [{"starvation_limit": {Priority.LOW: True}}, {"starvation_limit": {Priority.LOW: 2.0}},
     {"max_queue": {Priority.LOW: True}}, {"max_queue_bytes": {Priority.HIGH: 1.5}},
     {"rates": {Priority.LOW: True}}, {"rates": {Priority.LOW: "5"}}],
)
def test_scheduler_bounds_of_the_wrong_type_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ClassScheduler(**kwargs)


def test_scheduler_bounds_may_name_their_class() -> None:
    """Classes are parsed (Priority.parse), so a bound may be keyed by a name."""
    s: ClassScheduler[str] = ClassScheduler(
        max_queue={"low": 1}, starvation_limit={"normal": 2},  # type: ignore[dict-item]
        rates={"high": 1000.0})  # type: ignore[dict-item]
    assert s.push("low", "a", 1, 0.0)
    assert not s.push("low", "b", 1, 0.0)
    assert s.rate("high") == 1000.0
    for bad in (True, "5", -1.0):
        with pytest.raises(ValueError):
            s.set_rate("low", bad, 0.0)
