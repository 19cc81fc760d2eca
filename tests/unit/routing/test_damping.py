"""Damping rules: cost bands with hysteresis, LSA pacing, SPF throttle, liveness with stalls."""

from __future__ import annotations

import math
import random
from itertools import pairwise

import pytest

from operone_zmq.routing.damping import (
    BAND_EDGES_MS,
    LAN_COST_MS,
    MIN_LS_INTERVAL,
    RTT_WINDOW,
    SPF_HOLD,
    SPF_MAX_WAIT,
    SPF_START,
    STALL_GRACE,
    URGENT_LS_INTERVAL,
    CostBand,
    LsaPacer,
    PeerLiveness,
    SpfThrottle,
    band_cost,
    band_of,
)
from operone_zmq.routing.dijkstra import Graph, shortest_paths


# ------------------------------------------------------------------ bands
@pytest.mark.parametrize(
    ("rtt", "band"),
    [(0.0, 0), (19.99, 0), (20.0, 1), (49.9, 1), (50.0, 2), (1e9, len(BAND_EDGES_MS))],
)
def test_band_of_edges(rtt: float, band: int) -> None:
    """Band 0 is below the first edge; band i starts at edge i-1; the last is open."""
    assert band_of(rtt) == band


def test_band_cost_is_lan_cost_then_lower_edge() -> None:
    """Band 0 advertises the LAN cost; band i its lower edge."""
    assert band_cost(0) == LAN_COST_MS
    assert band_cost(1) == 20.0
    assert band_cost(3) == 100.0
    with pytest.raises(ValueError):
        band_cost(len(BAND_EDGES_MS) + 1)


@pytest.mark.parametrize(
    ("low", "high", "spike_every", "spike"),
    [(1.0, 5.0, 17, 30.0), (1.0, 20.0, 5, 200.0)],
    ids=["quiet machine", "50 brokers on 2 cores"],
)
def test_loop_noise_on_a_lan_link_never_changes_the_cost(
    low: float, high: float, spike_every: int, spike: float
) -> None:
    """Event-loop noise (issue 15's figures, quiet and loaded) stays in band 0."""
    rng = random.Random(3)
    band = CostBand()
    changes = 0
    for i in range(10_000):
        rtt = rng.uniform(low, high)
        if i % spike_every == 0:
            rtt += rng.uniform(5.0, spike)
        changes += band.sample(rtt)
    assert changes == 0
    assert band.cost == LAN_COST_MS


def test_spike_must_last_the_whole_window() -> None:
    """A spike shorter than the window is filtered; one that lasts moves the cost."""
    band = CostBand()
    for _ in range(RTT_WINDOW):
        band.sample(3.0)
    for _ in range(RTT_WINDOW - 1):
        assert not band.sample(45.0)
    assert band.cost == LAN_COST_MS
    assert band.sample(45.0)
    assert band.cost == 20.0


def test_delay_removed_is_seen_on_the_first_quick_sample() -> None:
    """Going down needs only one low sample (the window minimum)."""
    band = CostBand()
    for _ in range(5):
        band.sample(43.0)
    assert band.cost == 20.0
    assert band.sample(3.0)
    assert band.cost == LAN_COST_MS


def test_hysteresis_around_an_edge() -> None:
    """A measurement wandering around an edge, inside the margin, never toggles."""
    band = CostBand(window=1)
    band.sample(30.0)
    assert band.band == 1
    for rtt in [49.0, 51.0, 62.4, 45.0, 60.0, 17.0, 25.0, 16.1]:
        assert not band.sample(rtt), rtt
    assert band.sample(62.5)  # 50 * 1.25
    assert band.band == 2
    assert not band.sample(40.5)  # above 50 / 1.25 = 40
    assert band.sample(39.9)
    assert band.band == 1


def test_cost_waits_for_a_full_window_and_bad_samples_raise() -> None:
    """A WAN link gets its band once the window is full; NaN, inf and negatives are refused."""
    band = CostBand()
    for _ in range(RTT_WINDOW - 1):
        assert not band.sample(320.0)
    assert band.sample(300.0)
    assert band.cost == 200.0
    assert band.measured == 300.0
    for bad in (math.nan, math.inf, -1.0):
        with pytest.raises(ValueError):
            band.sample(bad)
    with pytest.raises(ValueError):
        CostBand((10.0, 5.0))
    with pytest.raises(ValueError):
        CostBand((0.5, 5.0))
    with pytest.raises(ValueError):
        CostBand(window=0)


def test_equal_paths_do_not_flap() -> None:
    """Two equal 2-hop paths with independent noise: the route never changes."""
    rng = random.Random(7)
    links = {("a", "b"): CostBand(), ("b", "d"): CostBand(), ("a", "c"): CostBand(),
             ("c", "d"): CostBand()}
    chosen = set()
    for i in range(2_000):
        for band in links.values():
            band.sample(rng.uniform(1.0, 5.0) + (rng.uniform(5, 40) if i % 13 == 0 else 0))
        graph = Graph()
        for (x, y), band in links.items():
            graph.add_edge(x, y, band.cost)
        chosen.add(shortest_paths(graph, "a")["d"].path)
    assert len(chosen) == 1


