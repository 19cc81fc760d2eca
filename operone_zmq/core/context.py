"""What every part of the broker core shares: identity, clock, outbox, counters.

Rules:

* One :class:`BrokerContext` per broker, made by :class:`~.broker.BrokerCore`
  and handed to every part; it holds no job, link or route state.
* ``now`` is set by the face on every input (frames or a timer) before any
  part runs; parts read it and never keep a clock of their own.
* ``out``, ``events`` and ``actions`` are the only way out of the core.  The
  shell swaps these lists for empty ones after flushing them, so parts always
  reach them through the context (``ctx.out.append``), never keep the list.
* ``counters`` and ``errors`` are the broker's one set of statistics (QUERY
  "stats"); every part counts into them.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ..errors import JobError
from ..protocol.bodies import ErrorBody
from ..protocol.codec import TAG, MsgType, encode_header
from ..protocol.frame import Frame
from ..protocol.limits import DEFAULT_TTL
from ..routing.lsdb import DEFAULT_DOWN_RETENTION

__all__ = [
    "CLASS_NAMES",
    "FIRST_DIAL_SOCKET",
    "WORKERS",
    "Authorizer",
    "BrokerContext",
    "BrokerLimits",
]

#: Frontend socket of each priority class, and the workers' socket.
CLASS_NAMES: Final = ("critical", "high", "normal", "low")
WORKERS: Final = 4

#: Dialled DEALER sockets get indices from here on (the shell allocates them).
FIRST_DIAL_SOCKET: Final = 5

_JOB: Final = int(MsgType.JOB)
_RESULT: Final = int(MsgType.RESULT)
_ERROR: Final = int(MsgType.ERROR)
_PROGRESS: Final = int(MsgType.PROGRESS)
_HEARTBEAT: Final = int(MsgType.HEARTBEAT)
_READY: Final = int(MsgType.READY)
_DISCONNECT: Final = int(MsgType.DISCONNECT)
_QUERY: Final = int(MsgType.QUERY)
_CANCEL: Final = int(MsgType.CANCEL)
_PING: Final = int(MsgType.PING)
_HELLO: Final = int(MsgType.HELLO)
_WELCOME: Final = int(MsgType.WELCOME)
_PONG: Final = int(MsgType.PONG)
_LSA: Final = int(MsgType.LSA)
_BYE: Final = int(MsgType.BYE)
_BROADCAST: Final = int(MsgType.BROADCAST)
_REPLY: Final = int(MsgType.REPLY)
_BATCH: Final = int(MsgType.BATCH)
#: Message types routed hop by hop by their header's dst.
_ROUTED: Final = frozenset({_JOB, _RESULT, _ERROR, _PROGRESS, _CANCEL})

#: (claimed node id, Curve key z85 from ZAP User-Id, token) -> refusal reason or None.
Authorizer = Callable[[str, "str | None", "str | None"], "str | None"]


@dataclass(frozen=True, slots=True)
class BrokerLimits:
    """Bounds and timings of one broker."""

    #: Jobs waiting for a free worker slot; past it, submitters get Overloaded.
    #: 10,000 is ~100x what a busy node runs at once and a few MB of memory.
    max_queued_jobs: int = 10_000
    #: Jobs accepted and not yet finished (queued + running).
    max_jobs: int = 100_000
    #: Jobs one client connection may have in flight (submitted, not yet
    #: answered); past it, Overloaded.  Below the 10,000-message SNDHWM of
    #: the connection, so the final answers of a client that stops reading
    #: fit in its pipe with room for PONGs and REPLYs (docs/protocol.md 10.3).
    max_client_jobs: int = 5_000
    #: Body bytes of the jobs one client connection has in flight; past it,
    #: Overloaded.  Two maximum-size (64 MiB) messages: one client cannot make
    #: the broker hold much more than it could send in two messages.
    max_client_bytes: int = 128 * 1024 * 1024
    #: Body bytes of the jobs run here for one other origin node (all of its
    #: clients together); past it, Overloaded.  Four clients' worth.
    max_origin_bytes: int = 512 * 1024 * 1024
    #: Timeout for a job that names none.
    default_timeout: float = 300.0
    #: Seconds between heartbeats to each worker.
    heartbeat_interval: float = 1.0
    #: Heartbeat intervals of silence after which a worker is declared dead.
    liveness: int = 3
    #: Seconds between PINGs on each peer link (and the unit of peer liveness).
    peer_interval: float = 1.0
    #: Peer heartbeat intervals of silence after which a link is down.
    peer_liveness: int = 3
    #: Peer links this broker accepts (the original's maxPeers).
    max_peers: int = 64
    #: Broadcast ids remembered to deliver each broadcast once (bounded LRU).
    max_seen_broadcasts: int = 10_000
    #: Received broadcasts kept for QUERY "broadcasts".
    max_kept_broadcasts: int = 1000
    #: Body bytes of the broadcasts kept for QUERY "broadcasts" (oldest out
    #: first); a body above 1/16 of it is kept without its data.  16 MiB:
    #: the history is a debugging view, not a store.
    max_kept_broadcast_bytes: int = 16 * 1024 * 1024
    #: Extra seconds a forwarded job waits past its timeout for the remote answer.
    remote_grace: float = 1.0
    #: Seconds a finished remote job's result is kept to answer a repeated attempt.
    result_cache_seconds: float = 300.0
    #: Seconds a node whose LSA aged out stays known as "down since T" (0:
    #: forgotten at expiry); configuration ``routing.down_retention_s``.
    down_retention: float = DEFAULT_DOWN_RETENTION
    #: Client connections served at once (configuration ``limits.max_clients``);
    #: a new one past it is answered ERROR too_many_clients.
    max_clients: int = 1000
    #: Seconds a client connection may be silent, with no job in flight,
    #: before its place is given to another (ZeroMQ does not tell a ROUTER
    #: that a peer left; a minute outlasts any client's pause between requests).
    client_idle: float = 60.0
    #: Workers this node starts itself ('operone node start'; 0: none known).
    #: While fewer have registered, within ``worker_grace`` s of the broker's
    #: start, a job for a tool nobody offers yet waits for them instead of
    #: failing with ToolNotFound (they re-register within a second or two
    #: after a restart; 10 s bounds the wait when one never comes).
    expected_workers: int = 0
    worker_grace: float = 10.0


def _new_counters() -> dict[str, int]:
    return {
        "jobs_received": 0,
        "jobs_completed": 0,
        "jobs_failed": 0,
        "jobs_timed_out": 0,
        "jobs_cancelled": 0,
        "workers_lost": 0,
        "malformed": 0,
        "unroutable": 0,
        "late_replies": 0,
        "queries": 0,
        "forwarded": 0,
        "relayed": 0,
        "no_route": 0,
        "ttl_expired": 0,
        "peers_refused": 0,
        "peer_key_mismatch": 0,
        "superseded_hellos": 0,
        "lsas_received": 0,
        "lsas_sent": 0,
        "lsas_unverified": 0,
        "lsa_origination_failed": 0,
        "signatures_refused": 0,
        "replays_refused": 0,
        "unsigned_direct": 0,
        "pairwise_macs": 0,
        "broadcasts_received": 0,
        "retries": 0,
        "results_from_cache": 0,
        "qos_refused": 0,
        "qos_dropped_link_down": 0,
        "peers_unroutable": 0,
        "attempts_resent": 0,
        "clients_refused": 0,
        "jobs_waited_for_workers": 0,
        "held_resent": 0,
        "held_dropped": 0,
        "peer_restarts": 0,
        "attempts_restarted": 0,
        "orphans_joined": 0,
        "orphans_answered": 0,
        "batches_sent": 0,
        "batches_received": 0,
    }


class BrokerContext:
    """The broker's identity, its injected clocks, its outbox and counters."""

    __slots__ = (
        "_seq",
        "actions",
        "cluster",
        "counters",
        "errors",
        "events",
        "incarnation",
        "limits",
        "name",
        "node_id",
        "now",
        "out",
        "public_key",
        "urgent",
        "wall",
    )

    def __init__(self, node_id: str, limits: BrokerLimits, now: float,
                 wall: Callable[[], float], name: str, cluster: str, public_key: str,
                 incarnation: int = 0) -> None:
        self.node_id = node_id
        #: This broker run (in HELLO, WELCOME, PONG and our LSAs): random, new
        #: at each start, so a neighbour or client tells a restart from a
        #: reconnect (SWIM/memberlist's incarnation; never 0, which means "not said").
        self.incarnation = incarnation or secrets.randbits(62) + 1
        self.name = name or node_id
        self.cluster = cluster
        self.public_key = public_key
        self.limits = limits
        self.wall = wall
        self.now = now
        #: Frames to send: (socket index, frames including the routing id).
        self.out: list[tuple[int, list[Frame]]] = []
        #: Heartbeats (PING, PONG between brokers): the shell sends these
        #: before ``out`` and as soon as the input that made them is handled,
        #: then calls ``BrokerCore.stamp_pings`` with the time.
        self.urgent: list[tuple[int, list[Frame]]] = []
        #: Events for the shell to emit: (name, payload).
        self.events: list[tuple[str, Any]] = []
        #: Things only the shell can do (open sockets): ("dial", node, host, port).
        self.actions: list[tuple[Any, ...]] = []
        self.counters = _new_counters()
        self.errors: dict[str, int] = {}
        self._seq = 0

    def header(self, t: int, mid: str, dst: str, cls: int, corr: str | None = None) -> bytes:
        """A header from this node, stamped with the wall clock."""
        # (A plain tuple: the same array, without Header's interpreted __new__.)
        return encode_header(
            (t, mid, self.node_id, dst, DEFAULT_TTL, int(self.wall() * 1000), cls, corr)
        )

    def next_id(self) -> str:
        """A fresh message id of this broker."""
        self._seq += 1
        return f"{self.node_id[:40]}.{self._seq}"

    def count_error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1

    def send_error(
        self, sock: int, rid: bytes, mid: str, dst: str, cls: int, err: JobError,
        corr: str | None = None,
    ) -> None:
        """Answer ``rid`` on socket ``sock`` with ERROR ``err`` (counted)."""
        self.errors[err.code] = self.errors.get(err.code, 0) + 1
        body = ErrorBody(err.code, err.message, err.remote_type, err.node or self.node_id,
                         err.details).pack()
        self.out.append((sock, [rid, TAG, self.header(_ERROR, mid, dst, cls, corr), body]))
