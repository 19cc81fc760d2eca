"""One remote command on an SSH session channel.

:func:`build_command` makes the command line (an argv quoted with
:func:`shlex.join`, ``env`` exported inline); :func:`pump` feeds its stdin
and collects stdout, stderr and the exit status, or raises
:class:`StopCommand` at the deadline or on cancel, after which the caller
sends :func:`send_signal` ``TERM`` and closes the channel.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import shlex
import threading
import time
from collections.abc import Mapping, Sequence

import paramiko
from paramiko.common import cMSG_CHANNEL_REQUEST

#: Bytes read from / written to a channel per call.
_CHUNK = 32 * 1024


#: Longest sleep of the command loop without news from the channel, seconds:
#: bounds how late a cancel is noticed.
_POLL = 0.2


#: Sleep between attempts to send stdin while the peer's window is full.
_SEND_POLL = 0.02


_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def build_command(command: str | Sequence[str], env: Mapping[str, str] | None) -> str:
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


def send_signal(chan: paramiko.Channel, signame: str) -> None:
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


class StopCommand(Exception):
    """Internal: the command loop ran past its deadline or was cancelled."""

    def __init__(self, out: bytes, err: bytes, *, cancelled: bool) -> None:
        super().__init__("stopped")
        self.out = out
        self.err = err
        self.cancelled = cancelled


def send_eof(chan: paramiko.Channel) -> None:
    """Tell the command its stdin is done: ``Channel.shutdown_write`` without
    its race.  paramiko builds the EOF under the channel's lock but sends it
    after releasing it, while its transport thread, handling the server's
    CLOSE of a command that already finished, sends CLOSE the same way: the
    EOF can then follow the CLOSE, and OpenSSH drops the whole connection
    ("ieof packet referred to nonexistent channel"), failing every other
    command on it (seen about once in 90 runs of 8 threads sharing one
    client).  Holding the lock until the EOF is sent puts it before any
    CLOSE; after a CLOSE none is sent."""
    lock = getattr(chan, "lock", None)
    make = getattr(chan, "_send_eof", None)
    send = getattr(chan.transport, "_send_user_message", None)
    if lock is None or make is None or send is None:  # another paramiko
        chan.shutdown_write()
        return
    with lock:
        if chan.closed:
            return
        m = make()
        if m is not None:
            send(m)


def pump(
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
        send_eof(chan)
    while True:
        if pending and not chan.closed and chan.send_ready():
            try:
                sent = chan.send(bytes(pending[:_CHUNK]))
            except OSError:  # the command is gone and will not read the rest
                sent = len(pending)
            pending = pending[sent:]
            if not pending:
                with contextlib.suppress(OSError):
                    send_eof(chan)
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
            raise StopCommand(bytes(out), bytes(err), cancelled=True)
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise StopCommand(bytes(out), bytes(err), cancelled=False)
        wait = _POLL if deadline is None else min(_POLL, deadline - now)
        if pending:
            wait = min(wait, _SEND_POLL)
        if finished_output:
            # The pipe stays readable after EOF; wait for the exit status instead.
            chan.status_event.wait(wait)
        else:
            selector.select(wait)
