"""Helpers for tests and simulations: a fake monotonic clock and an in-memory
mesh of broker cores (no I/O: frames are moved between cores by hand)."""

from __future__ import annotations

from collections import deque
from typing import Any, cast

from .core.broker import FIRST_DIAL_SOCKET, WORKERS, BrokerCore, BrokerLimits
from .core.client import ClientCore, Reply
from .core.peers import incarnation_id, node_of_rid
from .core.worker import JobStart, WorkerCore
from .protocol.batch import decode_batch, is_batch
from .protocol.bodies import ToolInfo
from .protocol.frame import Frame
from .protocol.signature import Signer

__all__ = ["CoreMesh", "FakeClock", "broker_with_worker", "flushed", "key_of"]


class FakeClock:
    """A monotonic clock that only moves when told to.

    Call it to read the time (``clock()``), move it with :meth:`advance`.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = float(start)

    def __call__(self) -> float:
        return self._now

    @property
    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go backwards")
        self._now += seconds
        return self._now


def broker_with_worker(clock: FakeClock, *, batch: bool = True,
                       slots: int = 1000) -> tuple[BrokerCore, WorkerCore]:
    """A broker core "n1" with one registered worker core "n1.w1" (routing id
    ``w1``, tool ``echo``; ``batch``: it offers BATCH), the broker's outbox
    emptied of the registration's answers."""
    core = BrokerCore("n1", now=clock())
    w = WorkerCore("n1.w1", [ToolInfo("echo")], slots=slots, now=clock(), batch=batch)
    w.start(clock())
    while w.out:
        core.on_worker([b"w1", *w.out.pop(0)], clock())
    core.out.clear()
    return core, w


def flushed(core: BrokerCore) -> list[tuple[int, list[Frame]]]:
    """What the shell would send of ``core``'s outbox now (BATCHes to whoever
    accepts them: ``BrokerCore.batched``); the outbox is emptied."""
    out = core.batched(core.out[:])
    core.out.clear()
    return out


# ---------------------------------------------------------------------------
# An in-memory mesh of broker cores (no sockets), for tests and simulation.
# ---------------------------------------------------------------------------


def key_of(node: str) -> str:
    """The fake Curve key of ``node`` in a :class:`CoreMesh`."""
    return f"key-{node}"


