"""limits.max_clients in the core: a clear refusal past it, places freed by idleness."""

from __future__ import annotations

from operone_zmq.core.broker import WORKERS, BrokerCore, BrokerLimits
from operone_zmq.core.client import ClientCore
from operone_zmq.core.worker import WorkerCore
from operone_zmq.errors import TooManyClients
from operone_zmq.protocol import ToolInfo
from operone_zmq.testing import FakeClock


def _core(clock: FakeClock) -> BrokerCore:
    core = BrokerCore("n1", limits=BrokerLimits(max_clients=3, client_idle=2.0), now=clock())
    w = WorkerCore("n1.w1", [ToolInfo("sleep")], now=clock())
    w.start(clock())
    while w.out:
        core.on_worker([b"w1", *w.out.pop(0)], clock())
    core.out = [x for x in core.out if x[0] != WORKERS]
    return core


def _ask(core: BrokerCore, client: ClientCore, rid: bytes, now: float) -> object:
    """The client asks for stats; returns what it makes of the answer."""
    rid_frames = [rid, *client.query("stats", cls=2)[1]]
    core.on_frontend(2, rid_frames, now)
    (sock, frames), = core.out
    core.out.clear()
    assert sock == 2 and frames[0] == rid
    reply = client.on_message(frames[1:])
    assert reply is not None
    return "served" if isinstance(reply.value, dict) else reply.value


def test_a_client_past_max_clients_is_refused_until_a_place_is_free() -> None:
    clock = FakeClock()
    core = _core(clock)
    clients = [(ClientCore(f"c{i}"), b"\x00" + bytes([i])) for i in range(5)]
    for c, rid in clients[:3]:
        assert _ask(core, c, rid, clock()) == "served"
    c4, rid4 = clients[3]
    err = _ask(core, c4, rid4, clock())
    assert isinstance(err, TooManyClients)
    assert "at most 3 client connections" in str(err) and "limits.max_clients" in str(err)
    assert core.counters["clients_refused"] == 1
    # One of the three keeps talking; one has a job in flight; one goes idle.
    _, frames = clients[1][0].job("sleep", {"seconds": 60}, timeout=100.0)
    core.on_frontend(2, [clients[1][1], *frames], clock())
    assert core.out and core.out[0][0] == WORKERS  # it runs on the worker
    core.out.clear()
    clock.advance(1.2)
    assert _ask(core, clients[0][0], clients[0][1], clock()) == "served"
    clock.advance(1.0)
    core.tick(clock())
    core.out.clear()
    assert _ask(core, c4, rid4, clock()) == "served"  # client 2's place
    c5, rid5 = clients[4]
    assert isinstance(_ask(core, c5, rid5, clock()), TooManyClients)
    # A send to a client that left frees its place at once.
    core.on_unroutable(2, [rid4, b"x"], clock())
    assert _ask(core, c5, rid5, clock()) == "served"


def test_a_client_waiting_for_its_job_does_not_keep_the_timer_due() -> None:
    """A connection kept for its job in flight is looked at again only after
    another client_idle seconds (the broker's timer must not spin on it)."""
    clock = FakeClock()
    core = _core(clock)
    c = ClientCore("c")
    _, frames = c.job("sleep", {"seconds": 60}, timeout=100.0)
    core.on_frontend(2, [b"\x00c", *frames], clock())
    core.out.clear()
    clock.advance(2.5)
    core.tick(clock())
    assert core.next_deadline() > clock()
