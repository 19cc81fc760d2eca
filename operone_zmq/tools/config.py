"""The node policy of the built-in tools (:class:`ToolsConfig`) and the
shell allow-list's unsafe entries.

Not compiled in the compiled build (setup.py COMPILED), unlike
:mod:`operone_zmq.tools.spec`, which re-exports these names:
``ToolsConfig`` takes its values straight from a config file and checks
them in ``__post_init__``, but a compiled dataclass checks the declared
field types first (a ``shell_allow`` list would be a TypeError there, not
the ConfigError saying what is wrong).  It is made once per node, not per
job.

This module does no I/O and imports neither ZeroMQ nor asyncio.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from operone_zmq.errors import ConfigError

__all__ = ["UNSAFE_EXECUTABLES", "ToolsConfig", "unsafe_shell_entries"]

#: Executables that run other programs chosen by their arguments (or read a
#: program from them): allowing one allows every program on the node.  Shells,
#: interpreters, and wrappers that exec their argv.  A ``shell_allow`` entry
#: whose name is here (or matches an interpreter with a version suffix, such
#: as python3.12) is refused unless ``shell_allow_unsafe`` is set.
UNSAFE_EXECUTABLES = frozenset({
    "env", "find", "xargs", "nice", "ionice", "timeout", "nohup", "setsid", "sudo", "su",
    "doas", "pkexec", "runuser", "chroot", "nsenter", "unshare", "ssh", "scp", "rsync",
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "busybox",
    "python", "python3", "perl", "ruby", "node", "nodejs", "php", "lua", "tclsh", "wish",
    "expect", "awk", "gawk", "mawk", "nawk", "sed", "make", "git", "vi", "vim", "less",
    "more", "man", "watch", "time", "stdbuf", "taskset", "flock", "script", "strace",
    "ltrace", "gdb", "parallel", "docker", "podman", "kubectl", "systemd-run", "at",
    "crontab", "tar", "zip", "install", "ld.so",
})
_UNSAFE_PATTERN = re.compile(r"(python|perl|ruby|php|lua|node|pypy|tclsh)[0-9.]*")


def unsafe_shell_entries(allow: Iterable[str]) -> list[str]:
    """The entries of ``allow`` that let a job run any program (sorted)."""
    out = []
    for entry in allow:
        base = os.path.basename(entry)
        if base in UNSAFE_EXECUTABLES or _UNSAFE_PATTERN.fullmatch(base):
            out.append(entry)
    return sorted(out)


@dataclass(frozen=True)
class ToolsConfig:
    """Node policy for the built-in tools: shell allow-list, file root and limits."""

    #: Executables the ``shell`` tool may run: bare names (looked up on PATH
    #: when a job is checked) or absolute paths.  Empty means shell is refused.
    shell_allow: frozenset[str] = frozenset()
    #: Directory the ``fs.*`` tools are confined to; ``None`` disables them.
    fs_root: Path | None = None
    #: Default and maximum run time of one ``shell`` job, in seconds.
    shell_timeout: float = 60.0
    #: Bytes of stdout and of stderr kept per ``shell`` job; the rest is dropped.
    max_output: int = 4 * 1024 * 1024
    #: Allow ``shell_allow`` entries that run arbitrary programs (env, find,
    #: shells, interpreters: UNSAFE_EXECUTABLES); without it they are refused.
    shell_allow_unsafe: bool = False
    #: Run ``shell`` children as this user (name or uid) and its primary group,
    #: with no supplementary groups; needs the worker to run as root.
    shell_user: str | None = None

    def __post_init__(self) -> None:
        # Values may come straight from a config file: check them as plain objects.
        raw: object = self.shell_allow
        if isinstance(raw, str | bytes) or not isinstance(raw, Iterable):
            raise ConfigError("shell_allow must be a collection of executable names")
        allow = frozenset(raw)
        for entry in allow:
            if not isinstance(entry, str) or not entry.strip():
                raise ConfigError(
                    f"invalid shell_allow entry {entry!r}: expected an executable name"
                )
            if not _is_abs(entry) and _has_sep(entry):
                raise ConfigError(
                    f"invalid shell_allow entry {entry!r}: use a bare executable name "
                    "or an absolute path"
                )
        object.__setattr__(self, "shell_allow", allow)
        unsafe = unsafe_shell_entries(allow)
        if unsafe and self.shell_allow_unsafe is not True:
            raise ConfigError(
                f"shell_allow entries {unsafe} run any program their arguments name (or"
                " read one from them): allowing them allows everything.  Remove them, or"
                " set tools.shell_allow_unsafe = true if that is what you mean")
        user: object = self.shell_user
        if user is not None and (not isinstance(user, str) or not user or "\0" in user):
            raise ConfigError(f"shell_user must be a user name or uid, not {user!r}")
        root: object = self.fs_root
        if isinstance(root, str):
            object.__setattr__(self, "fs_root", Path(root).expanduser())
        elif root is not None and not isinstance(root, Path):
            raise ConfigError(f"fs_root must be a directory path, not {root!r}")
        timeout: object = self.shell_timeout
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ConfigError(
                f"shell_timeout must be a positive number of seconds, not {timeout!r}"
            )
        limit: object = self.max_output
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ConfigError(f"max_output must be a non-negative number of bytes, not {limit!r}")


def _is_abs(path: str) -> bool:
    return os.path.isabs(path)


def _has_sep(path: str) -> bool:
    return os.sep in path or (os.altsep is not None and os.altsep in path)
