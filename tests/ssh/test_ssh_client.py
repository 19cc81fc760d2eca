"""SSHClient against a real OpenSSH server (see conftest.py)."""

from __future__ import annotations

import asyncio
import errno
import os
import pickle
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from operone_zmq.errors import OperoneError, SSHError
from operone_zmq.ssh import (
    CommandResult,
    SSHAuthenticationFailed,
    SSHClient,
    SSHCommandFailed,
    SSHConnectionRefused,
    SSHFileError,
    SSHHostKeyUnknown,
    SSHTimeout,
)

if TYPE_CHECKING:
    from conftest import SSHServer

pytestmark = pytest.mark.ssh


def _make(sshd: SSHServer, known_hosts: Path, **kwargs: object) -> SSHClient:
    options: dict[str, object] = {
        "private_key_path": sshd.key_path,
        "known_hosts": known_hosts,
        "connect_timeout": 5.0,
        "command_timeout": 10.0,
    }
    options.update(kwargs)
    return SSHClient(sshd.host, sshd.port, sshd.user, **options)  # type: ignore[arg-type]


def _processes_with_argv(*argv: str) -> list[int]:
    """Local pids whose command line is exactly ``argv`` (the sshd runs here)."""
    wanted = "\0".join(argv).encode() + b"\0"
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if fh.read() == wanted:
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