class CoreMesh:
    """Broker cores wired together in memory, as the shells would wire them.

    ``dial(a, b)`` gives ``a`` four DEALER socket indices connected to ``b``'s
    class ROUTERs; frames are moved by :meth:`run` in FIFO order.  Workers
    are :class:`WorkerCore` objects whose jobs the test completes by hand (or
    automatically with ``auto_echo``).  Time is a :class:`FakeClock`.
    """

    def __init__(self, limits: BrokerLimits | None = None, *, auto_echo: bool = True,
                 batched: bool = False, signed: bool = False) -> None:
        self.clock = FakeClock()
        #: Every broker has an Ed25519 key and knows the others' (routed
        #: messages are then signed or MAC'd end to end, as in a real mesh).
        self.signed = signed
        self._signing_keys: dict[str, str] = {}
        self._epoch = 0x0123456789ABCDEF
        #: As the shell does: every message waiting when a pass starts is
        #: handled before each broker's outbox goes out, through
        #: ``BrokerCore.batched`` (BATCHes to whoever accepts them).
        self.batched = batched
        #: When a list: every ``(node, socket, frames)`` a broker's outbox puts
        #: on the wire through ``batched`` (urgent heartbeats apart), for a
        #: test to look at.
        self.wire: list[tuple[str, int, list[Frame]]] | None = None
        self.limits = limits or BrokerLimits(peer_interval=1.0, peer_liveness=3)
        self.nodes: dict[str, BrokerCore] = {}
        self.dead: set[str] = set()
        #: Dead nodes whose connections closed (crash): peers see it at once.
        self.crashed: set[str] = set()
        self.cut_pairs: set[frozenset[str]] = set()
        # (node, dealer socket) -> (remote node, class)
        self._dialled: dict[tuple[str, int], tuple[str, int]] = {}
        # (node, remote node) -> its dealer sockets
        self._dial_socks: dict[tuple[str, str], list[int]] = {}
        self._next_sock: dict[str, int] = {}
        self.workers: dict[str, dict[bytes, WorkerCore]] = {}
        self.started: dict[str, list[JobStart]] = {}
        self.clients: dict[str, ClientCore] = {}
        self.client_inbox: dict[str, list[Reply]] = {}
        self.auto_echo = auto_echo
        self.queue: deque[tuple[str, int, list[Frame], str | None]] = deque()
        self.messages = 0
        self._impostors: dict[str, str] = {}

    # ----------------------------------------------------------- building
    def add(self, node: str, impostor_of: str | None = None, *,
            mac3: bool = True) -> BrokerCore:
        """Add a broker; ``impostor_of`` makes it claim another node's key;
        ``mac3=False``: it neither sends nor takes version-3 MACs (as a
        broker of revisions 8-9)."""
        def authorize(claimed: str, key: str | None, token: str | None) -> str | None:
            if key != key_of(claimed):
                return f"key {key} is not trusted as node '{claimed}'"
            return None

        signer = Signer.generate() if self.signed else None
        if signer is not None:
            self._signing_keys[node] = signer.public_hex
        core = BrokerCore(node, limits=self.limits, now=self.clock(), authorize=authorize,
                          wall=lambda: 1_700_000_000.0 + self.clock(), signer=signer,
                          signing_keys=self._signing_keys.get if signer else None,
                          mac3=mac3)
        self.nodes[node] = core
        self._next_sock[node] = FIRST_DIAL_SOCKET
        self.workers[node] = {}
        self.started[node] = []
        if impostor_of is not None:
            self._impostors[node] = impostor_of
        return core

    def dial(self, a: str, b: str) -> None:
        """``a`` dials ``b`` (a link; both directions work over it)."""
        base = self._next_sock[a]
        self._next_sock[a] = base + 4
        socks = [base + i for i in range(4)]
        for cls, s in enumerate(socks):
            self._dialled[(a, s)] = (b, cls)
        self._dial_socks[(a, b)] = socks
        self.nodes[a].add_dialled_link(b, socks, self.clock(), address=f"mem://{b}")

    def add_worker(self, node: str, tools: list[str], caps: tuple[str, ...] = (),
                   slots: int = 8) -> None:
        """Attach a worker core to ``node``."""
        name = f"{node}.w{len(self.workers[node]) + 1}"
        w = WorkerCore(name, [ToolInfo(t) for t in tools], caps=caps, slots=slots,
                       now=self.clock())
        self.workers[node][name.encode()] = w
        w.start(self.clock())
        self._collect_worker(node)

    def client(self, node: str) -> ClientCore:
        """A client core attached to ``node``'s normal frontend."""
        c = self.clients.get(node)
        if c is None:
            c = self.clients[node] = ClientCore(f"cli-{node}")
            self.client_inbox[node] = []
        return c

    def submit(self, node: str, tool: str, args: dict[str, Any] | None = None,
               **kw: Any) -> str:
        """A client of ``node`` submits a job; returns its id."""
        jid, frames = self.client(node).job(tool, args or {}, **kw)
        # A client sends each job on the frontend of its priority class.
        self.queue.append((node, int(kw.get("cls", 2)), [b"\x00cli", *frames], None))
        return jid

    def send_client(self, node: str, frames: list[Frame]) -> None:
        """A client of ``node`` sends raw frames to its normal frontend."""
        self.client(node)
        self.queue.append((node, 2, [b"\x00cli", *frames], None))

    # ------------------------------------------------------------- faults
    def kill(self, node: str) -> None:
        """The broker dies: it neither sends nor receives any more."""
        self.dead.add(node)

    def crash(self, node: str) -> None:
        """The broker's process dies and the OS closes its connections: a
        neighbour that dialled it sees its transport drop (the socket
        monitor's DISCONNECTED), one it dialled gets an unroutable send
        (ROUTER_MANDATORY) the next time it sends there."""
        self.dead.add(node)
        self.crashed.add(node)
        now = self.clock()
        for (a, b) in list(self._dial_socks):
            if b == node and a not in self.dead:
                self.nodes[a].transport_lost(node, now)
                self._collect(a)

    def restart(self, node: str) -> BrokerCore:
        """The broker of ``node`` is killed and started again at once: a new
        core (a new incarnation) that knows nothing; the dials it made are
        gone (dial again), its workers survive and register again."""
        self.dead.discard(node)
        old = self.nodes.pop(node)
        for key in [k for k in self._dialled if k[0] == node]:
            del self._dialled[key]
        for pair in [k for k in self._dial_socks if k[0] == node]:
            del self._dial_socks[pair]
        workers = self.workers[node]
        started = self.started[node]
        impostor = self._impostors.get(node)
        core = self.add(node, impostor)
        self.workers[node] = workers
        self.started[node] = started
        assert core.incarnation != old.incarnation
        return core

    def cut(self, a: str, b: str) -> None:
        """Messages between ``a`` and ``b`` are lost (both directions)."""
        self.cut_pairs.add(frozenset((a, b)))

    def heal(self, a: str, b: str) -> None:
        """Undo :meth:`cut`."""
        self.cut_pairs.discard(frozenset((a, b)))

    # ------------------------------------------------------------ running
    def _collect(self, node: str) -> None:
        core = self.nodes[node]
        while core.out or core.urgent:  # an unroutable send may add messages
            urgent, out = core.urgent, core.out
            core.urgent, core.out = [], []
            core.stamp_pings(self.clock())
            if self.batched:
                out = core.batched(out)
                if self.wire is not None:
                    self.wire.extend((node, i, f) for i, f in out)
            for sock, frames in urgent + out:  # heartbeats first, as the shell sends them
                self._route_out(node, sock, frames)
        self._collect_worker(node)

    def _collect_worker(self, node: str) -> None:
        for rid, w in self.workers[node].items():
            while w.out:
                self.queue.append((node, WORKERS, [rid, *w.out.pop(0)], None))

    def _route_out(self, node: str, sock: int, frames: list[Frame]) -> None:
        if node in self.dead:
            return
        if sock == WORKERS:
            w = self.workers[node].get(cast(bytes, frames[0]))
            if w is None:
                return
            action = w.on_broker(frames[1:], self.clock())
            if isinstance(action, JobStart):
                self.started[node].append(action)
                if self.auto_echo:
                    w.done(action.id, {"node": node, "args": action.args}, self.clock())
            self._collect_worker(node)
            return
        if sock < WORKERS:  # our ROUTER: to a client or an accepting-side peer
            rid = cast(bytes, frames[0])  # (the first frame: always bytes)
            if rid[:1] == b"\x00":
                c = self.clients.get(node)
                if c is not None:
                    # A client that sent a BATCH is answered with BATCHes.
                    msgs = decode_batch(frames, 1) if is_batch(frames, 1) else [frames[1:]]
                    for m in msgs:
                        r = c.on_message(m)
                        if r is not None:
                            self.client_inbox[node].append(r)
                return
            peer = node_of_rid(rid).decode()
            socks = self._dial_socks.get((peer, node))
            if peer in self.crashed:
                self.nodes[node].on_unroutable(sock, frames, self.clock())
                return
            if socks is None or self._blocked(node, peer):
                return
            self.queue.append((peer, socks[sock], frames[1:], "dealer"))
            return
        dest = self._dialled.get((node, sock))
        if dest is None or self._blocked(node, dest[0]):
            return
        claimed = self._impostors.get(node, node)
        # A signing broker dials with an unguessable incarnation routing id.
        rid = (incarnation_id(claimed, self._epoch, 1) if self.signed else claimed.encode())
        self.queue.append((dest[0], dest[1], [rid, *frames], key_of(node)))

    def _blocked(self, a: str, b: str) -> bool:
        return a in self.dead or b in self.dead or frozenset((a, b)) in self.cut_pairs

    def run(self, max_messages: int = 10_000_000) -> int:
        """Deliver frames until nothing moves; returns messages delivered."""
        for node in self.nodes:
            if node not in self.dead:
                self.nodes[node].poll(self.clock())
                self._collect(node)
        n = 0
        while self.queue and n < max_messages:
            # One message at a time, or (batched) a pass over all that wait.
            todo = len(self.queue) if self.batched else 1
            touched: dict[str, None] = {}
            for _ in range(todo):
                node, sock, frames, extra = self.queue.popleft()
                if node in self.dead:
                    continue
                core = self.nodes[node]
                now = self.clock()
                if extra == "dealer":
                    core.on_dealer(sock, frames, now)
                elif sock == WORKERS:
                    core.on_worker(frames, now)
                else:
                    core.on_frontend(sock, frames, now, uid=extra)
                touched[node] = None
                n += 1
            for node in touched:
                if node not in self.dead:
                    self.nodes[node].poll(self.clock())
                    self._collect(node)
        self.messages += n
        return n

    def advance(self, seconds: float, step: float | None = None) -> None:
        """Let ``seconds`` of virtual time pass in steps, running timers."""
        step = step or self.limits.peer_interval / 2
        end = self.clock() + seconds
        while self.clock() < end - 1e-9:
            self.clock.advance(min(step, end - self.clock()))
            now = self.clock()
            for node, core in self.nodes.items():
                if node in self.dead:
                    continue
                core.tick(now)
                for w in self.workers[node].values():
                    w.tick(now)
                self._collect(node)
            self.run()

    def replies(self, node: str) -> dict[str, Any]:
        """Replies received by ``node``'s client, by request id (drained)."""
        out = {r.id: r.value for r in self.client_inbox.get(node, []) if r.kind != "progress"}
        self.client_inbox[node] = []
        return out

    def converged(self) -> bool:
        """Every live node routes to every other live node it is connected to."""
        live = [n for n in self.nodes if n not in self.dead]
        return all(self.nodes[n].routes.reachable() == set(live) - {n} for n in live)
