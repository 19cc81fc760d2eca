"""ClientCore: the client's side of the client dialogue, with no I/O.

It makes job ids, encodes JOB / QUERY / CANCEL, and turns the broker's
replies into outcomes.  The shell keeps the futures and the sockets.

Every request a client sends ends in exactly one of: RESULT (jobs), REPLY
(queries), ERROR (either), or a local deadline that the shell enforces.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ..errors import JobError, ProtocolError, error_from_wire
from ..protocol.bodies import (
    Cancel,
    ErrorBody,
    JobRequest,
    Ping,
    Progress,
    Query,
    ResultBody,
    pack_value,
    unpack_value,
)
from ..protocol.codec import TAG, MsgType, decode, encode_header
from ..protocol.frame import Frame
from ..protocol.limits import DEFAULT_TTL

__all__ = ["ClientCore", "JobResult", "Reply"]

_RESULT: Final = int(MsgType.RESULT)
_ERROR: Final = int(MsgType.ERROR)
_PROGRESS: Final = int(MsgType.PROGRESS)
_REPLY: Final = int(MsgType.REPLY)
_PONG: Final = int(MsgType.PONG)
_JOB: Final = int(MsgType.JOB)


@dataclass(frozen=True, slots=True, init=False)
class JobResult:
    """A finished job: its value and where and how it ran."""

    job_id: str
    value: Any
    executed_on: str
    duration: float
    attempts: int

    # (An __init__ of its own, for the compiled build: there a dataclass's
    # generated one stays interpreted, 6x the cost of a compiled one.)
    def __init__(self, job_id: str, value: Any, executed_on: str, duration: float,
                 attempts: int = 1) -> None:
        object.__setattr__(self, "job_id", job_id)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "executed_on", executed_on)
        object.__setattr__(self, "duration", duration)
        object.__setattr__(self, "attempts", attempts)


def _result_maker() -> Callable[[str, Any, str, float, int], JobResult]:
    """JobResult's constructor, for one result per job: in pure Python its
    frozen ``__init__`` sets each field through ``object.__setattr__`` (1.4 us
    a job against 0.5 us for the slots' own setters, used here).  Compiled by
    mypyc, JobResult is a native class and its ``__init__`` already fast:
    that one then."""
    new = object.__new__
    slots: list[Any] = [vars(JobResult).get(f)
                        for f in ("job_id", "value", "executed_on", "duration", "attempts")]
    if any(type(d).__name__ != "member_descriptor" for d in slots):
        return JobResult  # (mypyc's native attributes)
    s_id, s_value, s_on, s_duration, s_attempts = (d.__set__ for d in slots)

    def make(job_id: str, value: Any, executed_on: str, duration: float,
             attempts: int) -> JobResult:
        r: JobResult = new(JobResult)
        s_id(r, job_id)
        s_value(r, value)
        s_on(r, executed_on)
        s_duration(r, duration)
        s_attempts(r, attempts)
        return r

    return make


_new_result: Final = _result_maker()


@dataclass(slots=True, init=False)  # not frozen, and an __init__: one per answer
# (see protocol.bodies.JobRequest)
class Reply:
    """A decoded reply: ``kind`` is "result", "error", "progress", "reply" or
    "pong" (value: the broker's incarnation, 0 when it does not say)."""

    kind: str
    id: str
    value: Any  # JobResult, JobError, Progress, or the REPLY's value

    def __init__(self, kind: str, id: str, value: Any) -> None:
        self.kind = kind
        self.id = id
        self.value = value


class ClientCore:
    """Encodes a client's requests and decodes the broker's answers."""

    def __init__(self, client_id: str | None = None, *,
                 wall: Callable[[], float] = time.time) -> None:
        # Ids are at most 64 characters on the wire: keep room for the counter.
        cid = (client_id or "c")[:40]
        self.prefix = cid + "-" + os.urandom(4).hex() + "-"
        self.client_id = cid if client_id else ""
        self._seq = 0
        self._wall = wall
        self.malformed = 0
        #: The broker's last PONG said it accepts BATCH from us (revision 7).
        self.broker_batches = False

    def next_id(self) -> str:
        """A job or query id unique to this client."""
        self._seq += 1
        # (Not an f-string with ":x": compiled, that is a str.format call,
        # about 4,000 instructions a job against a few hundred for hex().)
        return self.prefix + hex(self._seq)[2:]

    def _header(self, t: int, mid: str, dst: str, cls: int) -> bytes:
        # A plain tuple in Header's field order: encode_header writes the
        # same array, without the NamedTuple's interpreted __new__ (about
        # 3,000 instructions a message).
        return encode_header((t, mid, self.client_id, dst, DEFAULT_TTL,
                              int(self._wall() * 1000), cls, None))

    def job(
        self,
        tool: str,
        args: dict[str, Any] | None = None,
        *,
        cls: int = 2,
        timeout: float | None = None,
        on: str | None = None,
        caps: tuple[str, ...] = (),
        retries: int = 0,
        idempotent: bool = True,
        prefer_local: bool = False,
        stream: bool = False,
        job_id: str | None = None,
    ) -> tuple[str, list[Frame]]:
        """Frames of a JOB and its id."""
        jid = job_id or self.next_id()
        body = JobRequest(tool, args or {}, timeout, on, caps, retries, idempotent,
                          prefer_local, stream).pack()
        return jid, [TAG, self._header(_JOB, jid, on or "", cls), body]

    def query(self, what: str, args: dict[str, Any] | None = None,
              cls: int = 0) -> tuple[str, list[Frame]]:
        """Frames of a QUERY and its id."""
        qid = self.next_id()
        return qid, [TAG, self._header(int(MsgType.QUERY), qid, "", cls),
                     Query(what, args or {}).pack()]

    def broadcast(self, data: Any, cls: int = 0) -> tuple[str, list[Frame]]:
        """Frames of a BROADCAST of ``data`` and its id."""
        bid = self.next_id()
        return bid, [TAG, self._header(int(MsgType.BROADCAST), bid, "", cls), pack_value(data)]

    def ping(self, cls: int = 0) -> tuple[str, list[Frame]]:
        """Frames of a PING and its id (the PONG says the broker's incarnation)."""
        pid = self.next_id()
        return pid, [TAG, self._header(int(MsgType.PING), pid, "", cls), b""]

    def cancel(self, jid: str, reason: str = "", cls: int = 2) -> list[Frame]:
        """Frames of a CANCEL for job ``jid``."""
        return [TAG, self._header(int(MsgType.CANCEL), jid, "", cls), Cancel(reason).pack()]

    def on_message(self, frames: list[Frame]) -> Reply | None:
        """Decode an answer from the broker; None for malformed or unknown ones."""
        try:
            msg = decode(frames)
            h = msg.header
            t = h.type
            if t == _RESULT:
                r = ResultBody.unpack(msg.body)
                return Reply("result", h.id,
                             _new_result(h.id, r.value, r.node or h.src, r.duration,
                                         r.attempts))
            if t == _ERROR:
                e = ErrorBody.unpack(msg.body)
                err: JobError = error_from_wire(e.code, e.message, job_id=h.id,
                                                remote_type=e.type, node=e.node,
                                                details=e.details)
                return Reply("error", h.corr or h.id, err)
            if t == _PROGRESS:
                return Reply("progress", h.id, Progress.unpack(msg.body))
            if t == _REPLY:
                return Reply("reply", h.corr or h.id, unpack_value(msg.body))
            if t == _PONG:
                # value: the broker's incarnation (0 from a broker that does
                # not say it, or an empty first-revision body).
                pong = Ping.unpack(msg.body) if msg.body else None
                self.broker_batches = pong is not None and pong.batch
                return Reply("pong", h.corr or h.id, pong.incarnation if pong else 0)
        except ProtocolError:
            pass
        self.malformed += 1
        return None