# ------------------------------------------------------------------ pacer
def test_pacer_first_change_goes_at_once_then_coalesces() -> None:
    """After a quiet period a change is due at once; later ones wait MinLSInterval."""
    p = LsaPacer()
    assert not p.due(0.0)
    p.request(100.0)
    assert p.due(100.0)
    p.sent(100.0)
    for t in (100.5, 101.0, 103.0):
        p.request(t)
        assert not p.due(t)
    assert p.next_deadline() == 100.0 + MIN_LS_INTERVAL
    assert p.due(100.0 + MIN_LS_INTERVAL)


def test_pacer_urgent_uses_the_short_interval() -> None:
    """An urgent change waits only the urgent interval, and carries pending ones along."""
    p = LsaPacer()
    p.sent(10.0)
    p.request(10.01)
    p.request(10.02, urgent=True)
    assert p.next_deadline() == pytest.approx(10.0 + URGENT_LS_INTERVAL)
    p.sent(10.05)
    assert not p.pending
    assert p.next_deadline() is None


def test_pacer_bound_on_metric_lsas() -> None:
    """Requests every 10 ms for 60 s produce at most 60 / MinLSInterval + 1 LSAs."""
    p = LsaPacer()
    sent = 0
    for i in range(6000):
        now = i * 0.01
        p.request(now)
        if p.due(now):
            p.sent(now)
            sent += 1
    assert sent <= 60 / MIN_LS_INTERVAL + 1


def test_refresh_clears_pending() -> None:
    """A refresh carries the current state: nothing stays pending."""
    p = LsaPacer()
    p.sent(0.0)
    p.request(1.0)
    p.sent(2.0)
    assert not p.due(100.0)
    with pytest.raises(ValueError):
        LsaPacer(interval=1.0, urgent_interval=2.0)


# --------------------------------------------------------------- throttle
def test_spf_first_run_after_start_delay() -> None:
    """A change after a quiet period runs SPF after the initial delay."""
    t = SpfThrottle()
    t.trigger(10.0)
    t.trigger(10.01)  # same burst: same run
    assert t.next_deadline() == pytest.approx(10.0 + SPF_START)
    assert not t.due(10.04)
    assert t.due(10.0 + SPF_START)


def test_spf_backs_off_exponentially_to_max_then_resets_when_quiet() -> None:
    """Repeated changes double the hold up to max-wait; quiet resets it."""
    t = SpfThrottle()
    now = 0.0
    gaps = []
    last = None
    for _ in range(12):
        t.trigger(now)
        due = t.next_deadline()
        assert due is not None
        now = due
        t.ran(now)
        if last is not None:
            gaps.append(round(now - last, 6))
        last = now
    assert gaps[0] == pytest.approx(SPF_HOLD)
    assert gaps[1] == pytest.approx(2 * SPF_HOLD)
    assert max(gaps) == pytest.approx(SPF_MAX_WAIT)
    assert all(b >= a for a, b in pairwise(gaps))
    quiet = now + 2 * SPF_MAX_WAIT
    t.trigger(quiet)
    assert t.next_deadline() == pytest.approx(quiet + SPF_START)
    assert t.hold == SPF_HOLD


def test_spf_urgent_trigger_skips_the_hold() -> None:
    """Our own link going down is run after the initial delay even under back-off."""
    t = SpfThrottle()
    for now in (0.0, 0.3, 0.9, 2.0):
        t.trigger(now)
        due = t.next_deadline()
        assert due is not None
        t.ran(due)
    t.trigger(2.5)
    assert t.next_deadline() is not None and t.next_deadline() > 2.5 + SPF_START  # type: ignore[operator]
    t.trigger(2.6, urgent=True)
    assert t.next_deadline() == pytest.approx(2.6 + SPF_START)
    t.ran(2.65)
    t.trigger(2.7, urgent=True)
    assert t.next_deadline() == pytest.approx(2.7 + SPF_START)


def test_spf_runs_bounded_under_constant_churn() -> None:
    """Changes every 10 ms for 60 s: about 60 / max-wait runs, not 6,000."""
    t = SpfThrottle()
    for i in range(6000):
        now = i * 0.01
        t.trigger(now)
        if t.due(now):
            t.ran(now)
    assert t.runs <= 60 / SPF_MAX_WAIT + 6


# --------------------------------------------------------------- liveness
def test_silent_peer_is_dead_after_silence() -> None:
    """Nothing received for ``silence`` s of listening time: dead."""
    lv = PeerLiveness(silence=3.0, period=1.0)
    lv.heard("b", 0.0)
    lv.heard("c", 0.0)
    for t in (1.0, 2.0):
        lv.loop_ran(t)
        lv.heard("c", t)
    lv.loop_ran(3.0)
    assert lv.dead(3.0) == ["b"]
    assert lv.silent_for("never", 3.0) == math.inf


