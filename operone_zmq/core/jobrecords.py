"""What a person sees of a job: its record, and the memory of finished ones (no I/O).

A :class:`JobRecord` is the view of one job that QUERY ``jobs`` and QUERY
``job`` answer (docs/dashboard.md has the contract, docs/protocol.md section
5.11 the wire): its tool, where it runs, its state, its attempts and timings.
The origin table keeps one per job of our clients; the local job table makes
one when a job it ran for another broker finishes.

Rules:

* Times are wall-clock Unix seconds (another machine shows them as times of
  day); ``duration`` is ``finished - started``.
* A finished record goes into a :class:`FinishedJobs` ring: the last
  :data:`MAX_FINISHED_JOBS`, oldest out first.  A RESULT body is kept with
  it only up to :data:`MAX_KEPT_RESULT` bytes, and at most
  :data:`MAX_HISTORY` attempts are kept per job, so the ring's memory is
  bounded whatever the jobs return or however often they are retried.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from ..errors import JobError, ProtocolError
from ..protocol.bodies import ErrorBody, ResultBody
from ..protocol.frame import Frame

__all__ = [
    "MAX_FINISHED_JOBS",
    "MAX_HISTORY",
    "MAX_KEPT_RESULT",
    "STATES",
    "FinishedJobs",
    "JobRecord",
    "error_map",
]

#: Finished jobs remembered for QUERY jobs / job: a screenful of recent work
#: and `operone job ID` shortly after the fact (about 1 KB each without results).
MAX_FINISHED_JOBS: Final = 1000
#: Largest RESULT body (bytes) kept with a finished record for QUERY job: a
#: small value is shown; a big one would make the ring hold megabytes.
MAX_KEPT_RESULT: Final = 16 * 1024
#: Attempts kept in a record's history (a job's retries are the client's to
#: choose; the first and the latest matter).
MAX_HISTORY: Final = 16
#: The states of the contract, in their order of life.
STATES: Final = ("queued", "running", "done", "failed", "cancelled")


def error_map(err: JobError | ErrorBody) -> dict[str, str]:
    """The ``error`` field of a job map: ``{"code", "message"}`` (the wire code
    of an error this version has no class for, as received)."""
    code = err.code
    if isinstance(err, JobError) and type(err) is JobError:
        code = str(err.details.get("code", code))
    return {"code": code, "message": err.message}


# (init=False and an __init__ of its own: one is made per job, and compiled
# by mypyc a dataclass's generated __init__ stays interpreted, 6x the cost.)
@dataclass(slots=True, init=False)
class JobRecord:
    """One job as QUERY jobs shows it."""

    id: str
    tool: str
    submitter: str | None
    started: float
    priority: str | None
    timeout: float | None
    node: str | None
    state: str
    attempts: int
    finished: float | None
    error: dict[str, str] | None
    result: bytes | None  # the RESULT body, when small enough to keep
    history: list[dict[str, Any]]
    #: The fingerprint of the client key that submitted it (jobs of our own
    #: clients); None for a job run here for another broker.  Not in the map:
    #: it decides who may read the record (core/queries.py).
    owner: str | None

    def __init__(self, id: str, tool: str, submitter: str | None, started: float,
                 priority: str | None = None, timeout: float | None = None,
                 node: str | None = None, state: str = "queued", attempts: int = 0,
                 finished: float | None = None, error: dict[str, str] | None = None,
                 result: bytes | None = None, history: list[dict[str, Any]] | None = None,
                 owner: str | None = None) -> None:
        self.id = id
        self.tool = tool
        self.submitter = submitter
        self.started = started
        self.priority = priority
        self.timeout = timeout
        self.node = node
        self.state = state
        self.attempts = attempts
        self.finished = finished
        self.error = error
        self.result = result
        self.history = [] if history is None else history
        self.owner = owner

    def attempt(self, node: str, wall: float) -> None:
        """A new attempt starts on ``node``."""
        self.attempts += 1
        self.node = node
        if len(self.history) >= MAX_HISTORY:
            del self.history[1]  # keep the first and the latest
        self.history.append({"node": node, "started": wall, "finished": None, "error": None})

    def attempt_ended(self, wall: float, error: dict[str, str] | None) -> None:
        """The current attempt ended (``error``: how it failed)."""
        if self.history and self.history[-1]["finished"] is None:
            self.history[-1]["finished"] = wall
            self.history[-1]["error"] = error

    def finish(self, state: str, wall: float, *, error: dict[str, str] | None = None,
               result: Frame | None = None, node: str | None = None) -> None:
        """The job's one answer was sent: ``state`` is done, failed or cancelled."""
        self.state = state
        self.finished = wall
        self.error = error
        if node:
            self.node = node
        if result is not None and len(result) <= MAX_KEPT_RESULT:
            self.result = bytes(result)  # (bytes: at most 16 KiB, never a view)
        self.attempt_ended(wall, error)

    def as_map(self, state: str | None = None, *, detail: bool = False) -> dict[str, Any]:
        """The job map of the contract (``state``: the live state, for a job in
        flight whose state another part knows better); ``detail`` adds the
        keys of QUERY job."""
        finished = self.finished
        m: dict[str, Any] = {
            "id": self.id,
            "tool": self.tool,
            "node": self.node,
            "state": state or self.state,
            "attempts": max(1, self.attempts),
            "started": self.started,
            "finished": finished,
            "duration": None if finished is None else round(finished - self.started, 6),
            "submitter": self.submitter,
            "error": self.error,
        }
        if detail:
            m["priority"] = self.priority
            m["timeout"] = self.timeout
            m["history"] = [dict(h) for h in self.history]
            if self.result is not None:
                try:
                    m["result"] = ResultBody.unpack(self.result).value
                except ProtocolError:
                    pass
        return m


class FinishedJobs:
    """The last :data:`MAX_FINISHED_JOBS` finished records, by id."""

    def __init__(self, capacity: int = MAX_FINISHED_JOBS) -> None:
        self._capacity = capacity
        #: By id, oldest first (a record added again moves to the end).
        self._records: dict[str, JobRecord] = {}
        #: The same records in the order they were added: the oldest leaves
        #: first.  (An OrderedDict's pop and popitem cost three times this.)
        self._order: deque[JobRecord] = deque()

    def add(self, record: JobRecord) -> None:
        records = self._records
        order = self._order
        rid = record.id
        old = records.pop(rid, None)
        if old is not None:  # an id finished again (rare): out of its old place
            self._order = order = deque(r for r in order if r is not old)
        records[rid] = record
        order.append(record)
        if len(order) > self._capacity:
            del records[order.popleft().id]

    def get(self, jid: str) -> JobRecord | None:
        return self._records.get(jid)

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[JobRecord]:
        """Newest first."""
        return reversed(self._records.values())
