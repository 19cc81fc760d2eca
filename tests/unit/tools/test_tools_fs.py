"""Unit tests of the fs.read, fs.write and fs.list built-ins and their confinement to fs_root."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from operone_zmq.errors import BadRequest, PathOutsideRoot, Refused
from operone_zmq.tools import ToolContext, ToolsConfig, builtin_registry
from operone_zmq.tools import fs as fs_module

needs_symlinks = pytest.mark.skipif(
    not hasattr(os, "symlink") or os.name == "nt", reason="needs POSIX symlinks"
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    (r / "hello.txt").write_text("héllo\nworld\n", encoding="utf-8")
    (r / "sub").mkdir()
    (r / "sub" / "data.bin").write_bytes(bytes(range(256)))
    (tmp_path / "secret.txt").write_text("top secret", encoding="utf-8")
    return r


def call(root: Path | None, name: str, **args: Any) -> Any:
    cfg = ToolsConfig(fs_root=root)
    ctx = ToolContext(job_id="j", node="n", config=cfg)
    return builtin_registry(cfg).get(name).prepare(args, ctx)()


# ----------------------------------------------------------------------- read
def test_read_text_and_binary(root: Path) -> None:
    assert call(root, "fs.read", path="hello.txt") == "héllo\nworld\n"
    assert call(root, "fs.read", path="sub/data.bin", binary=True) == bytes(range(256))
    assert call(root, "fs.read", path="./sub/../hello.txt") == "héllo\nworld\n"


def test_read_offset_and_length(root: Path) -> None:
    data = call(root, "fs.read", path="sub/data.bin", binary=True, offset=250, length=3)
    assert data == bytes([250, 251, 252])
    assert call(root, "fs.read", path="sub/data.bin", binary=True, offset=254) == b"\xfe\xff"
    assert call(root, "fs.read", path="sub/data.bin", binary=True, offset=999) == b""
    assert call(root, "fs.read", path="hello.txt", length=0) == ""


def test_read_absolute_path_inside_root(root: Path) -> None:
    assert call(root, "fs.read", path=str(root / "hello.txt")).startswith("héllo")


def test_read_errors(root: Path) -> None:
    with pytest.raises(BadRequest, match=r"no such file: 'nope\.txt'"):
        call(root, "fs.read", path="nope.txt")
    with pytest.raises(BadRequest, match="no such file"):
        call(root, "fs.read", path="hello.txt/inner")
    with pytest.raises(BadRequest, match="is a directory"):
        call(root, "fs.read", path="sub")
    with pytest.raises(BadRequest, match=r"not UTF-8 text.*binary=True"):
        call(root, "fs.read", path="sub/data.bin")
    with pytest.raises(BadRequest, match="offset must be"):
        call(root, "fs.read", path="hello.txt", offset=-1)
    with pytest.raises(BadRequest, match="length must be"):
        call(root, "fs.read", path="hello.txt", length="3")
    with pytest.raises(BadRequest, match="binary must be"):
        call(root, "fs.read", path="hello.txt", binary="yes")
    with pytest.raises(BadRequest, match="path must be a string"):
        call(root, "fs.read", path=["hello.txt"])
    with pytest.raises(BadRequest, match="NUL"):
        call(root, "fs.read", path="hello\0.txt")


def test_read_size_cap(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fs_module, "FS_READ_MAX", 100)
    with pytest.raises(BadRequest, match="offset and length"):
        call(root, "fs.read", path="sub/data.bin", binary=True)
    assert len(call(root, "fs.read", path="sub/data.bin", binary=True, length=100)) == 100
    assert len(call(root, "fs.read", path="sub/data.bin", binary=True, offset=200)) == 56


# ----------------------------------------------------------------- confinement
@pytest.mark.parametrize(
    "path", ["../secret.txt", "sub/../../secret.txt", "..", "sub/../..", "nope/../../secret.txt"]
)
def test_dotdot_escape_is_refused(root: Path, path: str) -> None:
    with pytest.raises(PathOutsideRoot, match="escapes the node's file root"):
        call(root, "fs.read", path=path)
    with pytest.raises(PathOutsideRoot):
        call(root, "fs.write", path=path, data="x")
    with pytest.raises(PathOutsideRoot):
        call(root, "fs.list", path=path)
    assert (root.parent / "secret.txt").read_text() == "top secret"


def test_absolute_path_outside_root_is_refused(root: Path) -> None:
    outside = str(root.parent / "secret.txt")
    with pytest.raises(PathOutsideRoot, match="escapes"):
        call(root, "fs.read", path=outside)
    with pytest.raises(PathOutsideRoot):
        call(root, "fs.write", path=str(root.parent / "new.txt"), data="x")
    assert not (root.parent / "new.txt").exists()
    with pytest.raises(PathOutsideRoot):
        call(root, "fs.list", path=os.path.abspath(os.sep))


def test_sibling_with_common_prefix_is_outside(root: Path) -> None:
    sibling = root.parent / "root2"
    sibling.mkdir()
    (sibling / "f").write_text("x")
    with pytest.raises(PathOutsideRoot):
        call(root, "fs.read", path="../root2/f")
    with pytest.raises(PathOutsideRoot):
        call(root, "fs.read", path=str(sibling / "f"))


@needs_symlinks
def test_symlink_escapes_are_refused(root: Path) -> None:
    (root / "to_secret").symlink_to(root.parent / "secret.txt")
    (root / "to_parent").symlink_to(root.parent, target_is_directory=True)
    (root / "dangling_out").symlink_to(root.parent / "created-by-attacker.txt")
    with pytest.raises(PathOutsideRoot):
        call(root, "fs.read", path="to_secret")
    with pytest.raises(PathOutsideRoot):
        call(root, "fs.read", path="to_parent/secret.txt")
    with pytest.raises(PathOutsideRoot):
        call(root, "fs.list", path="to_parent")
    with pytest.raises(PathOutsideRoot):
        call(root, "fs.write", path="to_secret", data="pwned")
    with pytest.raises(PathOutsideRoot):
        call(root, "fs.write", path="to_parent/x.txt", data="pwned", mkdirs=True)
    with pytest.raises(PathOutsideRoot):
        call(root, "fs.write", path="dangling_out", data="pwned")
    assert (root.parent / "secret.txt").read_text() == "top secret"
    assert not (root.parent / "created-by-attacker.txt").exists()
    assert not (root.parent / "x.txt").exists()


@needs_symlinks
def test_symlinks_inside_root_are_followed(root: Path) -> None:
    (root / "alias.txt").symlink_to("hello.txt")
    (root / "subalias").symlink_to("sub", target_is_directory=True)
    assert call(root, "fs.read", path="alias.txt") == "héllo\nworld\n"
    assert [e["name"] for e in call(root, "fs.list", path="subalias")] == ["data.bin"]
    res = call(root, "fs.write", path="subalias/new.txt", data="n")
    assert res == {"path": "sub/new.txt", "bytes": 1}


@needs_symlinks
def test_root_given_through_a_symlink(root: Path) -> None:
    link = root.parent / "rootlink"
    link.symlink_to(root, target_is_directory=True)
    assert call(link, "fs.read", path="hello.txt").startswith("héllo")
    assert call(link, "fs.read", path=str(link / "hello.txt")).startswith("héllo")
    with pytest.raises(PathOutsideRoot):
        call(link, "fs.read", path="../secret.txt")


def test_root_that_is_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(Refused, match="not a directory"):
        call(tmp_path / "missing", "fs.list")
    with pytest.raises(Refused, match="no fs_root configured"):
        call(None, "fs.list")


# ---------------------------------------------------------------------- write
def test_write_text_bytes_append(root: Path) -> None:
    assert call(root, "fs.write", path="out.txt", data="é") == {"path": "out.txt", "bytes": 2}
    assert call(root, "fs.write", path="out.txt", data=b"\x00\x01", append=True) == {
        "path": "out.txt",
        "bytes": 2,
    }
    assert (root / "out.txt").read_bytes() == "é".encode() + b"\x00\x01"
    call(root, "fs.write", path="out.txt", data="new")
    assert (root / "out.txt").read_text() == "new"
    abs_res = call(root, "fs.write", path=str(root / "sub" / "abs.txt"), data="")
    assert abs_res == {"path": "sub/abs.txt", "bytes": 0}


def test_write_mkdirs(root: Path) -> None:
    with pytest.raises(BadRequest, match=r"no such directory: 'a/b'.*mkdirs"):
        call(root, "fs.write", path="a/b/c.txt", data="x")
    assert not (root / "a").exists()
    res = call(root, "fs.write", path="a/b/c.txt", data="x", mkdirs=True)
    assert res == {"path": "a/b/c.txt", "bytes": 1}
    assert (root / "a" / "b" / "c.txt").read_text() == "x"


def test_write_errors(root: Path) -> None:
    with pytest.raises(BadRequest, match="is a directory"):
        call(root, "fs.write", path="sub", data="x")
    with pytest.raises(BadRequest, match="is a directory"):
        call(root, "fs.write", path=".", data="x")
    with pytest.raises(BadRequest, match="not a directory"):
        call(root, "fs.write", path="hello.txt/x", data="x", mkdirs=True)
    with pytest.raises(BadRequest, match="data must be"):
        call(root, "fs.write", path="x", data=5)
    with pytest.raises(BadRequest, match="append must be"):
        call(root, "fs.write", path="x", data="", append=1)
    with pytest.raises(BadRequest, match="missing argument 'data'"):
        call(root, "fs.write", path="x")


# ----------------------------------------------------------------------- list
def test_list(root: Path) -> None:
    (root / "b.txt").write_bytes(b"12345")
    entries = call(root, "fs.list")
    assert entries == [
        {"name": "b.txt", "type": "file", "size": 5},
        {"name": "hello.txt", "type": "file", "size": len("héllo\nworld\n".encode())},
        {"name": "sub", "type": "dir", "size": None},
    ]
    assert call(root, "fs.list", path="sub") == [{"name": "data.bin", "type": "file", "size": 256}]
    assert call(root, "fs.list", path=str(root)) == entries


@needs_symlinks
def test_list_reports_links_without_following(root: Path) -> None:
    (root / "sub" / "out").symlink_to(root.parent, target_is_directory=True)
    names = {e["name"]: e for e in call(root, "fs.list", path="sub")}
    assert names["out"] == {"name": "out", "type": "link", "size": None}


def test_list_errors(root: Path) -> None:
    with pytest.raises(BadRequest, match="no such directory: 'nope'"):
        call(root, "fs.list", path="nope")
    with pytest.raises(BadRequest, match="not a directory"):
        call(root, "fs.list", path="hello.txt")
