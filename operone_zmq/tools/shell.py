"""The ``shell`` built-in: run an allow-listed executable with an argv list, never a shell string.

The child runs in its own session, and a timeout or a cancel kills its whole
tree, including descendants that left its process group (``setsid``): on
Linux the worker is a child subreaper (``PR_SET_CHILD_SUBREAPER``), so an
orphaned descendant is re-parented to the worker instead of to init, and the
kill walks the ``/proc`` children lists from the child and takes, among the
worker's own children, those carrying the job's mark in their environment
(``OPERONE_SHELL_JOB``); it repeats until none is left.  (A descendant that
clears its environment *and* is orphaned before the kill is missed: so
``env`` is on the unsafe list.)  With ``tools.shell_user`` the child runs as
that user, with its primary group and no supplementary groups.  Its working
directory is the node's ``fs_root`` (a job's ``cwd`` must resolve inside it);
without a root, a private empty directory made for the job and removed after.
The working directory does not confine the program: what it may read or
change is decided by the allow-list alone, which is empty by default.  Its stdout and
stderr are drained by two reader threads and kept up to
``ToolsConfig.max_output`` bytes each.
"""

from __future__ import annotations

import codecs
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from operone_zmq.errors import BadRequest, JobCancelled, JobTimeout, Refused
from operone_zmq.tools.fs import resolve_in_root
from operone_zmq.tools.spec import ToolContext, ToolsConfig

__all__ = ["run_shell"]

#: How often the wait loop looks at the cancel flag and the clock, in seconds.
_POLL = 0.1
_CHUNK = 64 * 1024
#: How long to wait for the output readers after killing the child, in seconds.
_DRAIN_AFTER_KILL = 1.0
#: Environment variables a job may not set: they change what the allowed
#: executable really runs (preloaded libraries).
_FORBIDDEN_ENV_PREFIXES = ("LD_", "DYLD_")
#: The environment variable that marks a shell job's processes (see above).
MARK = "OPERONE_SHELL_JOB"
#: Rounds of "find the tree, kill it" before giving up: a tree that forks
#: while it is being killed needs a few; each round is a /proc walk.
_KILL_ROUNDS = 20
_PR_SET_CHILD_SUBREAPER = 36
_subreaper_lock = threading.Lock()
_subreaper: bool | None = None
#: Pids of the shell children this process started and still waits for
#: (subprocess reaps those; the kill reaps only other marked orphans).
_children: set[int] = set()


def _become_subreaper() -> bool:
    """Make this process a child subreaper (Linux); True when it is one."""
    global _subreaper
    with _subreaper_lock:
        if _subreaper is None:
            _subreaper = False
            if sys.platform.startswith("linux"):
                try:
                    import ctypes

                    libc = ctypes.CDLL(None, use_errno=True)
                    _subreaper = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
                except (OSError, AttributeError):
                    _subreaper = False
        return _subreaper


