"""Mutated messages against a mesh of broker cores: nothing escapes, and the
mesh goes on serving.

Every message of a normal run (a client's JOB, QUERY of each kind, CANCEL,
BROADCAST, PING; a worker's READY, RESULT, ERROR, HEARTBEAT; a neighbour's
HELLO, WELCOME, LSA, PING, PONG and routed JOB and RESULT) is recorded, then
one at a time mutated -- a msgpack value replaced by one of another type, a
key dropped or added, a byte flipped, a frame cut, dropped or doubled -- and
handed to the core it was for, as the shell would hand it.  The standard
says: a typed error or an error reply, the node keeps serving everyone else.
So no exception may leave the core, not even later (timers, stats), and a
normal job through the mesh still succeeds.  Fixed seeds: a failure
reproduces.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import msgpack
import pytest

from operone_zmq.core.broker import WORKERS
from operone_zmq.protocol import TAG
from operone_zmq.testing import CoreMesh

#: Mutated messages per seed: enough to reach every message type and field
#: kind several times, few enough for a second or two.
CASES = 120


class _Recorded(deque[Any]):
    """The mesh's delivery queue, noting what it delivers."""

    log: list[tuple[str, int, list[Any], str | None]] | None = None

    def popleft(self) -> Any:
        item = super().popleft()
        if self.log is not None:
            self.log.append(item)
        return item


def _mesh(record: list[Any] | None = None) -> CoreMesh:
    """a - b - c, a worker on a and on c, converged."""
    m = CoreMesh()
    q = _Recorded(m.queue)
    q.log = record
    m.queue = q
    for n in ("a", "b", "c"):
        m.add(n)
    m.dial("a", "b")
    m.dial("b", "c")
    m.add_worker("a", ["echo"])
    m.add_worker("c", ["echo"])
    m.advance(3.0, 0.5)
    m.run()
    return m


def _client_messages(m: CoreMesh) -> list[list[Any]]:
    c = m.client("a")
    out = [c.job("echo", {"x": 1})[1],
           c.job("echo", {"x": [1, "y"]}, timeout=5.0, retries=2, caps=("gpu",), on="c")[1],
           c.job("echo", {}, prefer_local=True, stream=True)[1],
           c.broadcast({"hello": 1})[1], c.ping()[1], c.cancel("some-job", "why")]
    queries: list[tuple[str, dict[str, Any]]] = [
            ("stats", {}), ("workers", {}), ("tools", {"detail": True}),
            ("events", {"since": 0, "limit": 5}), ("jobs", {"state": "running", "limit": 9}),
            ("job", {"id": "x"}), ("peers", {}), ("topology", {}), ("route", {"dest": "c"}),
            ("network", {}), ("broadcasts", {}), ("qos", {"peer": "b", "allocate": 5}),
            ("cancel", {"job": "x", "reason": "r"}),
            ("placement", {"tool": "echo", "caps": ["gpu"], "prefer_local": True}),
            ("connect", {"node": "d", "host": "h", "port": 7700})]
    for what, args in queries:
        out.append(c.query(what, args)[1])
    return out


