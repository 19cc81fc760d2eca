"""Unit tests of the shell built-in, running real executables."""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from operone_zmq.errors import BadRequest, JobCancelled, JobTimeout, Refused
from operone_zmq.tools import ToolContext, ToolsConfig, builtin_registry

posix_only = pytest.mark.skipif(os.name != "posix", reason="uses POSIX executables")
PY = sys.executable


def run(config: ToolsConfig, ctx: ToolContext | None = None, **args: Any) -> Any:
    reg = builtin_registry(config)
    ctx = ctx or ToolContext(job_id="j", node="n", config=config)
    return reg.get("shell").prepare(args, ctx)()


def allow(*names: str, **kw: Any) -> ToolsConfig:
    # These tests run the Python interpreter: an unsafe entry, allowed knowingly.
    kw.setdefault("shell_allow_unsafe", True)
    return ToolsConfig(shell_allow=frozenset(names), **kw)


# ----------------------------------------------------------------- allow-list
@posix_only
def test_runs_allowed_executable_by_name() -> None:
    res = run(allow("echo"), argv=["echo", "hello", "world"])
    assert res == {"stdout": "hello world\n", "stderr": "", "exit_code": 0, "truncated": False}


@posix_only
def test_name_entry_admits_resolved_absolute_path() -> None:
    path = shutil.which("uname")
    assert path is not None
    res = run(allow("uname"), argv=[path, "-s"])
    assert res["exit_code"] == 0
    assert res["stdout"].strip() == os.uname().sysname


def test_absolute_entry_admits_only_that_path() -> None:
    cfg = allow(PY)
    res = run(cfg, argv=[PY, "-c", "print('ok')"])
    assert res["stdout"].strip() == "ok"
    with pytest.raises(Refused, match="not in this node's shell allow-list"):
        run(cfg, argv=[os.path.basename(PY), "-c", "pass"])


@posix_only
@pytest.mark.parametrize(
    "argv0", ["uname", "./uname", "bin/uname", "/tmp/uname", "/usr/bin/../bin/sh", "sh"]
)
def test_not_allowed_is_refused(argv0: str) -> None:
    expected = re.escape(f"executable '{argv0}' is not in this node's shell allow-list")
    with pytest.raises(Refused, match=expected):
        run(allow("echo", "/bin/true"), argv=[argv0])


def test_empty_allow_list_refuses_everything() -> None:
    with pytest.raises(Refused):
        run(ToolsConfig(), argv=[PY, "-c", "pass"])


def test_allowed_but_missing_executable() -> None:
    with pytest.raises(BadRequest, match="not found on this node's PATH"):
        run(allow("no-such-exe-operone"), argv=["no-such-exe-operone"])
    missing = str(Path(PY).parent / "no-such-exe-operone")
    with pytest.raises(BadRequest, match="does not exist"):
        run(allow(missing), argv=[missing])