def _proc_children(pid: int) -> list[int]:
    """The children of ``pid`` from /proc (empty when it is gone)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out.extend(int(x) for x in f.read().split())
        except (OSError, ValueError):
            continue
    return out


def _marked(pid: int, mark: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return mark in f.read().split(b"\0")
    except OSError:
        return False


def _tree(root: int, mark: bytes) -> set[int]:
    """``root`` and its descendants, and the worker's orphaned children that
    carry ``mark`` (and their descendants)."""
    found: set[int] = set()
    todo = [root]
    for c in _proc_children(os.getpid()):
        if c != root and c not in _children and _marked(c, mark):
            todo.append(c)
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(_proc_children(pid))
    return found


def _check_argv(argv: object) -> list[str]:
    if isinstance(argv, str | bytes):
        raise BadRequest("argv must be a list of strings; shell strings are not accepted")
    if not isinstance(argv, list | tuple):
        raise BadRequest(f"argv must be a list of strings, not {type(argv).__name__}")
    if not argv:
        raise BadRequest("argv must not be empty: its first item names the executable")
    for i, item in enumerate(argv):
        if not isinstance(item, str):
            raise BadRequest(f"argv[{i}] must be a string, not {type(item).__name__}")
        if "\0" in item:
            raise BadRequest(f"argv[{i}] contains a NUL character")
    if not argv[0]:
        raise BadRequest("argv[0] must name an executable")
    return list(argv)


def _norm(path: str) -> str:
    return os.path.normcase(os.path.normpath(path))


def _is_path(name: str) -> bool:
    return os.sep in name or (os.altsep is not None and os.altsep in name)


def admit_executable(config: ToolsConfig, name: str) -> str:
    """Check ``name`` against the allow-list and return the absolute path to run.

    An allow entry that is a bare name admits that name and the path
    ``shutil.which`` finds for it now; an absolute entry admits only that path.
    Raises :class:`Refused` when not admitted and :class:`BadRequest` when the
    admitted executable does not exist.
    """
    refused = Refused(f"executable {name!r} is not in this node's shell allow-list")
    absolute = os.path.isabs(name)
    if _is_path(name) and not absolute:
        raise refused  # relative paths depend on the cwd: never admitted
    key = _norm(name) if absolute else os.path.normcase(name)
    admitted = False
    for entry in config.shell_allow:
        if os.path.isabs(entry):
            admitted = absolute and _norm(entry) == key
        elif not absolute:
            admitted = os.path.normcase(entry) == key
        else:
            found = shutil.which(entry)
            admitted = found is not None and _norm(os.path.abspath(found)) == key
        if admitted:
            break
    if not admitted:
        raise refused
    if absolute:
        if not os.path.isfile(name):
            raise BadRequest(f"executable {name!r} is allowed but does not exist on this node")
        return name
    found = shutil.which(name)
    if found is None:
        raise BadRequest(f"executable {name!r} is allowed but was not found on this node's PATH")
    return os.path.abspath(found)


def _check_env(env: object) -> dict[str, str] | None:
    if env is None:
        return None
    if not isinstance(env, dict):
        raise BadRequest(f"env must be a map of strings to strings, not {type(env).__name__}")
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise BadRequest(f"env must map strings to strings; bad entry {key!r}: {value!r}")
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise BadRequest(f"invalid environment variable name or value: {key!r}")
        if key.upper().startswith(_FORBIDDEN_ENV_PREFIXES):
            raise Refused(f"environment variable {key!r} may not be set by a job")
    merged = dict(os.environ)
    merged.update(env)
    return merged


def _check_timeout(config: ToolsConfig, ctx: ToolContext, timeout: object) -> float:
    limit = config.shell_timeout
    if timeout is not None:
        if (
            not isinstance(timeout, int | float)
            or isinstance(timeout, bool)
            or math.isnan(timeout)
            or timeout < 0
        ):
            raise BadRequest(f"timeout must be a positive number of seconds, not {timeout!r}")
        if timeout:  # 0 means "the node's default"
            limit = min(float(timeout), limit)
    return ctx.remaining(limit)


class _Capture:
    """Drain one pipe in a thread, keeping at most ``limit`` bytes."""

    def __init__(self, stream: IO[bytes], limit: int, label: str,
                 on_text: Callable[[str, str], None] | None = None) -> None:
        self._buf = bytearray()
        self._limit = limit
        self._label = label
        self._on_text = on_text
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.truncated = False
        self.thread = threading.Thread(
            target=self._run, args=(stream,), name=f"operone-shell-{label}", daemon=True
        )
        self.thread.start()

    def _run(self, stream: IO[bytes]) -> None:
        try:
            fd = stream.fileno()
            while True:
                chunk = os.read(fd, _CHUNK)
                if not chunk:
                    break
                room = self._limit - len(self._buf)
                if len(chunk) > room:
                    self.truncated = True
                    chunk = chunk[: max(room, 0)]
                if not chunk:
                    continue  # drain, keep nothing, stream nothing
                self._buf += chunk
                # Only what is kept is streamed: the same max_output cap.
                if self._on_text is not None:
                    text = self._decoder.decode(chunk)
                    if text:
                        try:
                            self._on_text(self._label, text)
                        except Exception:  # a broken listener must not stop the drain
                            self._on_text = None
        except (OSError, ValueError):
            pass
        finally:
            try:
                stream.close()
            except OSError:
                pass

    def text(self) -> str:
        return bytes(self._buf).decode("utf-8", errors="replace")


def _feed(stream: IO[bytes], data: bytes) -> None:
    try:
        stream.write(data)
    except (OSError, ValueError):
        pass
    finally:
        try:
            stream.close()
        except (OSError, ValueError):
            pass


def _kill_tree(proc: subprocess.Popen[bytes], mark: bytes, *, group: bool = True) -> None:
    """Kill ``proc``, its group and every descendant and marked orphan
    (``group`` False: ``proc`` has exited and been reaped; only what is left
    of its tree)."""
    if sys.platform == "win32":
        if proc.returncode is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
        return
    if group:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if not os.path.isdir("/proc"):
        return
    me = os.getpid()
    for _ in range(_KILL_ROUNDS):
        victims = _tree(proc.pid, mark) if group else _tree(-1, mark) - {-1}
        victims.discard(me)
        alive = False
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
                alive = True
            except (ProcessLookupError, PermissionError):
                pass
        _reap_orphans(mark)
        if not alive:
            break
        time.sleep(0.01)


def _reap_orphans(mark: bytes) -> None:
    """Reap the worker's exited children that carry ``mark`` (orphans
    re-parented to us; subprocess reaps only the ones it started)."""
    for c in _proc_children(os.getpid()):
        if c in _children:
            continue
        try:
            with open(f"/proc/{c}/stat") as f:
                state = f.read().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state == "Z" and _marked(c, mark):
            try:
                os.waitpid(c, os.WNOHANG)
            except ChildProcessError:
                pass


def _user_ids(user: str) -> tuple[int, int]:
    """uid and primary gid of ``user`` (a name or a number)."""
    import pwd

    try:
        pw = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except (KeyError, ValueError):
        raise Refused(f"tools.shell_user {user!r} is not a user on this node") from None
    return pw.pw_uid, pw.pw_gid


def run_shell(
    config: ToolsConfig,
    ctx: ToolContext,
    argv: object,
    timeout: object = None,
    cwd: object = None,
    stdin: object = None,
    env: object = None,
) -> dict[str, Any]:
    """Run ``argv`` under ``config``'s policy; return stdout, stderr, exit code and truncation."""
    args = _check_argv(argv)
    executable = admit_executable(config, args[0])
    if cwd is not None and (not isinstance(cwd, str) or not cwd or "\0" in cwd):
        raise BadRequest(f"cwd must be a directory path, not {cwd!r}")
    if cwd is not None and config.fs_root is None:
        raise Refused("shell jobs cannot choose a cwd on this node: it has no fs_root")
    data: bytes | None
    if stdin is None:
        data = None
    elif isinstance(stdin, str):
        data = stdin.encode("utf-8")
    elif isinstance(stdin, bytes | bytearray):
        data = bytes(stdin)
    else:
        raise BadRequest(f"stdin must be a string or bytes, not {type(stdin).__name__}")
    full_env = _check_env(env)
    limit = _check_timeout(config, ctx, timeout)
    if limit <= 0:
        raise JobTimeout(
            f"no time left to run {args[0]!r}: the job's deadline has passed",
            details={"argv": args, "timeout": 0.0},
        )

    scratch: str | None = None
    if config.fs_root is None:
        scratch = tempfile.mkdtemp(prefix="operone-shell-")
        workdir = scratch
    else:
        _, target = resolve_in_root(config, "." if cwd is None else cwd)
        if not target.is_dir():
            raise BadRequest(f"working directory {cwd!r} does not exist in the node's fs_root")
        workdir = str(target)
    try:
        return _run(config, ctx, args, executable, workdir, data, full_env, limit,
                    own_cwd=scratch is not None)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _run(
    config: ToolsConfig,
    ctx: ToolContext,
    args: list[str],
    executable: str,
    cwd: str,
    data: bytes | None,
    full_env: dict[str, str] | None,
    limit: float,
    *,
    own_cwd: bool = False,
) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    mark = f"{MARK}={os.getpid()}.{ctx.job_id}.{time.monotonic_ns()}"
    if sys.platform == "win32":
        extra["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    else:
        extra["start_new_session"] = True
        _become_subreaper()
        env = dict(os.environ) if full_env is None else dict(full_env)
        name, _, value = mark.partition("=")
        env[name] = value
        full_env = env
        if config.shell_user is not None:
            if os.geteuid() != 0:
                raise Refused(
                    f"tools.shell_user is {config.shell_user!r} but the worker does not run"
                    " as root, so it cannot switch users: run the worker as root or unset"
                    " tools.shell_user")
            uid, gid = _user_ids(config.shell_user)
            extra.update(user=uid, group=gid, extra_groups=[])
            env["HOME"] = cwd
            if own_cwd:  # the private scratch directory becomes the user's
                os.chown(cwd, uid, gid)
    try:
        proc = subprocess.Popen(
            args,
            executable=executable,
            stdin=subprocess.DEVNULL if data is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=full_env,
            shell=False,
            **extra,
        )
    except FileNotFoundError as exc:
        raise BadRequest(f"cannot start {args[0]!r}: not found ({exc.strerror})") from None
    except PermissionError as exc:
        raise BadRequest(f"cannot start {args[0]!r}: not executable ({exc.strerror})") from None
    except (OSError, ValueError) as exc:
        raise BadRequest(f"cannot start {args[0]!r}: {exc}") from None

    _children.add(proc.pid)
    assert proc.stdout is not None
    assert proc.stderr is not None
    out = _Capture(proc.stdout, config.max_output, "stdout", ctx.stream)
    err = _Capture(proc.stderr, config.max_output, "stderr", ctx.stream)
    if data is not None:
        assert proc.stdin is not None
        threading.Thread(
            target=_feed, args=(proc.stdin, data), name="operone-shell-stdin", daemon=True
        ).start()

    end = time.monotonic() + limit
    outcome: str | None = "error"  # until the loop says otherwise
    try:
        while True:
            if ctx.cancelled.is_set():
                outcome = "cancelled"
                break
            left = end - time.monotonic()
            if left <= 0:
                outcome = "timeout"
                break
            step = min(_POLL, left)
            if proc.returncode is None:
                try:
                    proc.wait(timeout=step)
                except subprocess.TimeoutExpired:
                    continue
            # The child has exited; its output is complete once both pipes close
            # (a background grandchild may still hold them open).
            alive = [c for c in (out, err) if c.thread.is_alive()]
            if not alive:
                outcome = None
                break
            alive[0].thread.join(step)
    finally:
        if outcome is not None:
            _kill_tree(proc, mark.encode())
            proc.wait()
            stop = time.monotonic() + _DRAIN_AFTER_KILL
            for c in (out, err):
                c.thread.join(max(0.0, stop - time.monotonic()))
        _children.discard(proc.pid)
        if outcome is None and sys.platform != "win32":
            # Finished: nothing it started outlives the job either.
            _kill_tree(proc, mark.encode(), group=False)

    result: dict[str, Any] = {
        "stdout": out.text(),
        "stderr": err.text(),
        "exit_code": proc.returncode,
        "truncated": out.truncated or err.truncated,
    }
    if outcome == "timeout":
        raise JobTimeout(
            f"command {args[0]!r} did not finish within {limit:g} s and was killed",
            details={"argv": args, "timeout": limit, **result},
        )
    if outcome == "cancelled":
        raise JobCancelled(
            f"command {args[0]!r} was killed because the job was cancelled",
            details={"argv": args, **result},
        )
    return result
