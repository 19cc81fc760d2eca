"""Unit tests of the built-in registry and the echo, sleep and sysinfo tools."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from operone_zmq.errors import BadRequest, Refused
from operone_zmq.tools import ToolContext, ToolRegistry, ToolsConfig, builtin_registry

BUILTINS = ["echo", "fs.list", "fs.read", "fs.stat", "fs.write", "shell", "sleep", "sysinfo"]


@pytest.fixture
def reg() -> ToolRegistry:
    return builtin_registry(ToolsConfig())


def call(reg: ToolRegistry, name: str, **args: Any) -> Any:
    ctx = ToolContext(job_id="j", node="n", config=ToolsConfig())
    return reg.get(name).prepare(args, ctx)()


def test_package_imports_neither_zmq_nor_asyncio() -> None:
    code = (
        "import sys, operone_zmq.tools\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('zmq', 'asyncio'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-P", "-c", code], check=True, timeout=30)


def test_builtin_names_and_descriptions(reg: ToolRegistry) -> None:
    assert reg.names() == BUILTINS
    assert all(d["description"] for d in reg.describe())
    assert reg.get("sleep").is_async
    assert reg.get("shell").wants_ctx
    assert not reg.get("echo").wants_ctx
    assert not reg.get("echo").is_async


def test_each_call_builds_an_independent_registry() -> None:
    a, b = builtin_registry(ToolsConfig()), builtin_registry(ToolsConfig())
    assert a.get("shell") is not b.get("shell")
    assert a.get("echo") is b.get("echo")


def test_echo_returns_arguments(reg: ToolRegistry) -> None:
    assert call(reg, "echo") == {}
    args = {"a": 1, "b": [1, 2], "c": {"d": b"x"}, "ctx": "not special here"}
    assert call(reg, "echo", **args) == args


def test_sleep(reg: ToolRegistry) -> None:
    spec = reg.get("sleep")
    ctx = ToolContext(job_id="j", node="n", config=ToolsConfig())
    t0 = time.monotonic()
    assert asyncio.run(spec.prepare({"seconds": 0.05}, ctx)()) == 0.05
    assert time.monotonic() - t0 >= 0.04
    assert asyncio.run(spec.prepare({"seconds": 0}, ctx)()) == 0


@pytest.mark.parametrize("seconds", [-1, 3600.5, float("nan"), "1", None, True])
def test_sleep_rejects_bad_seconds(reg: ToolRegistry, seconds: object) -> None:
    ctx = ToolContext(job_id="j", node="n", config=ToolsConfig())
    with pytest.raises(BadRequest, match="seconds must be a number"):
        asyncio.run(reg.get("sleep").prepare({"seconds": seconds}, ctx)())


def test_sleep_requires_seconds(reg: ToolRegistry) -> None:
    with pytest.raises(BadRequest, match="missing argument 'seconds'"):
        reg.get("sleep").prepare({}, ToolContext(job_id="j", node="n", config=ToolsConfig()))


def test_sysinfo(reg: ToolRegistry) -> None:
    info = call(reg, "sysinfo")
    for key in ("hostname", "platform", "system", "release", "machine", "python", "cpus"):
        assert key in info
    assert info["pid"] == os.getpid()
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))
    assert info["loadavg"] is None or len(info["loadavg"]) == 3
    assert isinstance(info["hostname"], str)


def test_default_config_refuses_shell_and_files(reg: ToolRegistry) -> None:
    with pytest.raises(Refused, match="not in this node's shell allow-list"):
        call(reg, "shell", argv=["echo", "hi"])
    with pytest.raises(Refused, match="no fs_root configured"):
        call(reg, "fs.read", path="x")
    with pytest.raises(Refused, match="no fs_root configured"):
        call(reg, "fs.write", path="x", data="y")
    with pytest.raises(Refused, match="no fs_root configured"):
        call(reg, "fs.list")