def test_stall_of_our_own_loop_is_not_evidence() -> None:
    """A 5 s stall of our loop (busy recompute): silence then does not count."""
    lv = PeerLiveness(silence=3.0, period=1.0)
    lv.loop_ran(0.0)
    lv.heard("b", 0.0)
    stall = lv.loop_ran(6.0)
    assert stall == pytest.approx(6.0 - 1.0 - STALL_GRACE)
    assert lv.dead(6.0) == []
    # The peer is still dead if it stays silent while we listen.
    for t in (7.0, 8.0, 9.0):
        lv.loop_ran(t)
    assert lv.dead(9.0) == ["b"]


def test_receive_timestamp_not_processing_time_counts() -> None:
    """A PONG received at 2.9 but processed at 3.5 keeps the peer alive."""
    lv = PeerLiveness(silence=3.0, period=1.0)
    lv.heard("b", 0.0)
    lv.heard("b", 2.9)  # stamped by the socket layer
    assert lv.dead(3.5) == []
    lv.heard("b", 1.0)  # an older stamp never moves it back
    assert lv.silent_for("b", 3.5) == pytest.approx(0.6)
    lv.forget("b")
    assert lv.dead(10.0) == []


# ------------------------------------------------------ throttled routing
def test_manual_routing_table_waits_for_recompute() -> None:
    """With auto=False the table answers from its last SPF run until recompute()."""
    from operone_zmq.routing.dijkstra import RoutingTable
    from operone_zmq.routing.lsa import LSA, LinkInfo
    from operone_zmq.routing.lsdb import LinkStateDB

    db = LinkStateDB("a")
    db.originate([LinkInfo("b", 1.0)], (), (), 0.0, 0, 0.0)
    db.install(LSA("b", 1, (LinkInfo("a", 1.0),)), 0.0, "b")
    table = RoutingTable(db, auto=False)
    assert table.next_hop("b") == "b"  # the first lookup computes
    db.install(LSA("c", 1, (LinkInfo("b", 1.0),)), 0.0, "b")
    db.install(LSA("b", 2, (LinkInfo("a", 1.0), LinkInfo("c", 1.0))), 0.0, "b")
    assert table.stale
    assert table.next_hop("b") == "b"  # an existing route follows the throttle...
    assert table.computations == 1
    assert table.next_hop("c") == "b"  # ...a miss on a stale table recomputes at once
    assert table.computations == 2
    db.install(LSA("b", 3, (LinkInfo("a", 9.0), LinkInfo("c", 1.0))), 0.0, "b")
    assert table.route("b").cost == 1.0  # type: ignore[union-attr]
    table.recompute()
    assert table.route("b").cost == 9.0  # type: ignore[union-attr]
    assert table.computations == 3
    assert table.next_hop("nobody") is None
    assert table.computations == 3  # not stale: a miss costs nothing


def test_simulated_churn_damped_against_legacy() -> None:
    """In the simulator, damping cuts LSAs, SPF runs and route flips under RTT noise."""
    from operone_zmq.routing.sim import NOISE_PROFILES, Simulator

    results = {}
    for policy in ("legacy", "damped"):
        sim = Simulator.random(12, 3.0, seed=2, delay=(0.000025, 0.00005))
        sim.start()
        results[policy] = sim.measure_churn(60.0, policy, noise=NOISE_PROFILES["loaded"],
                                             warmup=10.0)
        assert sim.converged()
    legacy, damped = results["legacy"], results["damped"]
    assert damped.originated_per_s < legacy.originated_per_s / 2
    assert damped.spf_per_s < legacy.spf_per_s / 10
    assert damped.route_flips_per_min < legacy.route_flips_per_min / 10
    with pytest.raises(ValueError):
        sim.measure_churn(1.0, "nope")


def test_adjacency_version_moves_on_neighbour_sets_not_costs() -> None:
    """Cost-only changes move topology_version but not adjacency_version."""
    from operone_zmq.routing.lsa import LSA, LinkInfo
    from operone_zmq.routing.lsdb import LinkStateDB

    db = LinkStateDB("me")
    db.install(LSA("a", 1, (LinkInfo("me", 1.0),)), 0.0, "a")
    adj, topo = db.adjacency_version, db.topology_version
    db.install(LSA("a", 2, (LinkInfo("me", 20.0),)), 0.0, "a")
    assert (db.adjacency_version, db.topology_version) == (adj, topo + 1)
    db.install(LSA("a", 3, (LinkInfo("me", 20.0), LinkInfo("b", 1.0))), 0.0, "a")
    assert db.adjacency_version == adj + 1
    db.expire(100.0)
    assert db.adjacency_version == adj + 2