# ---------------------------------------------------------------- bad requests
@pytest.mark.parametrize(
    ("argv", "match"),
    [
        ("echo hi", "shell strings are not accepted"),
        (b"echo", "shell strings are not accepted"),
        ([], "must not be empty"),
        ([""], "must name an executable"),
        (["echo", 3], r"argv\[1\] must be a string"),
        (["echo", "a\0b"], "NUL"),
        ({"0": "echo"}, "must be a list of strings"),
    ],
)
def test_bad_argv(argv: object, match: str) -> None:
    with pytest.raises(BadRequest, match=match):
        run(allow("echo"), argv=argv)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ({"timeout": -1}, BadRequest, "timeout must be"),
        ({"timeout": "5"}, BadRequest, "timeout must be"),
        ({"cwd": "/no/such/dir/operone"}, Refused, "no fs_root"),
        ({"stdin": 5}, BadRequest, "stdin must be"),
        ({"env": ["A=1"]}, BadRequest, "env must be"),
        ({"env": {"A": 1}}, BadRequest, "env must map strings"),
        ({"env": {"LD_PRELOAD": "/tmp/x.so"}}, Refused, "may not be set"),
        ({"shell": True}, BadRequest, "unexpected argument 'shell'"),
    ],
)
def test_bad_options(args: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        run(allow(PY), argv=[PY, "-c", "pass"], **args)


# -------------------------------------------------------------------- running
def test_stderr_exit_code_stdin_env_cwd(tmp_path: Path) -> None:
    code = (
        "import os, sys\n"
        "data = sys.stdin.read()\n"
        "print(data.upper(), os.environ['OPERONE_X'], os.getcwd())\n"
        "print('bad', file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    (tmp_path / "sub").mkdir()
    res = run(
        allow(PY, fs_root=tmp_path),
        argv=[PY, "-c", code],
        stdin="héllo",
        env={"OPERONE_X": "42"},
        cwd="sub",
    )
    out = res["stdout"].split()
    assert out[0] == "HÉLLO"
    assert out[1] == "42"
    assert Path(out[2]).resolve() == (tmp_path / "sub").resolve()
    assert res["stderr"].strip() == "bad"
    assert res["exit_code"] == 3
    assert res["truncated"] is False


def test_no_stdin_means_empty_input() -> None:
    res = run(allow(PY), argv=[PY, "-c", "import sys; print(repr(sys.stdin.read()))"])
    assert res["stdout"].strip() == "''"


def test_invalid_utf8_output_is_replaced() -> None:
    res = run(allow(PY), argv=[PY, "-c", "import sys; sys.stdout.buffer.write(b'a\\xffb')"])
    assert res["stdout"] == "a\ufffdb"


def test_output_is_truncated_at_max_output() -> None:
    code = "import sys; sys.stdout.write('x' * 300000); sys.stderr.write('e' * 10)"
    res = run(allow(PY, max_output=1000), argv=[PY, "-c", code])
    assert res["stdout"] == "x" * 1000
    assert res["stderr"] == "e" * 10
    assert res["truncated"] is True
    assert res["exit_code"] == 0


# ------------------------------------------------------------ timeouts, cancel
def _alive(pid: int) -> bool:
    """Tell whether ``pid`` runs (a zombie nobody reaped yet counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@posix_only
def test_timeout_kills_and_reports_partial_output() -> None:
    t0 = time.monotonic()
    with pytest.raises(JobTimeout, match=r"'sh' did not finish within 0.3 s") as info:
        run(allow("sh"), argv=["sh", "-c", "echo started; sleep 10"], timeout=0.3)
    assert time.monotonic() - t0 < 2.0
    assert info.value.details["stdout"] == "started\n"
    assert info.value.details["timeout"] == 0.3


@posix_only
def test_timeout_also_kills_grandchildren(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    t0 = time.monotonic()
    with pytest.raises(JobTimeout):
        run(allow("sh"), argv=["sh", "-c", f"sleep 10 & echo $! > {pidfile}; wait"], timeout=0.3)
    assert time.monotonic() - t0 < 2.0
    pid = int(pidfile.read_text())
    for _ in range(50):  # SIGKILL is asynchronous: give it a moment
        if not _alive(pid):
            break
        time.sleep(0.02)
    else:
        pytest.fail("grandchild still running")


@posix_only
def test_node_timeout_caps_job_timeout() -> None:
    with pytest.raises(JobTimeout) as info:
        run(allow("sleep", shell_timeout=0.2), argv=["sleep", "10"], timeout=100)
    assert info.value.details["timeout"] == 0.2


@posix_only
def test_deadline_caps_timeout() -> None:
    cfg = allow("sleep")
    ctx = ToolContext(job_id="j", node="n", config=cfg, deadline=time.monotonic() + 0.3)
    t0 = time.monotonic()
    with pytest.raises(JobTimeout):
        run(cfg, ctx, argv=["sleep", "10"])
    assert time.monotonic() - t0 < 2.0
    late = ToolContext(job_id="j", node="n", config=cfg, deadline=time.monotonic() - 1)
    with pytest.raises(JobTimeout, match="deadline has passed"):
        run(cfg, late, argv=["sleep", "0"])


@posix_only
def test_cancel_stops_the_child() -> None:
    cfg = allow("sleep")
    ctx = ToolContext(job_id="j", node="n", config=cfg)
    timer = threading.Timer(0.2, ctx.cancelled.set)
    timer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(JobCancelled, match="cancelled"):
            run(cfg, ctx, argv=["sleep", "10"])
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 2.0


# ------------------------------------------------------------ working directory
@posix_only
def test_cwd_is_fs_root_by_default_and_confined_to_it(tmp_path: Path) -> None:
    """Issue 9 item 8: shell runs in fs_root; a cwd outside it (or missing) is refused."""
    from operone_zmq.errors import PathOutsideRoot

    config = allow("pwd", fs_root=tmp_path)
    assert Path(run(config, argv=["pwd"])["stdout"].strip()).resolve() == tmp_path.resolve()
    with pytest.raises(PathOutsideRoot):
        run(config, argv=["pwd"], cwd="/")
    with pytest.raises(PathOutsideRoot):
        run(config, argv=["pwd"], cwd="../")
    with pytest.raises(BadRequest, match="does not exist"):
        run(config, argv=["pwd"], cwd="missing")


@posix_only
def test_without_fs_root_the_cwd_is_a_private_scratch_directory() -> None:
    """No fs_root: an empty directory made for the job, removed afterwards."""
    res = run(allow(PY), argv=[PY, "-c", "import os; print(os.getcwd(), os.listdir('.'))"])
    where, listing = res["stdout"].split(" ", 1)
    assert listing.strip() == "[]"
    assert "operone-shell-" in where
    assert not os.path.exists(where)


# ------------------------------------------------ the whole tree (issue 11)
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="uses /proc and PR_SET_CHILD_SUBREAPER")


def _gone(pidfile: Path) -> None:
    """The process whose pid is in ``pidfile`` is dead within a moment; if
    not, it is killed (the test never leaves it behind) and the test fails."""
    for _ in range(200):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        time.sleep(0.01)
    pid = int(pidfile.read_text())
    for _ in range(100):  # SIGKILL is asynchronous: give it a moment
        if not _alive(pid):
            return
        time.sleep(0.02)
    os.kill(pid, 9)
    pytest.fail(f"process {pid} escaped the kill")


#: A grandchild in its own session (setsid), whose parent exits at once: it
#: leaves the job's process group and is orphaned before the kill.
def _escape(pidfile: Path, then: str) -> list[str]:
    inner = f"echo $$ > {pidfile}; exec sleep 300"
    return ["sh", "-c", f"setsid sh -c '{inner}' </dev/null >/dev/null 2>&1 & {then}"]


@linux_only
def test_timeout_kills_a_setsid_grandchild(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    with pytest.raises(JobTimeout):
        run(allow("sh"), argv=_escape(pidfile, "sleep 30"), timeout=0.5)
    _gone(pidfile)


@linux_only
def test_cancel_kills_a_setsid_grandchild(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    cfg = allow("sh")
    ctx = ToolContext(job_id="j", node="n", config=cfg)
    threading.Timer(0.5, ctx.cancelled.set).start()
    with pytest.raises(JobCancelled):
        run(cfg, ctx, argv=_escape(pidfile, "sleep 30"))
    _gone(pidfile)


@linux_only
def test_nothing_a_finished_job_started_outlives_it(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    out = run(allow("sh"), argv=_escape(pidfile, f"while [ ! -s {pidfile} ]; do :; done"))
    assert out["exit_code"] == 0
    _gone(pidfile)


@pytest.mark.parametrize("entry", ["env", "find", "xargs", "bash", "/usr/bin/python3.12",
                                   "perl", "nice", "timeout", "nohup", "setsid", "sudo",
                                   "ssh"])
def test_allow_list_entries_that_run_anything_are_refused(entry: str) -> None:
    from operone_zmq.errors import ConfigError

    with pytest.raises(ConfigError, match="shell_allow_unsafe"):
        ToolsConfig(shell_allow=frozenset({"echo", entry}))
    assert entry in ToolsConfig(shell_allow=frozenset({entry}),
                                shell_allow_unsafe=True).shell_allow


@posix_only
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_shell_user_runs_as_nobody_without_access_to_the_home(tmp_path: Path) -> None:
    import pwd

    nobody = pwd.getpwnam("nobody")
    home = tmp_path / "operone-home"
    home.mkdir(mode=0o700)
    secret = home / "node.key_secret"
    secret.write_text("secret")
    cfg = ToolsConfig(shell_allow=frozenset({"id", "cat"}), shell_user="nobody")
    out = run(cfg, argv=["id", "-u"])
    assert out["stdout"].strip() == str(nobody.pw_uid)
    assert run(cfg, argv=["id", "-G"])["stdout"].split() == [str(nobody.pw_gid)]
    denied = run(cfg, argv=["cat", str(secret)])
    assert denied["exit_code"] != 0 and "Permission denied" in denied["stderr"]
    assert run(ToolsConfig(shell_allow=frozenset({"cat"})),
               argv=["cat", str(secret)])["stdout"] == "secret"


@posix_only
def test_shell_user_needs_root() -> None:
    if os.geteuid() == 0:
        pytest.skip("runs as root")
    with pytest.raises(Refused, match="root"):
        run(ToolsConfig(shell_allow=frozenset({"id"}), shell_user="nobody"), argv=["id"])
