"""The SSH client: :class:`SSHClient` over :class:`fabric.Connection`.

Connecting and authenticating (with precise errors), commands on session
channels (``channel.py``), SFTP transfers, and the ``a*`` coroutines that
run all of it in a worker thread.  What it promises is written in the
package docstring (``operone_zmq/ssh/__init__.py``).
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import getpass
import math
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO, TypeVar, cast

import fabric
import paramiko
from paramiko.ssh_exception import NoValidConnectionsError

from operone_zmq.errors import SSHError

from .channel import StopCommand, build_command, pump, send_signal
from .errors import (
    CommandResult,
    SSHAuthenticationFailed,
    SSHCommandFailed,
    SSHConnectionRefused,
    SSHFileError,
    SSHHostKeyUnknown,
    SSHTimeout,
    clip,
)
from .hostkeys import HostKeyPolicy, UnknownHostKey, host_key_fingerprint, load_known_hosts

_T = TypeVar("_T")


#: Private key types tried, in order, for ``private_key_path``.
_KEY_CLASSES: tuple[type[paramiko.PKey], ...] = (
    paramiko.Ed25519Key,
    paramiko.ECDSAKey,
    paramiko.RSAKey,
)


def _check_timeout(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds or None")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


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


class SSHClient:
    """One SSH connection to a legacy host; see the docstring of :mod:`operone_zmq.ssh`.

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
            load_known_hosts(self.known_hosts, client.get_host_keys())
            client.set_missing_host_key_policy(
                HostKeyPolicy(self.known_hosts, self.accept_unknown_host)
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


    def _host_id(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def _connect_error(self, exc: Exception, elapsed: float, in_auth: bool) -> SSHError | None:
        where = f"{self.host}:{self.port}"
        if isinstance(exc, UnknownHostKey):
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
        line = build_command(command, env)
        shown = clip(build_command(command, None))  # messages leave env values out
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
            out, err, status = pump(chan, data, deadline, cancel)
        except StopCommand as stop:
            send_signal(chan, "TERM")
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
            raise SSHCommandFailed(build_command(command, None), result, self.target)
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
