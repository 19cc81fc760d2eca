"""families(): broker answers in, Prometheus metric families out (no I/O)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from operone_zmq.dashboard.metrics import BrokerCollector, families
from operone_zmq.dashboard.model import Answers, DurationHistogram

#: The conftest fixture make_answers: broker a's answers.
Make = Callable[..., Answers]


def scrape(a: Answers, up: bool = True, durations: DurationHistogram | None = None,
           ) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Expose through a real registry, parse back with prometheus_client.parser."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(BrokerCollector(lambda: (a, up, durations)))
    text = generate_latest(reg).decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_names_labels_and_base_units(make_answers: Make) -> None:
    """Counters by state and code, links in seconds / ratios / bytes, queue depths by class."""
    m = scrape(make_answers())
    n = (("node", "a"),)
    assert m[("operone_up", n)] == 1
    assert m[("operone_jobs_total", (("node", "a"), ("state", "done")))] == 3
    assert m[("operone_jobs_total", (("node", "a"), ("state", "failed")))] == 1
    assert m[("operone_jobs_total", (("node", "a"), ("state", "cancelled")))] == 1
    assert m[("operone_job_errors_total", (("code", "tool_error"), ("node", "a")))] == 1
    assert m[("operone_jobs_received_total", n)] == 5
    assert m[("operone_lsas_sent_total", n)] == 2 and m[("operone_lsas_received_total", n)] == 4
    assert m[("operone_malformed_messages_total", n)] == 0
    assert m[("operone_jobs_running", n)] == 1 and m[("operone_jobs_queued", n)] == 2
    assert m[("operone_workers", n)] == 0
    assert m[("operone_broker_uptime_seconds", n)] == 12.5
    assert m[("operone_mesh_partitions", n)] == 1
    p = (("node", "a"), ("peer", "b"))
    assert m[("operone_link_up", p)] == 1
    assert m[("operone_link_rtt_seconds", p)] == pytest.approx(0.000934)
    assert m[("operone_link_jitter_seconds", p)] == pytest.approx(0.000084)
    assert m[("operone_link_loss_ratio", p)] == 0
    assert m[("operone_link_bandwidth_bytes_per_second", p)] == 1.5e6
    assert m[("operone_link_health_score", p)] == 100
    assert m[("operone_link_messages_sent_total", p)] == 15
    assert m[("operone_link_queue_depth", (("class", "normal"), ("node", "a"),
                                           ("peer", "b")))] == 3


def test_a_broker_that_does_not_answer_reports_only_up_zero(make_answers: Make) -> None:
    """Stale values would look current: when the poll failed only operone_up (0) is left."""
    m = scrape(make_answers(), up=False)
    assert m == {("operone_up", (("node", "a"),)): 0}


def test_job_duration_histogram(make_answers: Make) -> None:
    """Durations observed by the dashboard become a histogram in seconds."""
    h = DurationHistogram((0.1, 1.0))
    h.observe_jobs([{"id": "a", "state": "done", "duration": 0.05},
                    {"id": "b", "state": "done", "duration": 3.0}])
    m = scrape(make_answers(), durations=h)
    n = ("node", "a")
    assert m[("operone_job_duration_seconds_bucket", (("le", "0.1"), n))] == 1
    assert m[("operone_job_duration_seconds_bucket", (("le", "+Inf"), n))] == 2
    assert m[("operone_job_duration_seconds_count", (n,))] == 2
    assert m[("operone_job_duration_seconds_sum", (n,))] == 3.05


@pytest.mark.parametrize("stats", [None, {}, {"node": 1, "errors": [1], "link_queues": 3,
                                              "jobs_failed": "many", "uptime": True}])
def test_garbage_stats_give_valid_exposition(stats: Any, make_answers: Make) -> None:
    """Odd answers drop samples, never the scrape."""
    a = make_answers()
    a.stats = stats
    a.peers = [1, {"node": 2}, {"node": "b", "sent": "x"}]
    a.qos = {"b": {"latency_ms": "slow", "queued_by_class": [1]}, "c": {"error": "no link"}}
    m = scrape(a)
    assert m[("operone_up", (("node", ""),))] == 1
    assert ("operone_link_up", (("node", ""), ("peer", "b"))) in m


def test_families_is_a_pure_function_of_its_input(make_answers: Make) -> None:
    """Same answers, same families (no hidden state)."""
    a = make_answers()
    assert [f.samples for f in families(a, up=True)] == [f.samples
                                                         for f in families(a, up=True)]
