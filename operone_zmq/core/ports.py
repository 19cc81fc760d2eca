"""What the parts of the broker core may ask of each other (no I/O).

Each part names the few calls it makes on another part as a Protocol here,
so a part depends on these narrow interfaces, not on the other part's class
(and no part imports another's module to reach its state).
:class:`~.broker.BrokerCore` wires the real parts together; mypy checks that
each one offers what its users ask for.

:class:`Job` is the one record parts hand each other: an entry of the job
table of :class:`~.local.LocalJobs`, created there or by the legacy and
remote parts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from ..errors import JobError
from ..jobs.router import NodeInfo
from ..protocol.bodies import JobRequest
from ..protocol.codec import Header, HeaderFields
from ..protocol.frame import Frame
from .peers import PeerLink

__all__ = [
    "QUEUED",
    "RUNNING",
    "Advertised",
    "Advertiser",
    "Job",
    "JobTable",
    "LegacyHostsView",
    "LegacyRuns",
    "LinkAdverts",
    "LinkEvents",
    "LinkSender",
    "OriginAnswers",
    "RemoteAnswers",
    "RoutedHere",
    "Router",
    "TopologyWatcher",
]

QUEUED: Final = 0
RUNNING: Final = 1


# (init=False and an __init__ of its own: one is made per job, and compiled
# by mypyc a dataclass's generated __init__ stays interpreted, 6x the cost.)
@dataclass(slots=True, init=False)
class Job:
    """A job running (or queued) on this node or on one of its legacy hosts."""

    id: str
    client: bytes
    cls: int
    tool: str
    caps: frozenset[str]
    frames: list[Frame]  # tag, header, body: forwarded to the worker untouched
    deadline: float
    submitted: float
    src: str
    state: int
    worker: bytes | None
    remote: bool  # submitted by another node (src), not a local client
    origin: bool  # submitted through this broker's origin table
    legacy: str | None  # runs on this legacy (SSH) host, not on a worker
    request: JobRequest | None  # its request (decoded once; legacy and in-process
    # tools run from it, workers from ``frames``)

    def __init__(self, id: str, client: bytes, cls: int, tool: str, caps: frozenset[str],
                 frames: list[Frame], deadline: float, submitted: float, src: str,
                 state: int = QUEUED, worker: bytes | None = None, remote: bool = False,
                 origin: bool = False, legacy: str | None = None,
                 request: JobRequest | None = None) -> None:
        self.id = id
        self.client = client
        self.cls = cls
        self.tool = tool
        self.caps = caps
        self.frames = frames
        self.deadline = deadline
        self.submitted = submitted
        self.src = src
        self.state = state
        self.worker = worker
        self.remote = remote
        self.origin = origin
        self.legacy = legacy
        self.request = request


class Advertised(Protocol):
    """Link state, as the parts whose state is in our LSA see it."""

    def mark_dirty(self, urgent: bool = True) -> None: ...


class LinkEvents(Advertised, Protocol):
    """Link state, as the peer links see it."""

    def link_up(self, link: PeerLink) -> None: ...

    def send_database(self, link: PeerLink) -> None: ...

    def incarnation_seen(self, node: str, incarnation: int, now: float) -> None: ...


class OriginAnswers(Protocol):
    """The origin table, as the job table sees it (answers of its attempts)."""

    def attempt_failed(self, jid: str, err: JobError) -> None: ...

    def reply(self, jid: str, t: int, frames: list[Frame], now: float,
              from_node: str) -> None: ...


class TopologyWatcher(Protocol):
    """The origin table, as link state sees it."""

    def topology_changed(self, reachable: set[str] | frozenset[str], now: float,
                         up: Callable[[str], bool] | None = None) -> None: ...

    def node_restarted(self, node: str, incarnation: int, now: float) -> None: ...


class RemoteAnswers(Protocol):
    """Jobs of other origins, as the job table sees them."""

    def reply(self, job: Job, frames: list[Frame], h: Header) -> None: ...

    def failed(self, job: Job, err: JobError) -> None: ...


class LegacyRuns(Protocol):
    """The legacy hosts, as the job table sees them."""

    def freed(self, job: Job) -> None: ...


class Router(Protocol):
    """Routed sending, as the parts that answer other nodes see it."""

    def originate(self, fields: HeaderFields, payload: list[Frame], *,
                  client: tuple[str, str] | None = None) -> bool: ...

    def send_to_node(self, dst: str, cls: int, frames: list[Frame], t: int, *,
                     client: tuple[str, str] | None = None, sign: bool = True) -> bool: ...

    def route_error(self, dst: str, mid: str, cls: int, err: JobError,
                    src: str | None = None) -> None: ...


class LinkSender(Protocol):
    """The peer links, as the parts that send to neighbours see them."""

    def get(self, node: str) -> PeerLink | None: ...

    def send(self, link: PeerLink, cls: int, frames: list[Frame]) -> bool: ...

    def up_links(self) -> list[PeerLink]: ...


class JobTable(Protocol):
    """The job table of this node, as legacy hosts and remote jobs see it."""

    def __contains__(self, jid: str) -> bool: ...

    def get(self, jid: str) -> Job | None: ...

    def add(self, job: Job) -> None: ...

    def finish(self, jid: str) -> None: ...

    def accept(
        self, client: bytes, cls: int, src: str, jid: str, req: JobRequest,
        job_frames: list[Frame], now: float, *, remote: bool, origin: bool = False,
    ) -> JobError | None: ...

    def abort(self, job: Job, err: JobError, silent: bool = False) -> None: ...

    def reply(self, job: Job, frames: list[Frame], h: Header) -> None: ...

    def info(self) -> NodeInfo: ...

    def supersede(self, jid: str) -> None: ...


class Advertiser(Protocol):
    """The worker pool, as link state sees it (what our LSA says of us)."""

    def load(self) -> tuple[int, int]: ...

    def tools(self) -> list[str]: ...

    def caps(self) -> list[str]: ...

    def worker_count(self) -> int: ...


class LegacyHostsView(Protocol):
    """The legacy hosts, as the origin table, link state and relay see them."""

    tools: tuple[str, ...]

    def __contains__(self, name: object) -> bool: ...

    def names(self) -> list[str]: ...

    def loads(self) -> list[tuple[str, float, int]]: ...

    def accept(self, name: str, client: bytes, cls: int, src: str, jid: str,
               req: JobRequest, now: float, *, remote: bool,
               origin: bool = False) -> JobError | None: ...

    def deliver(self, h: Header, frames: list[Frame], now: float) -> None: ...


class RoutedHere(Protocol):
    """Jobs of other origins, as the relay sees them (routed JOB/CANCEL for us)."""

    def deliver(self, h: Header, frames: list[Frame], now: float,
                req: JobRequest | None = None) -> None: ...


class LinkAdverts(LinkSender, Protocol):
    """The peer links, as link state sees them."""

    def advertise_costs(self) -> list[tuple[str, float]]: ...

    def link_loss(self, node: str) -> float: ...
