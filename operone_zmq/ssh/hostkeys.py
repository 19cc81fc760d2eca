"""Host keys: ``known_hosts`` read leniently, checked always, appended to only.

:func:`load_known_hosts` takes every line Paramiko can use and skips the
rest; :class:`HostKeyPolicy` refuses an unknown host (:class:`UnknownHostKey`,
which the client turns into :class:`~operone_zmq.ssh.SSHHostKeyUnknown`) or,
when told to accept it, appends one plain line for it (:func:`append_known_host`)
and never rewrites the file.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from pathlib import Path

import paramiko
import structlog
from paramiko.hostkeys import HostKeyEntry

from operone_zmq.errors import SSHError

_log = structlog.get_logger(__name__)

#: Serialises appends to known_hosts files made by this process.
_KNOWN_HOSTS_LOCK = threading.Lock()


def host_key_fingerprint(key: paramiko.PKey) -> str:
    """The OpenSSH ``SHA256:...`` fingerprint of a public key (as ``ssh-keygen -l``)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def load_known_hosts(path: Path, keys: paramiko.HostKeys) -> None:
    """Add the keys of the known_hosts file ``path`` to ``keys``, line by line,
    skipping what Paramiko cannot use
    (malformed lines, unsupported key types, ``@cert-authority`` and
    ``@revoked`` markers) instead of failing on it as ``HostKeys.load`` can."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return  # every host is unknown
    except OSError as exc:
        raise SSHError(f"cannot read known_hosts file {path}: {exc.strerror or exc}") from exc
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
        _log.debug("known_hosts_lines_skipped", path=str(path), count=skipped)


class UnknownHostKey(paramiko.SSHException):
    """Internal: raised by our host key policy, translated in connect()."""

    def __init__(self, host_id: str, key: paramiko.PKey) -> None:
        super().__init__(f"server {host_id!r} not found in known_hosts")
        self.host_id = host_id
        self.key = key


class HostKeyPolicy(paramiko.MissingHostKeyPolicy):
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
            raise UnknownHostKey(hostname, key)
        append_known_host(self._known_hosts, hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)
        _log.warning(
            "ssh_host_key_accepted",
            host=hostname,
            key_type=key.get_name(),
            fingerprint=host_key_fingerprint(key),
            known_hosts=str(self._known_hosts),
        )


def append_known_host(path: Path, host_id: str, key: paramiko.PKey) -> None:
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
