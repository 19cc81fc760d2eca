"""Quality of service, without I/O: priorities, token buckets, metrics, QoSManager.

Rules:

- Nothing in this package imports ``zmq``, ``asyncio``, ``socket``,
  ``threading`` or ``time`` at module level; time comes in as ``now``
  (monotonic seconds) or from an injected clock (a test checks this).
- Units: sizes in bytes, rates in bytes/s inside buckets and schedulers, MB/s
  (:data:`BYTES_PER_MB`) in policies and the QoSManager API, latency and
  jitter in ms, packet loss as a fraction 0..1.
- Every bound is a named constant in the module that applies it.
"""

from __future__ import annotations

from operone_zmq.qos.bucket import TokenBucket
from operone_zmq.qos.manager import (
    DEEP_QUEUE_DEPTH,
    EVENT_LATENCY_VIOLATION,
    EVENT_PACKET_LOSS_VIOLATION,
    LATENCY_VIOLATION_MS,
    PACKET_LOSS_VIOLATION,
    QoSManager,
    QoSMetrics,
    health_score,
)
from operone_zmq.qos.metrics import BandwidthMeter, LinkMetrics
from operone_zmq.qos.policy import (
    BYTES_PER_MB,
    DEFAULT_POLICIES,
    DEFAULT_POLICY,
    QoSPolicy,
    RetryPolicy,
)
from operone_zmq.qos.priority import PRIORITIES, Priority
from operone_zmq.qos.scheduler import (
    ClassScheduler,
    ClassStats,
    Entry,
    receive_order,
    receive_plan,
)

__all__ = [
    "BYTES_PER_MB",
    "DEEP_QUEUE_DEPTH",
    "DEFAULT_POLICIES",
    "DEFAULT_POLICY",
    "EVENT_LATENCY_VIOLATION",
    "EVENT_PACKET_LOSS_VIOLATION",
    "LATENCY_VIOLATION_MS",
    "PACKET_LOSS_VIOLATION",
    "PRIORITIES",
    "BandwidthMeter",
    "ClassScheduler",
    "ClassStats",
    "Entry",
    "LinkMetrics",
    "Priority",
    "QoSManager",
    "QoSMetrics",
    "QoSPolicy",
    "RetryPolicy",
    "TokenBucket",
    "health_score",
    "receive_order",
    "receive_plan",
]