class _Mutator:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def value(self, depth: int = 0) -> Any:
        r = self.r
        kind = r.randrange(10)
        if kind == 0:
            return r.choice([None, True, False])
        if kind == 1:
            return r.choice([0, -1, 1, 2**63 - 1, -2**63, 2**64 - 1, 65536])
        if kind == 2:
            return r.choice([0.0, -1.5, 1e308, float("nan"), float("inf"), float("-inf")])
        if kind == 3:
            return r.choice(["", "x", "a" * 70, "a" * 3000, "\x00", "é", "a", "c", "echo"])
        if kind == 4:
            return r.choice([b"", b"\x00", b"x" * 100])
        if kind == 5 and depth < 3:
            return [self.value(depth + 1) for _ in range(r.randrange(4))]
        if kind == 6 and depth < 3:
            return {str(self.value(depth + 1))[:8]: self.value(depth + 1)
                    for _ in range(r.randrange(4))}
        return r.choice([[], {}, "critical", "low", 2.5, [1], {"k": 1}])

    def obj(self, o: Any) -> Any:
        r = self.r
        if isinstance(o, dict) and o:
            o = dict(o)
            k = r.choice(list(o))
            x = r.random()
            if x < 0.5:
                o[k] = self.value()
            elif x < 0.7:
                del o[k]
            elif x < 0.85:
                o[k] = self.obj(o[k])
            else:
                o[str(self.value())[:10]] = self.value()
            return o
        if isinstance(o, list) and o:
            o = list(o)
            i = r.randrange(len(o))
            x = r.random()
            if x < 0.5:
                o[i] = self.value()
            elif x < 0.7:
                del o[i]
            elif x < 0.85:
                o[i] = self.obj(o[i])
            else:
                o.append(self.value())
            return o
        return self.value()

    def frame(self, f: bytes) -> bytes:
        r = self.r
        if r.random() < 0.8:
            try:
                o = msgpack.unpackb(f, raw=False, strict_map_key=False)
                return bytes(msgpack.packb(self.obj(o), use_bin_type=True))
            except Exception:
                pass
        b = bytearray(f)
        if b and r.random() < 0.5:
            b[r.randrange(len(b))] = r.randrange(256)
        else:
            del b[r.randrange(len(b) + 1):]
        return bytes(b)

    def message(self, frames: list[Any]) -> list[Any]:
        r = self.r
        frames = [bytes(f) for f in frames]
        x = r.random()
        if x < 0.1 and len(frames) > 1:
            del frames[r.randrange(len(frames))]
        elif x < 0.15:
            frames.append(r.choice([b"", b"x", frames[-1]]))
        else:
            i = r.randrange(len(frames))
            if frames[i] == TAG and r.random() > 0.05:
                i = min(len(frames) - 1, i + 1)  # the tag itself only now and then
            frames[i] = self.frame(frames[i])
        return frames


def _serves(m: CoreMesh) -> None:
    """Timers, stats and a job a -> c (two hops) still work, once a link the
    mutated message ended had time to come up again (a HELLO its receiver
    cannot read is refused with a BYE, and its sender dials again)."""
    m.advance(10.0, 0.5)
    for core in m.nodes.values():
        core.stats(m.clock())
        core.next_deadline()
    before = len(m.client_inbox.get("a", []))
    m.submit("a", "echo", {"ok": 1}, on="c")
    m.run()
    m.advance(1.0, 0.5)
    answers = m.client_inbox["a"][before:]
    assert answers and not isinstance(answers[-1].value, Exception), answers


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mutated_messages_from_clients_workers_and_neighbours_change_nothing_else(
        seed: int) -> None:
    recorded: list[tuple[str, int, list[Any], str | None]] = []
    m = _mesh(recorded)
    m.submit("a", "echo", {"x": 1}, on="c")
    m.submit("a", "echo", {"x": 2})
    m.run()
    m.advance(2.0, 0.5)
    recorded = [x for x in recorded if x[1] == WORKERS or x[3] is not None]  # workers, peers
    clients = _client_messages(m)
    assert {x[3] for x in recorded} >= {"dealer", None}  # both link directions, workers
    mut = _Mutator(seed)
    for _ in range(CASES):
        m = _mesh()
        core = m.nodes["a"]
        if mut.r.random() < 0.4:
            frames = mut.message(mut.r.choice(clients))
            core.on_frontend(mut.r.randrange(4), [b"\x00cli", *frames], m.clock())
        else:
            node, sock, frames, extra = mut.r.choice(recorded)
            core = m.nodes[node]
            if extra == "dealer":
                core.on_dealer(sock, mut.message(frames), m.clock())
            else:  # a worker's or an accepted neighbour's: its routing id stays
                rest = mut.message(frames[1:]) if len(frames) > 1 else []
                if sock == WORKERS:
                    core.on_worker([frames[0], *rest], m.clock())
                else:
                    core.on_frontend(sock, [frames[0], *rest], m.clock(), uid=extra)
        m.run()
        _serves(m)
