"""The one exception hierarchy of operone-zmq, named after what failed.

Everything raised by this package derives from :class:`OperoneError`.  Errors
that travel over the wire carry a stable *code* (a short snake_case string,
listed in ``docs/protocol.md``); :func:`error_from_wire` turns a received
error back into the matching exception class, so a remote failure arrives as
a typed exception holding the remote type name and message, never a pickled
traceback.

This module does no I/O and imports nothing outside the standard library.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

__all__ = [
    "MAYBE_STARTED_CODES",
    "TRANSIENT_CODES",
    "AuthenticationError",
    "BadRequest",
    "BrokerRestarted",
    "BrokerUnreachable",
    "ConfigError",
    "JobCancelled",
    "JobError",
    "JobTimeout",
    "MessageTooLarge",
    "NoRoute",
    "NotIdempotent",
    "OperoneError",
    "Overloaded",
    "PathOutsideRoot",
    "ProtocolError",
    "Refused",
    "SSHError",
    "SecurityError",
    "TooManyClients",
    "ToolFailed",
    "ToolNotFound",
    "UnsupportedVersion",
    "WorkerLost",
    "error_from_wire",
    "is_transient",
]


class OperoneError(Exception):
    """Base class of every error raised by operone-zmq."""

    #: Stable wire code of this error family (see docs/protocol.md).
    code: ClassVar[str] = "internal"


# --------------------------------------------------------------------- config
class ConfigError(OperoneError):
    """A configuration file, option or key file is missing or invalid."""

    code = "config"


# ------------------------------------------------------------------- protocol
class ProtocolError(OperoneError):
    """A message broke the wire protocol (bad frames, types or sizes)."""

    code = "protocol"


class UnsupportedVersion(ProtocolError):
    """The version tag of a message names a protocol version we do not speak."""

    code = "version"


class MessageTooLarge(ProtocolError):
    """A message or one of its frames is larger than the configured limit."""

    code = "too_large"


# ------------------------------------------------------------------- security
class SecurityError(OperoneError):
    """Authentication, authorisation or integrity failed."""

    code = "security"


class AuthenticationError(SecurityError):
    """Our key or token was not accepted, or the peer's could not be verified."""

    code = "auth"


# --------------------------------------------------------------- connections
class BrokerUnreachable(OperoneError):
    """No answer from the broker within the allowed time."""

    code = "unreachable"


# ----------------------------------------------------------------------- jobs
class JobError(OperoneError):
    """A job ended in an error.  Carries the job id and, for remote failures,
    the remote exception's type name and message."""

    code = "job"

    def __init__(
        self,
        message: str,
        *,
        job_id: str | None = None,
        remote_type: str | None = None,
        node: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.job_id = job_id
        self.remote_type = remote_type
        self.node = node
        self.details: dict[str, Any] = dict(details or {})

    def __reduce__(self) -> tuple[Any, ...]:  # keep picklable for thread/process pools
        return (
            _rebuild_job_error,
            (type(self), self.message, self.job_id, self.remote_type, self.node, self.details),
        )


def _rebuild_job_error(
    cls: type[JobError],
    message: str,
    job_id: str | None,
    remote_type: str | None,
    node: str | None,
    details: dict[str, Any],
) -> JobError:
    return cls(message, job_id=job_id, remote_type=remote_type, node=node, details=details)


class ToolNotFound(JobError):
    """No worker (or node) offers the requested tool."""

    code = "tool_not_found"


class BadRequest(JobError):
    """The request was well-formed on the wire but its content is invalid
    (bad arguments, unknown option, wrong types)."""

    code = "bad_request"


class JobTimeout(JobError):
    """The job did not finish within its timeout."""

    code = "timeout"


class ToolFailed(JobError):
    """The tool ran and raised; ``remote_type`` and ``message`` say what."""

    code = "tool_failed"


class Refused(JobError):
    """The node refused the job (policy: executable not allowed, path outside
    the root, tool disabled, not authorised)."""

    code = "refused"


class PathOutsideRoot(Refused):
    """A file tool was asked for a path that escapes its configured root."""

    code = "path_outside_root"


class Overloaded(JobError):
    """A bounded queue is full; the job was not accepted.  Retry later."""

    code = "overloaded"


class TooManyClients(Overloaded):
    """The broker already serves ``limits.max_clients`` client connections;
    this one was not served.  Retry later, or use another broker."""

    code = "too_many_clients"


class NoRoute(JobError):
    """The destination node is unknown or unreachable."""

    code = "no_route"


class WorkerLost(JobError):
    """The worker running the job stopped answering (crashed or was killed)."""

    code = "worker_lost"


class NotIdempotent(JobError):
    """A non-idempotent job may have started on a node that then failed; it
    was not run again."""

    code = "not_idempotent"


class BrokerRestarted(JobError):
    """The client's own broker restarted (a new incarnation) while the job
    was pending there: the job is lost with it.  Raised by the client, never
    sent on the wire; an idempotent job is submitted again instead."""

    code = "broker_restarted"


class JobCancelled(JobError):
    """The job was cancelled before it finished (what a cancelled future of
    the blocking client raises)."""

    code = "cancelled"


# ------------------------------------------------------------------------ ssh
class SSHError(OperoneError):
    """An SSH operation on a legacy host failed."""

    code = "ssh"


_BY_CODE: Final[dict[str, type[JobError]]] = {
    cls.code: cls
    for cls in (
        ToolNotFound,
        BadRequest,
        JobTimeout,
        ToolFailed,
        Refused,
        PathOutsideRoot,
        Overloaded,
        TooManyClients,
        NoRoute,
        WorkerLost,
        NotIdempotent,
        JobCancelled,
    )
}


#: Codes of failures that another attempt (later, or on another node) may not
#: meet: the node, its worker or the path to it failed, not the job.  An
#: origin broker retries these while the job has retries left.
TRANSIENT_CODES: Final = frozenset(
    {"worker_lost", "no_route", "overloaded", "timeout", "unreachable"})
#: Transient codes after which the job may have started (it is then not run
#: again unless it is idempotent).
MAYBE_STARTED_CODES: Final = frozenset({"worker_lost", "timeout", "unreachable"})


def is_transient(err: JobError) -> bool:
    """Whether another attempt of the job may succeed: a transient code, or an
    error that says so (``details["transient"]``: a node that just started
    and whose workers have not registered yet answers ``tool_not_found`` so)."""
    return err.code in TRANSIENT_CODES or bool(err.details.get("transient"))


def error_from_wire(
    code: str,
    message: str,
    *,
    job_id: str | None = None,
    remote_type: str | None = None,
    node: str | None = None,
    details: dict[str, Any] | None = None,
) -> JobError:
    """Build the exception for an ERROR received from the network.

    Unknown codes (from a newer peer) become a plain :class:`JobError` whose
    ``details["code"]`` keeps the original code.
    """
    cls = _BY_CODE.get(code, JobError)
    d = dict(details or {})
    if cls is JobError:
        d.setdefault("code", code)
    return cls(message, job_id=job_id, remote_type=remote_type, node=node, details=d)
