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
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import errno
import getpass
import hashlib
import math
import os
import re
import selectors
import shlex
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO, TypeVar, cast

import fabric
import paramiko
import structlog
from paramiko.common import cMSG_CHANNEL_REQUEST
from paramiko.hostkeys import HostKeyEntry
from paramiko.ssh_exception import NoValidConnectionsError

from operone_zmq.errors import SSHError

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

_T = TypeVar("_T")
_log = structlog.get_logger(__name__)

#: Bytes read from / written to a channel per call.
_CHUNK = 32 * 1024
#: Longest sleep of the command loop without news from the channel, seconds:
#: bounds how late a cancel is noticed.
_POLL = 0.2
#: Sleep between attempts to send stdin while the peer's window is full.
_SEND_POLL = 0.02
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Private key types tried, in order, for ``private_key_path``.
_KEY_CLASSES: tuple[type[paramiko.PKey], ...] = (
    paramiko.Ed25519Key,
    paramiko.ECDSAKey,
    paramiko.RSAKey,
)
#: Serialises appends to known_hosts files made by this process.
_KNOWN_HOSTS_LOCK = threading.Lock()


# ------------------------------------------------------------------- errors
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
        message = f"command {_clip(command)!r}{where} exited with status {result.exit_status}"
        last = result.stderr.strip().splitlines()
        if last:
            message += f": {_clip(last[-1])}"
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


# ------------------------------------------------------------------ helpers
def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def host_key_fingerprint(key: paramiko.PKey) -> str:
    """The OpenSSH ``SHA256:...`` fingerprint of a public key (as ``ssh-keygen -l``)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def _check_timeout(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds or None")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


def _build_command(command: str | Sequence[str], env: Mapping[str, str] | None) -> str:
    if isinstance(command, str):
        line = command
    else:
        parts = list(command)
        for i, part in enumerate(parts):
            if not isinstance(part, str):
                raise TypeError(f"command[{i}] must be a string, not {type(part).__name__}")
        line = shlex.join(parts)
    if not line.strip():
        raise ValueError("the command must not be empty")
    if env:
        assignments = []
        for name, value in sorted(env.items()):
            if not isinstance(name, str) or not _ENV_NAME_RE.fullmatch(name):
                raise ValueError(f"invalid environment variable name {name!r}")
            if not isinstance(value, str):
                raise TypeError(f"the value of environment variable {name} must be a string")
            assignments.append(f"{name}={shlex.quote(value)}")
        line = f"export {' '.join(assignments)}; {line}"
    if "\0" in line:
        raise ValueError("the command or its environment contains a NUL character")
    return line


def _send_signal(chan: paramiko.Channel, signame: str) -> None:
    """Best effort: ask the server to signal the command (RFC 4254 6.9).

    Paramiko has no public call for this request, so it is built by hand.
    As in Paramiko's own ``Channel._send``, the message is queued while
    holding the channel lock after checking that the channel is open: the
    request then always reaches the server before our close, and never names
    a channel the server already freed (OpenSSH drops the whole connection
    for that).  A server that does not support the request ignores it.
    """
    transport = chan.get_transport()
    send = getattr(transport, "_send_user_message", None)
    if send is None:
        return
    msg = paramiko.Message()
    msg.add_byte(cMSG_CHANNEL_REQUEST)
    msg.add_int(chan.remote_chanid)
    msg.add_string("signal")
    msg.add_boolean(False)
    msg.add_string(signame)
    with chan.lock:
        if chan.closed or not transport.is_active():
            return
        try:
            send(msg)
        except (OSError, EOFError, paramiko.SSHException):
            pass  # the channel is being abandoned anyway


class _StopCommand(Exception):
    """Internal: the command loop ran past its deadline or was cancelled."""

    def __init__(self, out: bytes, err: bytes, *, cancelled: bool) -> None:
        super().__init__("stopped")
        self.out = out
        self.err = err
        self.cancelled = cancelled


class _LocalFileFailed(Exception):
    """Internal: a local read/write failed during an SFTP transfer (so that
    the local OSError is not mistaken for a remote one)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class _LocalFile:
    """The local side of a transfer, as Paramiko's putfo/getfo use it."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh

    def read(self, size: int = -1) -> bytes:
        try:
            return self._fh.read(size)
        except OSError as exc:
            raise _LocalFileFailed(exc) from exc

    def write(self, data: bytes) -> int:
        try:
            return self._fh.write(data)
        except OSError as exc:
            raise _LocalFileFailed(exc) from exc


class _UnknownHostKey(paramiko.SSHException):
    """Internal: raised by our host key policy, translated in connect()."""

    def __init__(self, host_id: str, key: paramiko.PKey) -> None:
        super().__init__(f"server {host_id!r} not found in known_hosts")
        self.host_id = host_id
        self.key = key


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Reject unknown hosts, or (``accept``) trust on first use and append the
    key to ``known_hosts`` -- never rewrite the file as Paramiko's
    ``AutoAddPolicy`` does (it would drop comments and markers)."""

    def __init__(self, known_hosts: Path, accept: bool) -> None:
        self._known_hosts = known_hosts
        self._accept = accept

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        if not self._accept:
            raise _UnknownHostKey(hostname, key)
        _append_known_host(self._known_hosts, hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)
        _log.warning(
            "ssh_host_key_accepted",
            host=hostname,
            key_type=key.get_name(),
            fingerprint=host_key_fingerprint(key),
            known_hosts=str(self._known_hosts),
        )


