"""Prometheus metric families from a broker's QUERY answers (no I/O).

:func:`families` is a pure function: the last poll's :class:`Answers` (and
the job duration histogram the dashboard keeps) in, metric families of the
official ``prometheus_client`` library out.  :class:`BrokerCollector` hands
them to a registry on each scrape; ``/metrics`` serves that registry.

Names follow the Prometheus conventions: ``operone_`` prefix, base units
(seconds, bytes, ratios 0..1), ``_total`` on counters.  Every sample has a
``node`` label: the broker's node id, so one Prometheus can scrape several
dashboards.  The counters are the broker's own (QUERY ``stats``): they
restart from zero when the broker restarts, which Prometheus' ``rate()``
handles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .model import Answers, DurationHistogram

__all__ = ["JOB_COUNTERS", "BrokerCollector", "families"]

#: QUERY stats counter -> the ``state`` label of operone_jobs_total.
JOB_COUNTERS = {
    "jobs_completed": "done",
    "jobs_failed": "failed",
    "jobs_timed_out": "timed_out",
    "jobs_cancelled": "cancelled",
}

#: QUERY stats counters with a metric of their own: name -> (metric, help).
_OWN_COUNTERS = {
    "jobs_received": ("operone_jobs_received_total", "Jobs this broker accepted."),
    "lsas_sent": ("operone_lsas_sent_total", "Link-state advertisements sent."),
    "lsas_received": ("operone_lsas_received_total", "Link-state advertisements received."),
    "malformed": ("operone_malformed_messages_total",
                  "Messages dropped because they could not be decoded."),
}

#: QUERY stats gauges: name -> (metric, help).
_GAUGES = {
    "workers": ("operone_workers", "Workers registered with the broker."),
    "slots": ("operone_worker_slots", "Job slots of the registered workers."),
    "running": ("operone_jobs_running", "Jobs running on this node's workers."),
    "queued": ("operone_jobs_queued", "Jobs queued on this node, waiting for a worker."),
    "jobs_in_progress": ("operone_jobs_in_progress", "Jobs this broker is handling."),
    "origin_jobs_in_progress": ("operone_origin_jobs_in_progress",
                                "Jobs submitted to this broker and not finished yet."),
    "known_nodes": ("operone_known_nodes", "Nodes in the broker's link-state database."),
    "uptime": ("operone_broker_uptime_seconds", "Seconds since the broker started."),
}


def _num(v: Any) -> float | None:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    return None


def families(a: Answers, *, up: bool, durations: DurationHistogram | None = None,
             node: str | None = None) -> list[Metric]:
    """The metric families for one poll's answers.  ``up``: whether the last
    poll was answered (``operone_up``); when it was not, only that is
    reported, since stale values would look current."""
    stats = a.stats if isinstance(a.stats, dict) else {}
    n = node or (stats.get("node") if isinstance(stats.get("node"), str) else "") or ""
    out: list[Metric] = []
    g = GaugeMetricFamily("operone_up", "1 when the broker answered the dashboard's last poll.",
                          labels=["node"])
    g.add_metric([n], 1.0 if up else 0.0)
    out.append(g)
    if not up:
        return out

    jobs = CounterMetricFamily("operone_jobs_total",
                               "Jobs this broker finished, by final state.",
                               labels=["node", "state"])
    for key, state in JOB_COUNTERS.items():
        v = _num(stats.get(key))
        if v is not None:
            jobs.add_metric([n, state], v)
    out.append(jobs)

    errs = CounterMetricFamily("operone_job_errors_total",
                               "Job errors answered by this broker, by error code.",
                               labels=["node", "code"])
    errors = stats.get("errors")
    for code, v in sorted(errors.items() if isinstance(errors, dict) else []):
        if isinstance(code, str) and _num(v) is not None:
            errs.add_metric([n, code], float(v))
    out.append(errs)

    for key, (name, doc) in _OWN_COUNTERS.items():
        v = _num(stats.get(key))
        if v is not None:
            c = CounterMetricFamily(name, doc, labels=["node"])
            c.add_metric([n], v)
            out.append(c)

    events = CounterMetricFamily(
        "operone_broker_events_total",
        "Other counters of the broker's QUERY stats (forwarded, relayed, retries, ...).",
        labels=["node", "event"])
    for key, v in sorted(stats.items()):
        if (key in JOB_COUNTERS or key in _OWN_COUNTERS or key in _GAUGES
                or not isinstance(v, int) or isinstance(v, bool)):
            continue
        events.add_metric([n, key], float(v))
    out.append(events)

    for key, (name, doc) in _GAUGES.items():
        v = _num(stats.get(key))
        if v is not None:
            gg = GaugeMetricFamily(name, doc, labels=["node"])
            gg.add_metric([n], v)
            out.append(gg)

    net = a.network if isinstance(a.network, dict) else {}
    if _num(net.get("partitions")) is not None:
        p = GaugeMetricFamily("operone_mesh_partitions",
                              "Connected components of the mesh as this broker sees it.",
                              labels=["node"])
        p.add_metric([n], float(net["partitions"]))
        out.append(p)
    if _num(net.get("unreachable_nodes")) is not None and _num(net.get("total_nodes")) is not None:
        mn = GaugeMetricFamily("operone_mesh_nodes", "Nodes of the mesh by reachability.",
                               labels=["node", "reachable"])
        mn.add_metric([n, "true"], float(net["total_nodes"]))
        mn.add_metric([n, "false"], float(net["unreachable_nodes"]))
        out.append(mn)

    link_up = GaugeMetricFamily("operone_link_up", "1 when the link to the peer is up.",
                                labels=["node", "peer"])
    sent = CounterMetricFamily("operone_link_messages_sent_total",
                               "Messages sent on the link.", labels=["node", "peer"])
    received = CounterMetricFamily("operone_link_messages_received_total",
                                   "Messages received on the link.", labels=["node", "peer"])
    for pr in a.peers if isinstance(a.peers, list) else []:
        if not isinstance(pr, dict) or not isinstance(pr.get("node"), str):
            continue
        link_up.add_metric([n, pr["node"]], 1.0 if pr.get("state") == "up" else 0.0)
        if _num(pr.get("sent")) is not None:
            sent.add_metric([n, pr["node"]], float(pr["sent"]))
        if _num(pr.get("received")) is not None:
            received.add_metric([n, pr["node"]], float(pr["received"]))
    out += [link_up, sent, received]

    rtt = GaugeMetricFamily("operone_link_rtt_seconds", "Smoothed round-trip time of the link.",
                            labels=["node", "peer"])
    jitter = GaugeMetricFamily("operone_link_jitter_seconds", "Jitter of the link's RTT.",
                               labels=["node", "peer"])
    loss = GaugeMetricFamily("operone_link_loss_ratio", "Share of pings lost, 0..1.",
                             labels=["node", "peer"])
    bw = GaugeMetricFamily("operone_link_bandwidth_bytes_per_second",
                           "Measured throughput of the link.", labels=["node", "peer"])
    health = GaugeMetricFamily("operone_link_health_score", "Health of the link, 0..100.",
                               labels=["node", "peer"])
    depth = GaugeMetricFamily("operone_link_queue_depth",
                              "Messages queued for the link, by priority class.",
                              labels=["node", "peer", "class"])
    lq = stats.get("link_queues")
    queues: dict[str, Any] = lq if isinstance(lq, dict) else {}
    for peer, m in sorted(a.qos.items()):
        if not isinstance(m, dict) or "error" in m:
            continue
        for fam, key, scale in ((rtt, "latency_ms", 1e-3), (jitter, "jitter_ms", 1e-3),
                                (loss, "packet_loss", 1.0), (bw, "bandwidth_mb_s", 1e6),
                                (health, "health_score", 1.0)):
            v = _num(m.get(key))
            if v is not None:
                fam.add_metric([n, peer], v * scale)
        by_class = queues.get(peer) or m.get("queued_by_class") or {}
        if isinstance(by_class, dict):
            for cls, v in sorted(by_class.items()):
                if _num(v) is not None:
                    depth.add_metric([n, peer, str(cls)], float(v))
    out += [rtt, jitter, loss, bw, health, depth]

    if durations is not None:
        h = HistogramMetricFamily(
            "operone_job_duration_seconds",
            "Durations of finished jobs seen in the broker's QUERY jobs answers.",
            labels=["node"])
        h.add_metric([n], durations.cumulative(), sum_value=durations.sum)
        out.append(h)
    return out


class BrokerCollector(Collector):
    """A prometheus_client collector over the dashboard's latest poll."""

    def __init__(self, source: Callable[[], tuple[Answers, bool, DurationHistogram | None]]
                 ) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        a, up, durations = self._source()
        yield from families(a, up=up, durations=durations)
