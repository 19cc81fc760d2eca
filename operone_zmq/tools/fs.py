"""The ``fs.read``, ``fs.write`` and ``fs.list`` built-ins, confined to the node's file root.

Every path is taken relative to ``ToolsConfig.fs_root`` (an absolute path is
accepted only if it lies inside the root), symlinks are resolved, and a path
whose resolved form is not inside the resolved root is refused with
:class:`PathOutsideRoot`.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

from operone_zmq.errors import BadRequest, PathOutsideRoot, Refused
from operone_zmq.tools.config import ToolsConfig

__all__ = ["FS_READ_MAX", "fs_list", "fs_read", "fs_write", "resolve_in_root"]

#: Largest number of bytes one ``fs.read`` call returns.
FS_READ_MAX = 64 * 1024 * 1024


def _root(config: ToolsConfig) -> Path:
    if config.fs_root is None:
        raise Refused("file tools are disabled on this node: no fs_root configured")
    try:
        root = config.fs_root.resolve(strict=True)
    except (OSError, RuntimeError):
        root = None
    if root is None or not root.is_dir():
        raise Refused("file tools are unavailable on this node: its fs_root is not a directory")
    return root


def resolve_in_root(config: ToolsConfig, path: object) -> tuple[Path, Path]:
    """Return ``(root, target)``: the resolved root and ``path`` resolved inside it.

    Raises :class:`Refused` without a root, :class:`PathOutsideRoot` when the
    resolved path leaves the root, and :class:`BadRequest` for a bad path.
    """
    if not isinstance(path, str):
        raise BadRequest(f"path must be a string, not {type(path).__name__}")
    if "\0" in path:
        raise BadRequest("path contains a NUL character")
    root = _root(config)
    given = Path(path)
    candidate = given if given.is_absolute() else root / given
    try:
        target = candidate.resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops, unreadable components
        raise BadRequest(f"cannot resolve path {path!r}: {exc}") from None
    if not target.is_relative_to(root):
        raise PathOutsideRoot(f"path {path!r} escapes the node's file root")
    return root, target


def _rel(root: Path, target: Path) -> str:
    return target.relative_to(root).as_posix()


def _check_int(name: str, value: object, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest(f"{name} must be a non-negative integer, not {value!r}")
    return value


def fs_read(
    config: ToolsConfig,
    path: object,
    binary: object = False,
    offset: object = 0,
    length: object = None,
) -> str | bytes:
    """Return the content of a file (UTF-8 text, or bytes if ``binary``), at most 64 MiB."""
    if not isinstance(binary, bool):
        raise BadRequest(f"binary must be true or false, not {binary!r}")
    start = _check_int("offset", offset) or 0
    want = _check_int("length", length, optional=True)
    _, target = resolve_in_root(config, path)
    try:
        st = target.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise BadRequest(f"no such file: {path!r}") from None
    except PermissionError:
        raise Refused(f"permission denied: {path!r}") from None
    if stat.S_ISDIR(st.st_mode):
        raise BadRequest(f"{path!r} is a directory, not a file (use fs.list)")
    if not stat.S_ISREG(st.st_mode):
        raise BadRequest(f"{path!r} is not a regular file")
    available = max(st.st_size - start, 0)
    count = available if want is None else min(want, available)
    if count > FS_READ_MAX:
        raise BadRequest(
            f"fs.read returns at most {FS_READ_MAX // (1024 * 1024)} MiB per call but "
            f"{path!r} has {available} bytes from offset {start}; "
            "read it in parts with offset and length",
            details={"size": st.st_size, "max": FS_READ_MAX},
        )
    try:
        with open(target, "rb") as f:
            if start:
                f.seek(start)
            data = f.read(count)
    except FileNotFoundError:
        raise BadRequest(f"no such file: {path!r}") from None
    except PermissionError:
        raise Refused(f"permission denied: {path!r}") from None
    except OSError as exc:
        raise BadRequest(f"cannot read {path!r}: {exc.strerror or exc}") from None
    if binary:
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"{path!r} is not UTF-8 text (bad byte at offset {start + exc.start}); "
            "read it with binary=True"
        ) from None


def fs_write(
    config: ToolsConfig,
    path: object,
    data: object,
    append: object = False,
    mkdirs: object = False,
) -> dict[str, Any]:
    """Write (or append) text as UTF-8 or bytes to a file and return its path and byte count."""
    if isinstance(data, str):
        payload = data.encode("utf-8")
    elif isinstance(data, bytes | bytearray):
        payload = bytes(data)
    else:
        raise BadRequest(f"data must be a string or bytes, not {type(data).__name__}")
    for name, flag in (("append", append), ("mkdirs", mkdirs)):
        if not isinstance(flag, bool):
            raise BadRequest(f"{name} must be true or false, not {flag!r}")
    root, target = resolve_in_root(config, path)
    if target == root or target.is_dir():
        raise BadRequest(f"{path!r} is a directory; name a file to write")
    parent = target.parent
    if not parent.is_dir():
        if parent.exists():
            raise BadRequest(f"cannot write {path!r}: {_rel(root, parent)!r} is not a directory")
        if not mkdirs:
            raise BadRequest(
                f"no such directory: {_rel(root, parent)!r} (pass mkdirs=true to create it)"
            )
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except PermissionError:
            raise Refused(f"permission denied creating {_rel(root, parent)!r}") from None
        except OSError as exc:
            raise BadRequest(
                f"cannot create directory {_rel(root, parent)!r}: {exc.strerror or exc}"
            ) from None
    try:
        with open(target, "ab" if append else "wb") as f:
            f.write(payload)
    except PermissionError:
        raise Refused(f"permission denied: {path!r}") from None
    except OSError as exc:
        raise BadRequest(f"cannot write {path!r}: {exc.strerror or exc}") from None
    return {"path": _rel(root, target), "bytes": len(payload)}


def fs_list(config: ToolsConfig, path: object = ".") -> list[dict[str, Any]]:
    """List a directory as ``{"name", "type", "size"}`` entries sorted by name."""
    _, target = resolve_in_root(config, path)
    entries: list[dict[str, Any]] = []
    try:
        with os.scandir(target) as it:
            for entry in it:
                size: int | None = None
                if entry.is_symlink():
                    kind = "link"
                elif entry.is_dir(follow_symlinks=False):
                    kind = "dir"
                elif entry.is_file(follow_symlinks=False):
                    kind = "file"
                    try:
                        size = entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        size = None
                else:
                    kind = "other"
                entries.append({"name": entry.name, "type": kind, "size": size})
    except FileNotFoundError:
        raise BadRequest(f"no such directory: {path!r}") from None
    except NotADirectoryError:
        raise BadRequest(f"{path!r} is not a directory (use fs.read)") from None
    except PermissionError:
        raise Refused(f"permission denied: {path!r}") from None
    except OSError as exc:
        raise BadRequest(f"cannot list {path!r}: {exc.strerror or exc}") from None
    entries.sort(key=lambda e: e["name"])
    return entries


def fs_stat(config: ToolsConfig, path: object, sha256: object = False) -> dict[str, Any]:
    """Size (and with ``sha256`` the SHA-256) of a file; ``exists`` False when missing."""
    _, target = resolve_in_root(config, path)
    if not isinstance(sha256, bool):
        raise BadRequest("'sha256' must be a boolean")
    try:
        st = target.stat()
    except FileNotFoundError:
        return {"exists": False, "size": 0, "sha256": None}
    except PermissionError:
        raise Refused(f"permission denied: {path!r}") from None
    if not stat.S_ISREG(st.st_mode):
        raise BadRequest(f"{path!r} is not a regular file")
    digest: str | None = None
    if sha256:
        h = hashlib.sha256()
        try:
            with open(target, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except PermissionError:
            raise Refused(f"permission denied: {path!r}") from None
        digest = h.hexdigest()
    return {"exists": True, "size": st.st_size, "sha256": digest}
