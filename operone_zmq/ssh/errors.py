"""What the SSH client raises, and the :class:`CommandResult` that two of its
errors carry.

Every class here is an :class:`~operone_zmq.errors.SSHError`; each pickles
with its attributes (they cross process and thread-pool boundaries).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from operone_zmq.errors import SSHError


class SSHConnectionRefused(SSHError):
    """The TCP connection was refused, the host is unreachable or its name
    does not resolve."""


class SSHAuthenticationFailed(SSHError):
    """The server refused our credentials, or the private key could not be
    read or decrypted."""


class SSHHostKeyUnknown(SSHError):
    """The server's host key is not in ``known_hosts`` or (``changed``) differs
    from the one recorded there."""

    def __init__(
        self,
        message: str,
        *,
        host_id: str = "",
        key_type: str = "",
        fingerprint: str = "",
        known_hosts: Path | None = None,
        changed: bool = False,
    ) -> None:
        super().__init__(message)
        #: The known_hosts name of the server: ``host`` or ``[host]:port``.
        self.host_id = host_id
        self.key_type = key_type
        #: OpenSSH-style ``SHA256:...`` fingerprint of the key the server offered.
        self.fingerprint = fingerprint
        self.known_hosts = known_hosts
        self.changed = changed

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_host_key_error, (type(self), str(self), self.__dict__.copy()))


def _rebuild_host_key_error(
    cls: type[SSHHostKeyUnknown], message: str, attrs: dict[str, Any]
) -> SSHHostKeyUnknown:
    return cls(message, **attrs)


class SSHTimeout(SSHError):
    """Connecting, a command or an SFTP request took longer than allowed.

    For a command, ``partial`` holds the output received before it was
    stopped (``exit_status`` -1)."""

    def __init__(self, message: str, *, partial: CommandResult | None = None) -> None:
        super().__init__(message)
        self.partial = partial

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_timeout, (type(self), str(self), self.partial))


def _rebuild_timeout(
    cls: type[SSHTimeout], message: str, partial: CommandResult | None
) -> SSHTimeout:
    return cls(message, partial=partial)


class SSHCommandFailed(SSHError):
    """``execute(..., check=True)``: the command exited with a non-zero status."""

    def __init__(self, command: str, result: CommandResult, target: str = "") -> None:
        where = f" on {target}" if target else ""
        message = f"command {clip(command)!r}{where} exited with status {result.exit_status}"
        last = result.stderr.strip().splitlines()
        if last:
            message += f": {clip(last[-1])}"
        super().__init__(message)
        self.command = command
        self.result = result
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.command, self.result, self.target))


class SSHFileError(SSHError):
    """An SFTP request failed on the remote side (no such file, permission
    denied, ...).  ``errno`` is set when the server said why."""

    def __init__(self, message: str, *, path: str = "", errno: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.errno = errno

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_file_error, (type(self), str(self), self.path, self.errno))


def _rebuild_file_error(
    cls: type[SSHFileError], message: str, path: str, err: int | None
) -> SSHFileError:
    return cls(message, path=path, errno=err)


# ------------------------------------------------------------------- result
@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a remote command produced.  ``exit_status`` is -1 when the server
    reported none (the command was killed by a signal)."""

    stdout: str
    stderr: str
    exit_status: int

    @property
    def ok(self) -> bool:
        """True when the command exited with status 0."""
        return self.exit_status == 0


def clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
