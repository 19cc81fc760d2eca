"""A real, throwaway OpenSSH server for the SSH client tests.

The session-scoped :func:`sshd` fixture

1. finds ``sshd`` (``/usr/sbin/sshd``) and ``ssh-keygen``, or skips;
2. makes a private directory with an ed25519 host key, a second ("other")
   host key for the changed-key test, an unencrypted and a passphrase-protected
   ed25519 user key, ``authorized_keys`` and a ``known_hosts`` that lists the
   host key as ``[127.0.0.1]:PORT``;
3. as root, creates the account ``operone-sshtest`` (home directory, ``/bin/sh``,
   a random password set with ``chpasswd``) used for both key and password
   logins; not as root, key logins use the current user and password tests
   are skipped;
4. writes an ``sshd_config`` (127.0.0.1, a free port, ``UsePAM no``,
   ``StrictModes no``, internal SFTP, ...) and checks it with ``sshd -t``;
5. runs ``sshd -D -e -f CONFIG`` (log in ``sshd.log``) and waits, at most
   :data:`START_TIMEOUT` seconds, until the port answers with an SSH banner;
6. at the end terminates sshd (kills it after :data:`STOP_TIMEOUT` s), deletes
   the account and the directory.

Nothing here waits without a timeout.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from operone_zmq.ssh import SSHClient

#: Seconds to wait for sshd to answer on its port / to exit when stopped.
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
#: Seconds any helper program (ssh-keygen, useradd, ...) may take.
TOOL_TIMEOUT = 20.0
#: One account per pytest-xdist worker (if any), so that parallel sessions do
#: not share it; a fixed name lets a later run remove a crashed run's account.
TEST_USER = "operone-sshtest" + (
    f"-{os.environ['PYTEST_XDIST_WORKER']}" if os.environ.get("PYTEST_XDIST_WORKER") else ""
)
_SBIN = os.pathsep.join(["/usr/sbin", "/usr/local/sbin", "/sbin", os.environ.get("PATH", "")])
_NOT_INSTALLED = "openssh-server not installed; .ci/run installs it"


@dataclass(frozen=True)
class SSHServer:
    """How to reach the test sshd."""

    host: str
    port: int
    #: Account for key logins (and password logins when ``password`` is set).
    user: str
    #: Unencrypted ed25519 private key accepted for ``user``.
    key_path: Path
    #: Passphrase-protected ed25519 private key accepted for ``user``.
    encrypted_key_path: Path
    key_passphrase: str
    #: Private key that is *not* in authorized_keys.
    stranger_key_path: Path
    #: known_hosts with the server's host key (copy it before changing it).
    known_hosts: Path
    host_key_pub: Path
    #: Another ed25519 public key, for the "host key changed" test.
    other_host_key_pub: Path
    #: Password of ``user`` (None: password logins cannot be tested here).
    password: str | None
    password_skip_reason: str
    #: A directory ``user`` may write to, for SFTP tests.
    remote_dir: str
    log_path: Path

    @property
    def host_id(self) -> str:
        return f"[{self.host}]:{self.port}"


def _run(argv: list[str], *, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        input=input_text,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
        check=False,
    )


def _must(argv: list[str], *, input_text: str | None = None) -> None:
    proc = _run(argv, input_text=input_text)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")


def _keygen(ssh_keygen: str, path: Path, passphrase: str = "") -> None:
    _must(
        [ssh_keygen, "-q", "-t", "ed25519", "-N", passphrase, "-C", "operone-test", "-f", str(path)]
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _openssh_version(sshd: str) -> tuple[int, int]:
    proc = _run([sshd, "-V"])  # prints the version on stderr (and exits 1 on old versions)
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", proc.stderr + proc.stdout)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _create_user(password: str) -> str | None:
    """Create TEST_USER with ``password``; None on success, else why not."""
    useradd = shutil.which("useradd", path=_SBIN)
    chpasswd = shutil.which("chpasswd", path=_SBIN)
    if useradd is None or chpasswd is None:
        return "useradd/chpasswd not found (shadow utils)"
    _delete_user()  # left over from an interrupted run
    proc = _run([useradd, "--create-home", "--shell", "/bin/sh", TEST_USER])
    if proc.returncode != 0:
        return f"useradd failed: {proc.stderr.strip()}"
    proc = _run([chpasswd], input_text=f"{TEST_USER}:{password}\n")
    if proc.returncode != 0:
        _delete_user()
        return f"chpasswd failed: {proc.stderr.strip()}"
    return None


def _delete_user() -> None:
    userdel = shutil.which("userdel", path=_SBIN)
    if userdel is not None:
        _run([userdel, "--force", "--remove", TEST_USER])


def _home_of(user: str) -> str:
    import pwd

    return pwd.getpwnam(user).pw_dir


def _wait_for_banner(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with status {proc.returncode}:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.settimeout(0.5)
                if sock.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not answer on port {port} within {START_TIMEOUT}s:\n{_tail(log)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


def _config(base: Path, port: int, penalties: bool) -> str:
    lines = [
        "ListenAddress 127.0.0.1",
        f"Port {port}",
        f"HostKey {base / 'ssh_host_ed25519_key'}",
        f"PidFile {base / 'sshd.pid'}",
        f"AuthorizedKeysFile {base / 'authorized_keys'}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication yes",
        "KbdInteractiveAuthentication no",
        "PermitEmptyPasswords no",
        "PermitRootLogin yes",
        # No PAM: password checks use /etc/shadow directly and no PAM session
        # modules (pam_loginuid, ...) can break logins inside containers.
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "X11Forwarding no",
        "AllowTcpForwarding no",
        "AllowAgentForwarding no",
        "MaxAuthTries 10",
        "MaxSessions 50",
        "MaxStartups 50",
        "Subsystem sftp internal-sftp",
        "LogLevel VERBOSE",
    ]
    if penalties:
        # OpenSSH >= 9.8 would lock 127.0.0.1 out after the failed-login tests.
        lines.append("PerSourcePenalties no")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def sshd() -> Iterator[SSHServer]:
    sshd_bin = shutil.which("sshd", path=_SBIN)
    if sshd_bin is None:
        pytest.skip(_NOT_INSTALLED)
    sshd_bin = os.path.abspath(sshd_bin)  # sshd re-executes itself by absolute path
    ssh_keygen = shutil.which("ssh-keygen", path=_SBIN)
    if ssh_keygen is None:
        pytest.skip("ssh-keygen not installed (openssh-client); .ci/run installs it")
    is_root = os.geteuid() == 0

    base = Path(tempfile.mkdtemp(prefix="operone-sshd-"))
    # sshd reads authorized_keys as the logged-in user: the directory must be
    # traversable and the file readable by the test account.
    base.chmod(0o755)
    password: str | None = None
    skip_reason = ""
    user_created = False
    proc: subprocess.Popen[bytes] | None = None
    try:
        _keygen(ssh_keygen, base / "ssh_host_ed25519_key")
        _keygen(ssh_keygen, base / "other_host_key")
        _keygen(ssh_keygen, base / "id_ed25519")
        passphrase = "correct horse battery"
        _keygen(ssh_keygen, base / "id_encrypted", passphrase)
        _keygen(ssh_keygen, base / "id_stranger")
        authorized = base / "authorized_keys"
        authorized.write_text(
            (base / "id_ed25519.pub").read_text() + (base / "id_encrypted.pub").read_text()
        )
        authorized.chmod(0o644)

        if is_root:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
            candidate = secrets.token_urlsafe(18)
            error = _create_user(candidate)
            if error is None:
                user_created = True
                password = candidate
                user = TEST_USER
                remote_dir = _home_of(TEST_USER)
            else:
                skip_reason = f"cannot create the password test user: {error}"
                user = "root"
                remote_dir = str(base / "remote")
        else:
            skip_reason = "password logins need a test account; run as root to create one"
            import getpass

            user = getpass.getuser()
            remote_dir = str(base / "remote")
        if not user_created:
            Path(remote_dir).mkdir(mode=0o755)

        host_pub = (base / "ssh_host_ed25519_key.pub").read_text().split()
        log = base / "sshd.log"
        penalties = _openssh_version(sshd_bin) >= (9, 8)
        for attempt in range(3):
            port = _free_port()
            cfg = base / "sshd_config"
            cfg.write_text(_config(base, port, penalties))
            check = _run([sshd_bin, "-t", "-f", str(cfg)])
            if check.returncode != 0:
                message = f"sshd -t rejected the test config: {check.stderr.strip()}"
                if is_root:
                    pytest.fail(message)
                pytest.skip(f"cannot run sshd as a normal user here ({message})")
            with open(log, "wb") as log_fh:
                proc = subprocess.Popen(
                    [sshd_bin, "-D", "-e", "-f", str(cfg)],
                    stdin=subprocess.DEVNULL,
                    stdout=log_fh,
                    stderr=subprocess.STDOUT,
                )
            try:
                _wait_for_banner(proc, port, log)
                break
            except RuntimeError as exc:
                _stop(proc)
                proc = None
                if "Address already in use" in str(exc) and attempt < 2:
                    continue
                if is_root:
                    pytest.fail(str(exc))
                pytest.skip(f"cannot run sshd as a normal user here: {exc}")

        known_hosts = base / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
        yield SSHServer(
            host="127.0.0.1",
            port=port,
            user=user,
            key_path=base / "id_ed25519",
            encrypted_key_path=base / "id_encrypted",
            key_passphrase=passphrase,
            stranger_key_path=base / "id_stranger",
            known_hosts=known_hosts,
            host_key_pub=base / "ssh_host_ed25519_key.pub",
            other_host_key_pub=base / "other_host_key.pub",
            password=password,
            password_skip_reason=skip_reason,
            remote_dir=remote_dir,
            log_path=log,
        )
    finally:
        if proc is not None:
            _stop(proc)
        if user_created:
            _delete_user()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def known_hosts(sshd: SSHServer, tmp_path: Path) -> Path:
    """A private copy of the server's known_hosts."""
    path = tmp_path / "known_hosts"
    shutil.copyfile(sshd.known_hosts, path)
    return path


@pytest.fixture
def password(sshd: SSHServer) -> str:
    if sshd.password is None:
        pytest.skip(sshd.password_skip_reason)
    return sshd.password


@pytest.fixture
def ssh_client(sshd: SSHServer, known_hosts: Path) -> Iterator[SSHClient]:
    """A key-authenticated client (not yet connected; commands connect)."""
    ssh = SSHClient(
        sshd.host,
        sshd.port,
        sshd.user,
        private_key_path=sshd.key_path,
        known_hosts=known_hosts,
        connect_timeout=5.0,
        command_timeout=10.0,
    )
    try:
        yield ssh
    finally:
        ssh.disconnect()
