"""Run commands and move files on legacy hosts over SSH (Fabric / Paramiko).

:class:`SSHClient` is a small, typed façade over :class:`fabric.Connection`
for hosts that cannot run an operone worker::

    with SSHClient("10.0.0.5", username="admin", private_key_path=key) as ssh:
        result = ssh.execute(["ls", "-la", "/srv"])      # argv, quoted for you
        print(result.stdout, result.exit_status)
        data = ssh.read_file("/etc/hostname")             # SFTP

Host keys
    The server's host key is always checked against ``known_hosts`` (default
    ``~/.ssh/known_hosts``; hashed and plain entries both work).  An unknown
    host raises :class:`SSHHostKeyUnknown` unless ``accept_unknown_host=True``,
    which trusts the key on first use and *appends* one plain line for it to
    ``known_hosts`` (the file is never rewritten).  A key that differs from
    the recorded one is always refused, whatever ``accept_unknown_host`` says.
    Lines Paramiko cannot use (malformed ones, unsupported key types, and the
    ``@cert-authority`` / ``@revoked`` markers) are skipped, not fatal.

Authentication precedence
    * ``private_key_path`` and/or ``password`` given: exactly these are used,
      the key first, then the password.  The SSH agent and the default keys
      in ``~/.ssh`` are **not** consulted, so a stray key can never log in as
      somebody else.  ``passphrase`` decrypts ``private_key_path``.
    * Neither given: Paramiko's defaults apply, the SSH agent first, then
      ``~/.ssh/id_*`` (``passphrase`` decrypts those).
    * ``username`` defaults to the local user name.  ``~/.ssh/config`` and
      Fabric's own config files are not read: what you pass is what is used.

Commands
    A command is a shell string, run by the remote user's login shell, or a
    sequence of strings, which is quoted with :func:`shlex.join` first (use
    this for anything built from data).  A non-zero exit status is a normal
    :class:`CommandResult`; ``check=True`` turns it into
    :class:`SSHCommandFailed`.  stdout and stderr are decoded with
    ``encoding`` (UTF-8 by default; undecodable bytes become U+FFFD).  stdin
    is always closed after ``stdin`` (or nothing) was sent, so a command that
    reads its input never waits for more.  ``env`` is exported inline in front
    of the command (most sshd refuse ``SendEnv``), so it is visible in the
    remote process list: pass secrets on ``stdin`` instead.  Commands run on
    a session channel of the Fabric connection's transport rather than via
    ``Connection.run()``, which can neither stop the remote command on a
    timeout nor be cancelled.

Timeouts
    ``connect_timeout`` bounds each phase of connecting (TCP connect, SSH
    banner, key exchange, authentication).  ``command_timeout`` (or a call's
    ``timeout``) bounds a whole command and each SFTP request; when it runs
    out the command is stopped -- a ``TERM`` signal request is sent (honoured
    by OpenSSH) and the channel is closed -- and :class:`SSHTimeout` is raised.
    A remote command killed by a signal reports ``exit_status == -1``.

Errors
    Every network, server or SSH failure raises an
    :class:`~operone_zmq.errors.SSHError` subclass; the Paramiko/socket
    exception that caused it is chained as ``__cause__``.  Invalid arguments
    raise :class:`ValueError`/:class:`TypeError`, and local file errors of
    :meth:`SSHClient.put`/:meth:`SSHClient.get` are plain :class:`OSError`.

Threads and asyncio
    One client may be shared by threads: each command runs on its own SSH
    channel of the one connection (a server allows only so many at once:
    OpenSSH's ``MaxSessions`` defaults to 10).  The ``a*`` coroutines run the blocking
    calls in a worker thread (``asyncio.to_thread``, or the ``executor`` given
    to the client); cancelling :meth:`SSHClient.aexecute` stops the remote
    command like a timeout does.

The package, by concern (the names above are imported from here)::

    errors.py    the SSHError subclasses and CommandResult
    hostkeys.py  known_hosts: lenient loading, the check, append-only trust on first use
    channel.py   one command on a session channel: command line, stdin/out pump, stop
    client.py    SSHClient: connect and authenticate, execute, SFTP, the a* coroutines

The adapter that runs mesh jobs on legacy hosts with this client is
:mod:`operone_zmq.aio.legacy`.
"""

from __future__ import annotations

from operone_zmq.errors import SSHError

from .client import SSHClient
from .errors import (
    CommandResult,
    SSHAuthenticationFailed,
    SSHCommandFailed,
    SSHConnectionRefused,
    SSHFileError,
    SSHHostKeyUnknown,
    SSHTimeout,
)
from .hostkeys import host_key_fingerprint

__all__ = [
    "CommandResult",
    "SSHAuthenticationFailed",
    "SSHClient",
    "SSHCommandFailed",
    "SSHConnectionRefused",
    "SSHError",
    "SSHFileError",
    "SSHHostKeyUnknown",
    "SSHTimeout",
    "host_key_fingerprint",
]