def _append_known_host(path: Path, host_id: str, key: paramiko.PKey) -> None:
    line = f"{host_id} {key.get_name()} {key.get_base64()}\n"
    with _KNOWN_HOSTS_LOCK:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "r+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    line = "\n" + line
            fh.write(line.encode("ascii"))


# ------------------------------------------------------------------- client
class SSHClient:
    """One SSH connection to a legacy host; see the module docstring.

    Nothing happens on the network until :meth:`connect` (or the first
    command or file transfer, which connect on demand).
    """

    def __init__(
        self,
        host: str,
        port: int = 22,
        username: str | None = None,
        private_key_path: str | os.PathLike[str] | None = None,
        password: str | None = None,
        *,
        known_hosts: str | os.PathLike[str] | None = None,
        accept_unknown_host: bool = False,
        connect_timeout: float = 10.0,
        command_timeout: float | None = 60.0,
        passphrase: str | None = None,
        encoding: str = "utf-8",
        executor: Executor | None = None,
    ) -> None:
        if not host:
            raise ValueError("host must not be empty")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"port must be an integer in 1..65535, not {port!r}")
        connect_limit = _check_timeout("connect_timeout", connect_timeout)
        if connect_limit is None:
            raise ValueError("connect_timeout must not be None")
        codecs.lookup(encoding)  # LookupError now rather than after the first command
        self.host = host
        self.port = port
        self.username = username or getpass.getuser()
        self.private_key_path = (
            Path(private_key_path).expanduser() if private_key_path is not None else None
        )
        self.known_hosts = (
            Path(known_hosts) if known_hosts is not None else Path("~/.ssh/known_hosts")
        ).expanduser()
        self.accept_unknown_host = accept_unknown_host
        self.connect_timeout: float = connect_limit
        self.command_timeout = _check_timeout("command_timeout", command_timeout)
        self.encoding = encoding
        self._password = password
        self._passphrase = passphrase
        self._executor = executor
        self._lock = threading.RLock()
        self._conn: Any = None  # fabric.Connection (untyped)
        self._sftp: paramiko.SFTPClient | None = None

    # ---------------------------------------------------------- properties
    @property
    def target(self) -> str:
        """``user@host:port``, as used in error messages."""
        return f"{self.username}@{self.host}:{self.port}"

    @property
    def is_connected(self) -> bool:
        conn = self._conn
        return conn is not None and bool(conn.is_connected)

    def __repr__(self) -> str:
        state = "connected" if self.is_connected else "disconnected"
        return f"<SSHClient {self.target} {state}>"

    # ---------------------------------------------------------- connection
    def connect(self) -> None:
        """Open and authenticate the connection; does nothing when already
        connected (a dropped connection is opened again)."""
        with self._lock:
            if self.is_connected:
                return
            self._close_locked()
            connect_kwargs = self._auth_kwargs()
            connect_kwargs.update(
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                channel_timeout=self.connect_timeout,
            )
            # An explicit (empty) SSHConfig and lazy=True: no ~/.ssh/config,
            # no /etc/fabric.yml -- only what this client was given.
            config = fabric.Config(ssh_config=paramiko.SSHConfig(), lazy=True)
            conn = fabric.Connection(
                self.host,
                user=self.username,
                port=self.port,
                config=config,
                gateway=False,
                forward_agent=False,
                connect_kwargs=connect_kwargs,
            )
            client: paramiko.SSHClient = conn.client
            self._load_known_hosts(client)
            client.set_missing_host_key_policy(
                _HostKeyPolicy(self.known_hosts, self.accept_unknown_host)
            )
            started = time.monotonic()
            try:
                conn.open()
            except BaseException as exc:
                if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit, ...
                    with contextlib.suppress(Exception):
                        client.close()
                    raise
                in_auth = _handshake_done(client)
                with contextlib.suppress(Exception):
                    client.close()
                error = self._connect_error(exc, time.monotonic() - started, in_auth)
                if error is None:
                    raise
                raise error from exc
            self._conn = conn

    def disconnect(self) -> None:
        """Close the SFTP session and the connection.  Safe to call at any
        time, any number of times."""
        with self._lock:
            self._close_locked()

    close = disconnect

    def __enter__(self) -> SSHClient:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.disconnect()

    def _close_locked(self) -> None:
        sftp, self._sftp = self._sftp, None
        conn, self._conn = self._conn, None
        if sftp is not None:
            with contextlib.suppress(Exception):
                sftp.close()
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
            with contextlib.suppress(Exception):
                conn.client.close()  # conn.close() skips a half-open client

    def _auth_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        explicit = self.private_key_path is not None or self._password is not None
        kwargs["allow_agent"] = not explicit
        kwargs["look_for_keys"] = not explicit
        if self.private_key_path is not None:
            kwargs["pkey"] = self._load_private_key(self.private_key_path)
        if self._password is not None:
            kwargs["password"] = self._password
        if not explicit and self._passphrase is not None:
            kwargs["passphrase"] = self._passphrase
        return kwargs

    def _auth_methods(self) -> str:
        methods = []
        if self.private_key_path is not None:
            methods.append("publickey")
        if self._password is not None:
            methods.append("password")
        return ", ".join(methods) or "agent, default keys"

    def _load_private_key(self, path: Path) -> paramiko.PKey:
        """Load ``path`` (Ed25519, ECDSA or RSA, OpenSSH or PEM format) and
        its ``-cert.pub`` certificate if there is one, as Paramiko's own
        ``key_filename`` handling does, but with precise errors."""
        prefix = f"authentication failed for {self.target} (publickey)"
        failures: list[Exception] = []
        for key_class in _KEY_CLASSES:
            try:
                key: paramiko.PKey = key_class.from_private_key_file(str(path), self._passphrase)
            except paramiko.PasswordRequiredException as exc:
                raise SSHAuthenticationFailed(
                    f"{prefix}: private key {path} is encrypted; pass passphrase="
                ) from exc
            except OSError as exc:
                raise SSHAuthenticationFailed(
                    f"{prefix}: cannot read private key {path}: {exc.strerror or exc}"
                ) from exc
            except (paramiko.SSHException, ValueError, TypeError) as exc:
                failures.append(exc)
                continue
            cert = Path(f"{path}-cert.pub")
            if cert.is_file():
                try:
                    key.load_certificate(str(cert))
                except (OSError, ValueError, paramiko.SSHException) as exc:
                    raise SSHAuthenticationFailed(
                        f"{prefix}: cannot load certificate {cert}: {exc}"
                    ) from exc
            return key
        raise SSHAuthenticationFailed(
            f"{prefix}: cannot load private key {path} (wrong passphrase, or not an "
            "Ed25519, ECDSA or RSA private key)"
        ) from failures[0]

    def _load_known_hosts(self, client: paramiko.SSHClient) -> None:
        """Load ``known_hosts`` line by line, skipping what Paramiko cannot use
        (malformed lines, unsupported key types, ``@cert-authority`` and
        ``@revoked`` markers) instead of failing on it as ``HostKeys.load`` can."""
        try:
            text = self.known_hosts.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return  # every host is unknown
        except OSError as exc:
            raise SSHError(
                f"cannot read known_hosts file {self.known_hosts}: {exc.strerror or exc}"
            ) from exc
        keys = client.get_host_keys()
        skipped = 0
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("@"):
                skipped += 1
                continue
            try:
                entry = HostKeyEntry.from_line(line, lineno)
            except Exception:  # InvalidHostKey, bad key data, ...
                entry = None
            if entry is None or entry.key is None:
                skipped += 1
                continue
            for name in entry.hostnames:
                keys.add(name, entry.key.get_name(), entry.key)
        if skipped:
            _log.debug("known_hosts_lines_skipped", path=str(self.known_hosts), count=skipped)

    def _host_id(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def _connect_error(self, exc: Exception, elapsed: float, in_auth: bool) -> SSHError | None:
        where = f"{self.host}:{self.port}"
        if isinstance(exc, _UnknownHostKey):
            fp = host_key_fingerprint(exc.key)
            keyscan = f"ssh-keyscan -p {self.port} {self.host}"
            return SSHHostKeyUnknown(
                f"host key of {exc.host_id} ({exc.key.get_name()} {fp}) is not in "
                f"{self.known_hosts}; check the fingerprint with the host's "
                f"administrator, then add it (`{keyscan} >> {self.known_hosts}`) or "
                f"connect once with accept_unknown_host=True to record it",
                host_id=exc.host_id,
                key_type=exc.key.get_name(),
                fingerprint=fp,
                known_hosts=self.known_hosts,
            )
        if isinstance(exc, paramiko.BadHostKeyException):
            got: paramiko.PKey = exc.key
            fp = host_key_fingerprint(got)
            host_id = self._host_id()
            return SSHHostKeyUnknown(
                f"HOST KEY CHANGED for {host_id}: it offers {got.get_name()} {fp}, which "
                f"does not match {self.known_hosts}; refusing to connect (someone may be "
                f"intercepting the connection).  If the host was really re-keyed, remove "
                f"the old entry (`ssh-keygen -R '{host_id}' -f {self.known_hosts}`)",
                host_id=host_id,
                key_type=got.get_name(),
                fingerprint=fp,
                known_hosts=self.known_hosts,
                changed=True,
            )
        if isinstance(exc, NoValidConnectionsError):
            return SSHConnectionRefused(
                f"cannot connect to {where}: connection refused or host unreachable"
            )
        if isinstance(exc, TimeoutError):
            return SSHTimeout(
                f"cannot connect to {where}: no answer within {self.connect_timeout}s"
            )
        if isinstance(exc, socket.gaierror):
            return SSHConnectionRefused(f"cannot connect to {where}: cannot resolve host: {exc}")
        timed_out = "timeout" in str(exc).lower() or "timed out" in str(exc).lower()
        if isinstance(exc, paramiko.AuthenticationException):
            if timed_out:
                return SSHTimeout(
                    f"authentication for {self.target} did not finish within "
                    f"{self.connect_timeout}s"
                )
            return SSHAuthenticationFailed(
                f"authentication failed for {self.target} ({self._auth_methods()})"
            )
        if isinstance(exc, paramiko.SSHException | EOFError):
            if timed_out or elapsed >= self.connect_timeout:
                return SSHTimeout(
                    f"SSH handshake with {where} did not finish within {self.connect_timeout}s"
                )
            if in_auth:
                return SSHAuthenticationFailed(
                    f"authentication failed for {self.target} ({self._auth_methods()}): {exc}"
                )
            return SSHError(f"SSH handshake with {where} failed: {exc or type(exc).__name__}")
        if isinstance(exc, OSError):
            return SSHConnectionRefused(f"cannot connect to {where}: {exc.strerror or exc}")
        return None

    def _connection(self) -> Any:
        """The open fabric.Connection, connecting first if needed."""
        with self._lock:
            self.connect()
            return self._conn

    # ------------------------------------------------------------ commands
    def execute(
        self,
        command: str | Sequence[str],
        *,
        timeout: float | None = None,
        check: bool = False,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run ``command`` and wait for it.

        ``timeout`` (seconds) defaults to the client's ``command_timeout``.
        A non-zero exit status is returned, not raised, unless ``check``.

        :raises SSHTimeout: the command ran out of time and was stopped.
        :raises SSHCommandFailed: ``check`` and the exit status was not 0.
        :raises SSHError: the connection failed (see :meth:`connect`).
        """
        return self._execute(command, timeout=timeout, check=check, stdin=stdin, env=env)

    def _execute(
        self,
        command: str | Sequence[str],
        *,
        timeout: float | None,
        check: bool,
        stdin: str | bytes | None,
        env: Mapping[str, str] | None,
        cancel: threading.Event | None = None,
    ) -> CommandResult:
        line = _build_command(command, env)
        shown = _clip(_build_command(command, None))  # messages leave env values out
        limit = _check_timeout("timeout", timeout)
        if limit is None:
            limit = self.command_timeout
        if isinstance(stdin, str):
            data = stdin.encode(self.encoding)
        elif stdin is None:
            data = b""
        else:
            data = bytes(stdin)
        conn = self._connection()
        transport: paramiko.Transport = conn.transport
        try:
            chan = transport.open_session(timeout=self.connect_timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            if "timeout" in str(exc).lower():
                raise SSHTimeout(f"{self.target} did not open a session in time") from exc
            raise SSHError(f"cannot open a session on {self.target}: {exc}") from exc
        deadline = None if limit is None else time.monotonic() + limit
        try:
            chan.exec_command(line)
            out, err, status = _pump(chan, data, deadline, cancel)
        except _StopCommand as stop:
            _send_signal(chan, "TERM")
            chan.close()
            partial = CommandResult(self._decode(stop.out), self._decode(stop.err), -1)
            if stop.cancelled:
                raise SSHError(
                    f"command {shown!r} on {self.target} was cancelled and stopped"
                ) from None
            raise SSHTimeout(
                f"command {shown!r} on {self.target} did not finish within {limit}s "
                "and was stopped",
                partial=partial,
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(f"running {shown!r} on {self.target} failed: {exc}") from exc
        finally:
            chan.close()
        if status == -1 and not transport.is_active():
            raise SSHError(f"connection to {self.target} lost while running {shown!r}")
        result = CommandResult(self._decode(out), self._decode(err), status)
        if check and not result.ok:
            raise SSHCommandFailed(_build_command(command, None), result, self.target)
        return result

    def _decode(self, data: bytes) -> str:
        return data.decode(self.encoding, errors="replace")

    # ---------------------------------------------------------------- SFTP
    def _sftp_client(self) -> paramiko.SFTPClient:
        with self._lock:
            conn = self._connection()
            sftp = self._sftp
            chan = sftp.get_channel() if sftp is not None else None
            if sftp is None or chan is None or chan.closed:
                client: paramiko.SSHClient = conn.client
                try:
                    sftp = client.open_sftp()
                except (paramiko.SSHException, OSError, EOFError) as exc:
                    raise SSHError(f"cannot start SFTP on {self.target}: {exc}") from exc
                chan = sftp.get_channel()
                if chan is not None:
                    chan.settimeout(self.command_timeout)
                self._sftp = sftp
            return sftp

    def _drop_sftp(self, sftp: paramiko.SFTPClient | None) -> None:
        with self._lock:
            if sftp is not None and self._sftp is sftp:
                self._sftp = None
        if sftp is not None:
            with contextlib.suppress(Exception):
                sftp.close()

    @contextlib.contextmanager
    def _sftp_request(self, op: str, path: str) -> Iterator[paramiko.SFTPClient]:
        sftp = self._sftp_client()
        try:
            yield sftp
        except TimeoutError as exc:
            self._drop_sftp(sftp)  # a late answer would confuse the next request
            raise SSHTimeout(
                f"SFTP {op} {path!r} on {self.target} got no answer within {self.command_timeout}s"
            ) from exc
        except OSError as exc:  # Paramiko's IOError(errno, text) for SFTP status codes
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise SSHFileError(
                f"SFTP {op} {path!r} on {self.target} failed: {reason}",
                path=path,
                errno=exc.errno,
            ) from exc
        except (paramiko.SSHException, EOFError) as exc:
            self._drop_sftp(sftp)
            raise SSHError(f"SFTP {op} {path!r} on {self.target} failed: {exc}") from exc

    def put(
        self, local: str | os.PathLike[str], remote: str, *, preserve_mode: bool = True
    ) -> None:
        """Upload the local file ``local`` to the remote file ``remote``
        (replaced if it exists; relative paths start in the login directory).
        ``preserve_mode`` copies the local permission bits."""
        with open(local, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode & 0o7777
            source = _LocalFile(fh)
            try:
                with self._sftp_request("put", remote) as sftp:
                    sftp.putfo(cast("IO[bytes]", source), remote, confirm=True)
                    if preserve_mode:
                        sftp.chmod(remote, mode)
            except _LocalFileFailed as exc:
                raise exc.error from None

    def get(self, remote: str, local: str | os.PathLike[str]) -> None:
        """Download the remote file ``remote`` to the local file ``local``,
        with the remote file's permission bits.

        The data goes to a temporary file next to ``local`` that is renamed
        over it at the end, so a failed download leaves ``local`` untouched.
        """
        target = Path(local)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                sink = _LocalFile(fh)
                try:
                    with self._sftp_request("get", remote) as sftp:
                        mode = sftp.stat(remote).st_mode
                        sftp.getfo(remote, cast("IO[bytes]", sink))
                except _LocalFileFailed as exc:
                    raise exc.error from None
            if mode is not None:
                os.chmod(tmp_name, mode & 0o7777)
            os.replace(tmp_name, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise

    def read_file(self, remote: str, *, max_bytes: int | None = None) -> bytes:
        """The contents of the remote file ``remote``.

        :raises SSHFileError: it cannot be read, or (``errno`` EFBIG) it is
            larger than ``max_bytes``.
        """
        with self._sftp_request("read", remote) as sftp, sftp.open(remote, "rb") as fh:
            size = fh.stat().st_size
            if max_bytes is not None and size is not None and size > max_bytes:
                raise OSError(errno.EFBIG, f"file is {size} bytes, more than {max_bytes}")
            fh.prefetch(size)
            data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
            if max_bytes is not None and len(data) > max_bytes:
                raise OSError(errno.EFBIG, f"file is larger than {max_bytes} bytes")
            return data

    def write_file(self, remote: str, data: bytes | str, *, mode: int | None = None) -> None:
        """Create or replace the remote file ``remote`` with ``data`` (a ``str``
        is encoded with the client's ``encoding``); ``mode`` sets its permissions."""
        payload = data.encode(self.encoding) if isinstance(data, str) else bytes(data)
        with self._sftp_request("write", remote) as sftp:
            with sftp.open(remote, "wb") as fh:
                fh.set_pipelined(True)
                fh.write(payload)
            if mode is not None:
                sftp.chmod(remote, mode)

    # --------------------------------------------------------------- async
    async def _in_thread(self, fn: Callable[[], _T]) -> _T:
        import asyncio

        if self._executor is None:
            return await asyncio.to_thread(fn)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def aconnect(self) -> None:
        """:meth:`connect` in a worker thread."""
        await self._in_thread(self.connect)

    async def adisconnect(self) -> None:
        """:meth:`disconnect` in a worker thread."""
        await self._in_thread(self.disconnect)

    async def aexecute(
        self,
        command: str | Sequence[str],
        *,
        # The remote command's own limit (it is stopped when it runs out), not
        # an asyncio deadline: wrapping the call in asyncio.timeout() also works.
        timeout: float | None = None,
        check: bool = False,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """:meth:`execute` in a worker thread.  Cancelling the awaiting task
        stops the remote command (within ~0.2 s) as a timeout would."""
        import asyncio

        cancel = threading.Event()

        def run() -> CommandResult:
            return self._execute(
                command, timeout=timeout, check=check, stdin=stdin, env=env, cancel=cancel
            )

        try:
            return await self._in_thread(run)
        except asyncio.CancelledError:
            cancel.set()
            raise

    async def aput(
        self, local: str | os.PathLike[str], remote: str, *, preserve_mode: bool = True
    ) -> None:
        """:meth:`put` in a worker thread."""
        await self._in_thread(lambda: self.put(local, remote, preserve_mode=preserve_mode))

    async def aget(self, remote: str, local: str | os.PathLike[str]) -> None:
        """:meth:`get` in a worker thread."""
        await self._in_thread(lambda: self.get(remote, local))

    async def aread_file(self, remote: str, *, max_bytes: int | None = None) -> bytes:
        """:meth:`read_file` in a worker thread."""
        return await self._in_thread(lambda: self.read_file(remote, max_bytes=max_bytes))

    async def awrite_file(self, remote: str, data: bytes | str, *, mode: int | None = None) -> None:
        """:meth:`write_file` in a worker thread."""
        await self._in_thread(lambda: self.write_file(remote, data, mode=mode))

    async def __aenter__(self) -> SSHClient:
        await self.aconnect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.adisconnect()


def _handshake_done(client: paramiko.SSHClient) -> bool:
    """True when key exchange (and so the host key check) had completed:
    a failure after that point happened while authenticating."""
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        return False
    try:
        transport.get_remote_server_key()
    except paramiko.SSHException:
        return False
    return True


def _pump(
    chan: paramiko.Channel,
    data: bytes,
    deadline: float | None,
    cancel: threading.Event | None,
) -> tuple[bytes, bytes, int]:
    """Feed ``data`` to the command, collect its output until it has exited
    and closed its output, and return ``(stdout, stderr, exit_status)``."""
    with selectors.DefaultSelector() as selector:
        # Channel.fileno() is a pipe that is readable while stdout or stderr
        # has data, and for good after EOF.  (A selector, not select.select:
        # a broker may well have more than 1024 descriptors open.)
        selector.register(chan, selectors.EVENT_READ)
        return _pump_loop(chan, selector, data, deadline, cancel)


def _pump_loop(
    chan: paramiko.Channel,
    selector: selectors.BaseSelector,
    data: bytes,
    deadline: float | None,
    cancel: threading.Event | None,
) -> tuple[bytes, bytes, int]:
    out = bytearray()
    err = bytearray()
    pending = memoryview(data)
    if not pending:
        chan.shutdown_write()
    while True:
        if pending and not chan.closed and chan.send_ready():
            try:
                sent = chan.send(bytes(pending[:_CHUNK]))
            except OSError:  # the command is gone and will not read the rest
                sent = len(pending)
            pending = pending[sent:]
            if not pending:
                with contextlib.suppress(OSError):
                    chan.shutdown_write()
        while chan.recv_ready():
            out += chan.recv(_CHUNK)
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(_CHUNK)
        finished_output = bool(chan.eof_received) or chan.closed
        if finished_output and chan.exit_status_ready():
            while chan.recv_ready():
                out += chan.recv(_CHUNK)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(_CHUNK)
            return bytes(out), bytes(err), chan.recv_exit_status()
        if cancel is not None and cancel.is_set():
            raise _StopCommand(bytes(out), bytes(err), cancelled=True)
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise _StopCommand(bytes(out), bytes(err), cancelled=False)
        wait = _POLL if deadline is None else min(_POLL, deadline - now)
        if pending:
            wait = min(wait, _SEND_POLL)
        if finished_output:
            # The pipe stays readable after EOF; wait for the exit status instead.
            chan.status_event.wait(wait)
        else:
            selector.select(wait)