def _wait_gone(*argv: str, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _processes_with_argv(*argv):
            return True
        time.sleep(0.05)
    return False


def _wait_started(*argv: str, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _processes_with_argv(*argv):
            return True
        time.sleep(0.05)
    return False


def _remote(sshd: SSHServer, name: str) -> str:
    return f"{sshd.remote_dir}/{name}-{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------- commands
def test_key_auth_runs_a_command(ssh_client: SSHClient) -> None:
    ssh_client.connect()
    ssh_client.connect()  # idempotent
    assert ssh_client.is_connected
    result = ssh_client.execute("echo hi")
    assert result == CommandResult(stdout="hi\n", stderr="", exit_status=0)
    assert result.ok


def test_password_auth(sshd: SSHServer, known_hosts: Path, password: str) -> None:
    with SSHClient(
        sshd.host, sshd.port, sshd.user, password=password, known_hosts=known_hosts
    ) as ssh:
        assert ssh.execute("id -un").stdout.strip() == sshd.user


def test_argv_is_quoted(ssh_client: SSHClient) -> None:
    result = ssh_client.execute(["printf", "%s|", "a b", "$HOME", "it's", ""])
    assert result.stdout == "a b|$HOME|it's||"


def test_exit_status_is_a_result_not_an_error(ssh_client: SSHClient) -> None:
    result = ssh_client.execute("sh -c 'exit 3'")
    assert result.exit_status == 3
    assert not result.ok


def test_check_raises_with_the_result(ssh_client: SSHClient) -> None:
    with pytest.raises(SSHCommandFailed, match="exited with status 3: boom") as info:
        ssh_client.execute(
            ["sh", "-c", "echo boom >&2; exit 3"], check=True, env={"TOKEN": "s3cr3t"}
        )
    assert "s3cr3t" not in str(info.value)  # env values stay out of messages
    assert info.value.result.exit_status == 3
    assert info.value.result.stderr == "boom\n"
    assert isinstance(info.value, SSHError)
    assert isinstance(info.value, OperoneError)
    clone = pickle.loads(pickle.dumps(info.value))
    assert clone.result == info.value.result
    assert str(clone) == str(info.value)


def test_stdout_and_stderr_are_separate(ssh_client: SSHClient) -> None:
    result = ssh_client.execute("echo out; echo err >&2; printf 'caf\\303\\251'")
    assert result.stdout == "out\ncafé"
    assert result.stderr == "err\n"


def test_stdin_env_and_eof(ssh_client: SSHClient) -> None:
    assert ssh_client.execute("cat", stdin="hello\nworld").stdout == "hello\nworld"
    big = "x" * 300_000 + "\n"  # more than one SSH window each way
    assert ssh_client.execute("cat", stdin=big).stdout == big
    # Without stdin the command sees EOF at once instead of waiting forever.
    assert ssh_client.execute("cat", timeout=5).stdout == ""
    env = {"GREETING": "a b'c $HOME", "OTHER": ""}
    result = ssh_client.execute('printf "%s|%s" "$GREETING" "$OTHER"', env=env)
    assert result.stdout == "a b'c $HOME|"
    with pytest.raises(ValueError, match="invalid environment variable name"):
        ssh_client.execute("true", env={"BAD-NAME": "x"})
    with pytest.raises(ValueError, match="empty"):
        ssh_client.execute([])


def test_command_timeout_stops_the_remote_command(ssh_client: SSHClient) -> None:
    argv = ("sleep", "30.41")
    started = time.monotonic()
    with pytest.raises(SSHTimeout, match=r"did not finish within 1\.0s") as info:
        ssh_client.execute(["sh", "-c", "echo started; exec sleep 30.41"], timeout=1)
    assert time.monotonic() - started < 5
    assert info.value.partial is not None
    assert info.value.partial.stdout == "started\n"
    clone = pickle.loads(pickle.dumps(info.value))
    assert (str(clone), clone.partial) == (str(info.value), info.value.partial)
    assert _wait_gone(*argv), "the remote command survived its timeout"
    # The connection is still usable.
    assert ssh_client.execute("echo again").stdout == "again\n"


def test_client_wide_command_timeout(sshd: SSHServer, known_hosts: Path) -> None:
    with _make(sshd, known_hosts, command_timeout=0.5) as ssh:
        started = time.monotonic()
        with pytest.raises(SSHTimeout):
            ssh.execute("sleep 30.42")
        assert time.monotonic() - started < 5
        assert ssh.execute("echo ok", timeout=5).ok


def test_threads_share_one_client(ssh_client: SSHClient) -> None:
    """Eight threads at once on one connection, several rounds: a command's
    EOF must never follow the server's CLOSE of its channel (paramiko's
    shutdown_write race; OpenSSH then drops the connection, and every
    command on it fails)."""
    def work(i: int, results: list[str]) -> None:
        results.append(ssh_client.execute(["echo", str(i)]).stdout.strip())

    for _ in range(5):
        results: list[str] = []
        threads = [threading.Thread(target=work, args=(i, results)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert sorted(results, key=int) == [str(i) for i in range(8)]


# --------------------------------------------------------------- host keys
def _fingerprint(pub: Path) -> str:
    proc = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(pub)], capture_output=True, text=True, timeout=10, check=True
    )
    return proc.stdout.split()[1]


def test_unknown_host_key_is_refused(sshd: SSHServer, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    ssh = _make(sshd, empty)
    with pytest.raises(SSHHostKeyUnknown, match="accept_unknown_host=True") as info:
        ssh.connect()
    assert info.value.fingerprint == _fingerprint(sshd.host_key_pub)
    assert info.value.fingerprint in str(info.value)
    assert info.value.host_id == sshd.host_id
    assert not info.value.changed
    clone = pickle.loads(pickle.dumps(info.value))
    assert (str(clone), clone.fingerprint) == (str(info.value), info.value.fingerprint)
    assert empty.read_text() == ""
    assert not ssh.is_connected
    # A missing file is the same as an empty one, and is not created.
    missing = tmp_path / "nowhere" / "known_hosts"
    with pytest.raises(SSHHostKeyUnknown):
        _make(sshd, missing).connect()
    assert not missing.exists()


def test_accept_unknown_host_records_the_key(sshd: SSHServer, tmp_path: Path) -> None:
    path = tmp_path / "new" / "known_hosts"
    with _make(sshd, path, accept_unknown_host=True) as ssh:
        assert ssh.execute("echo hi").stdout == "hi\n"
    host_pub = sshd.host_key_pub.read_text().split()
    assert path.read_text() == f"{sshd.host_id} {host_pub[0]} {host_pub[1]}\n"
    assert path.stat().st_mode & 0o777 == 0o600
    # From now on the host is known, without accept_unknown_host.
    with _make(sshd, path) as ssh:
        assert ssh.execute("echo again").ok
    assert len(path.read_text().splitlines()) == 1


def test_accept_appends_without_rewriting(sshd: SSHServer, tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    original = (
        "# a comment that must survive\n"
        "@cert-authority *.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB\n"
        "broken.example.org ssh-ed25519 not-base64!"
    )
    path.write_text(original)  # no final newline
    with _make(sshd, path, accept_unknown_host=True):
        pass
    lines = path.read_text().splitlines()
    assert "\n".join(lines[:3]) == original
    assert lines[3].startswith(f"{sshd.host_id} ssh-ed25519 ")
    assert len(lines) == 4


def test_changed_host_key_is_always_refused(sshd: SSHServer, tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    other = sshd.other_host_key_pub.read_text().split()
    path.write_text(f"{sshd.host_id} {other[0]} {other[1]}\n")
    before = path.read_text()
    for accept in (False, True):
        with pytest.raises(SSHHostKeyUnknown, match="HOST KEY CHANGED") as info:
            _make(sshd, path, accept_unknown_host=accept).connect()
        assert info.value.changed
        assert info.value.fingerprint == _fingerprint(sshd.host_key_pub)
    assert path.read_text() == before


# ---------------------------------------------------------- authentication
def test_wrong_password_is_refused(sshd: SSHServer, known_hosts: Path, password: str) -> None:
    ssh = SSHClient(
        sshd.host, sshd.port, sshd.user, password=password + "x", known_hosts=known_hosts
    )
    expected = f"authentication failed for {sshd.user}@{sshd.host}:{sshd.port} (password)"
    with pytest.raises(SSHAuthenticationFailed) as info:
        ssh.connect()
    assert str(info.value) == expected
    assert password not in repr(ssh)
    assert not ssh.is_connected


def test_unknown_key_is_refused(sshd: SSHServer, known_hosts: Path) -> None:
    ssh = _make(sshd, known_hosts, private_key_path=sshd.stranger_key_path)
    with pytest.raises(SSHAuthenticationFailed, match=r"\(publickey\)$"):
        ssh.connect()


def test_encrypted_key(sshd: SSHServer, known_hosts: Path, tmp_path: Path) -> None:
    key = sshd.encrypted_key_path
    with pytest.raises(SSHAuthenticationFailed, match="is encrypted; pass passphrase="):
        _make(sshd, known_hosts, private_key_path=key).connect()
    with pytest.raises(SSHAuthenticationFailed, match="cannot load private key"):
        _make(sshd, known_hosts, private_key_path=key, passphrase="wrong").connect()
    with pytest.raises(SSHAuthenticationFailed, match="cannot read private key"):
        _make(sshd, known_hosts, private_key_path=tmp_path / "missing").connect()
    with _make(sshd, known_hosts, private_key_path=key, passphrase=sshd.key_passphrase) as ssh:
        assert ssh.execute("echo unlocked").stdout == "unlocked\n"


# -------------------------------------------------------------- connecting
def test_closed_port_is_refused(tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ssh = SSHClient("127.0.0.1", port, "nobody", password="x", known_hosts=known_hosts)
    with pytest.raises(SSHConnectionRefused, match=f"127.0.0.1:{port}"):
        ssh.connect()


def test_silent_server_times_out(tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    with socket.socket() as listener:  # accepts TCP (backlog) but never speaks SSH
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        ssh = SSHClient(
            "127.0.0.1", port, "nobody", password="x", known_hosts=known_hosts, connect_timeout=0.5
        )
        started = time.monotonic()
        with pytest.raises(SSHTimeout):
            ssh.connect()
        assert time.monotonic() - started < 5


def test_disconnect_is_idempotent(ssh_client: SSHClient) -> None:
    ssh_client.disconnect()  # never connected
    ssh_client.connect()
    ssh_client.disconnect()
    ssh_client.disconnect()
    assert not ssh_client.is_connected
    # Commands connect again on demand.
    assert ssh_client.execute("echo back").stdout == "back\n"


def test_context_manager_connects_and_disconnects(sshd: SSHServer, known_hosts: Path) -> None:
    with _make(sshd, known_hosts) as ssh:
        assert ssh.is_connected
    assert not ssh.is_connected


# -------------------------------------------------------------------- SFTP
def test_write_and_read_file(ssh_client: SSHClient, sshd: SSHServer) -> None:
    remote = _remote(sshd, "data.bin")
    payload = bytes(range(256)) * 1000
    ssh_client.write_file(remote, payload, mode=0o640)
    assert ssh_client.read_file(remote) == payload
    assert ssh_client.execute(["stat", "-c", "%a", remote]).stdout.strip() == "640"
    ssh_client.write_file(remote, "héllo")  # str is encoded, the file replaced
    assert ssh_client.read_file(remote) == "héllo".encode()
    with pytest.raises(SSHFileError) as info:
        ssh_client.read_file(remote, max_bytes=3)
    assert info.value.errno == errno.EFBIG
    ssh_client.execute(["rm", "-f", remote], check=True)


def test_missing_remote_file(ssh_client: SSHClient, sshd: SSHServer, tmp_path: Path) -> None:
    missing = f"{sshd.remote_dir}/does-not-exist"
    with pytest.raises(SSHFileError, match="does-not-exist") as info:
        ssh_client.read_file(missing)
    assert info.value.errno == errno.ENOENT
    assert info.value.path == missing
    local_dir = tmp_path / "local"
    local_dir.mkdir()
    local = local_dir / "kept.txt"
    local.write_text("unchanged")
    with pytest.raises(SSHFileError):
        ssh_client.get(missing, local)
    assert local.read_text() == "unchanged"
    assert [p.name for p in local_dir.iterdir()] == ["kept.txt"]  # no temporary left


def test_put_and_get(ssh_client: SSHClient, sshd: SSHServer, tmp_path: Path) -> None:
    source = tmp_path / "script.sh"
    source.write_bytes(b"#!/bin/sh\necho from-script\n")
    source.chmod(0o750)
    remote = _remote(sshd, "script.sh")
    ssh_client.put(source, remote)
    assert ssh_client.execute([remote]).stdout == "from-script\n"
    back = tmp_path / "back.sh"
    ssh_client.get(remote, back)
    assert back.read_bytes() == source.read_bytes()
    assert back.stat().st_mode & 0o777 == 0o750
    with pytest.raises(FileNotFoundError):  # local errors stay local
        ssh_client.put(tmp_path / "absent", remote)
    ssh_client.execute(["rm", "-f", remote], check=True)


# ------------------------------------------------------------------- async
def test_async_wrappers(sshd: SSHServer, known_hosts: Path) -> None:
    async def main() -> None:
        async with _make(sshd, known_hosts) as ssh:
            results = await asyncio.gather(*(ssh.aexecute(["echo", str(i)]) for i in range(5)))
            assert [r.stdout for r in results] == [f"{i}\n" for i in range(5)]
            remote = _remote(sshd, "async.txt")
            await ssh.awrite_file(remote, b"async data")
            assert await ssh.aread_file(remote) == b"async data"
            with pytest.raises(SSHCommandFailed):
                await ssh.aexecute("false", check=True)
            await ssh.aexecute(["rm", remote], check=True)
        assert not ssh.is_connected

    asyncio.run(main())


def test_cancelling_aexecute_stops_the_command(ssh_client: SSHClient) -> None:
    argv = ("sleep", "30.43")

    async def main() -> None:
        await ssh_client.aconnect()
        task = asyncio.create_task(ssh_client.aexecute(list(argv), timeout=20))
        assert await asyncio.to_thread(_wait_started, *argv), "the command did not start"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert _wait_gone(*argv), "the remote command survived the cancel"
