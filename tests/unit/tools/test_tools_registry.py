"""Unit tests of ToolRegistry: registration, lookup and loading tool modules."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import textwrap
from pathlib import Path

import pytest

from operone_zmq.errors import ConfigError, ToolNotFound
from operone_zmq.tools import ToolContext, ToolRegistry, ToolsConfig, ToolSpec, tool

EXAMPLE_TOOLS = Path(__file__).resolve().parents[3] / "workers" / "example_tools.py"


def make_ctx() -> ToolContext:
    return ToolContext(job_id="j", node="n", config=ToolsConfig())


@tool(name="t.one")
def one() -> int:
    """Return one."""
    return 1


def plain(x: int) -> int:
    """Return x."""
    return x


def test_register_get_names_contains_len_describe() -> None:
    reg = ToolRegistry()
    assert len(reg) == 0
    spec = reg.register(one)
    assert spec.name == "t.one"
    reg.register(plain)
    reg.register(ToolSpec.from_function(lambda: 0, name="aaa", description="first"))
    assert reg.names() == ["aaa", "plain", "t.one"]
    assert len(reg) == 3
    assert "plain" in reg
    assert "nope" not in reg
    assert 3 not in reg
    assert reg.get("t.one") is spec
    assert reg.get("plain").prepare({"x": 7}, make_ctx())() == 7
    assert reg.describe() == [
        {"name": "aaa", "description": "first"},
        {"name": "plain", "description": "Return x."},
        {"name": "t.one", "description": "Return one."},
    ]


def test_duplicate_name_is_rejected() -> None:
    reg = ToolRegistry([one])
    with pytest.raises(ValueError, match="already registered"):
        reg.register(tool(name="t.one")(lambda: 2))


def test_get_unknown_tool() -> None:
    with pytest.raises(ToolNotFound, match="no tool named 'missing' on this node"):
        ToolRegistry().get("missing")


@pytest.mark.parametrize("name", [None, 5, b"t.one", ["t.one"]])
def test_get_by_a_name_that_is_not_a_str_is_tool_not_found(name: object) -> None:
    # Compiled, a parameter typed str would raise TypeError at the call.
    with pytest.raises(ToolNotFound, match="no tool named"):
        ToolRegistry([one]).get(name)


def _write(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def test_load_module_from_file(tmp_path: Path) -> None:
    mod = _write(
        tmp_path / "my-tools.py",
        '''
        from dataclasses import dataclass

        from operone_zmq.tools import ToolContext, tool


        @dataclass
        class Point:
            x: int


        @tool
        def double(n: int) -> int:
            """Double a number."""
            return 2 * n


        @tool(name="ctx.job")
        async def job(ctx: ToolContext) -> str:
            """Return the job id."""
            return ctx.job_id


        alias = double  # the same tool twice is fine


        def helper() -> None:
            """Not a tool."""
        ''',
    )
    reg = ToolRegistry()
    assert reg.load_module(str(mod)) == ["ctx.job", "double"]
    assert reg.names() == ["ctx.job", "double"]
    assert reg.get("double").prepare({"n": 4}, make_ctx())() == 8
    assert asyncio.run(reg.get("ctx.job").prepare({}, make_ctx())()) == "j"
    assert reg.get("double").description == "Double a number."


def test_load_module_by_dotted_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "operone_test_pack_" + hashlib.sha1(str(tmp_path).encode()).hexdigest()[:8]
    _write(
        tmp_path / f"{name}.py",
        """
        from operone_zmq.tools import tool

        @tool(name="pack.hello")
        def hello(who: str = "world") -> str:
            return f"hello {who}"
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        reg = ToolRegistry()
        assert reg.load_module(name) == ["pack.hello"]
        assert reg.get("pack.hello").prepare({}, make_ctx())() == "hello world"
    finally:
        sys.modules.pop(name, None)


def test_load_module_errors(tmp_path: Path) -> None:
    reg = ToolRegistry()
    with pytest.raises(ConfigError, match="does not exist"):
        reg.load_module(str(tmp_path / "missing.py"))
    with pytest.raises(ConfigError, match="cannot import tool module 'no_such_module_xyz'"):
        reg.load_module("no_such_module_xyz")
    broken = _write(tmp_path / "broken.py", "def oops(:\n")
    with pytest.raises(ConfigError, match="SyntaxError"):
        reg.load_module(str(broken))
    raising = _write(tmp_path / "raising.py", "raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match="RuntimeError: boom"):
        reg.load_module(str(raising))
    empty = _write(tmp_path / "empty.py", "def f():\n    pass\n")
    with pytest.raises(ConfigError, match="defines no tools"):
        reg.load_module(str(empty))
    with pytest.raises(ConfigError, match="defines no tools"):
        reg.load_module("json")
    assert len(reg) == 0


def test_load_module_name_clash_registers_nothing(tmp_path: Path) -> None:
    mod = _write(
        tmp_path / "clash.py",
        """
        from operone_zmq.tools import tool

        @tool(name="t.one")
        def a() -> int:
            return 1

        @tool(name="t.new")
        def b() -> int:
            return 2
        """,
    )
    reg = ToolRegistry([one])
    with pytest.raises(ConfigError, match=r"'t\.one' is already registered"):
        reg.load_module(str(mod))
    assert reg.names() == ["t.one"]


def test_example_tool_pack() -> None:
    reg = ToolRegistry()
    names = reg.load_module(str(EXAMPLE_TOOLS))
    assert {"text.wordcount", "math.fib", "hash.sha256"} <= set(names)
    ctx = make_ctx()

    def run(name: str, **args: object) -> object:
        return reg.get(name).prepare(args, ctx)()

    assert run("text.wordcount", text="a b  c\nd") == {"words": 4, "lines": 2, "chars": 8}
    assert run("math.fib", n=0) == 0
    assert run("math.fib", n=10) == 55
    with pytest.raises(ValueError):
        run("math.fib", n=-1)
    digest = hashlib.sha256(b"abc").hexdigest()
    assert run("hash.sha256", data="abc") == digest
    assert run("hash.sha256", data=b"abc") == digest
    for spec in (reg.get(n) for n in names):
        assert spec.description, spec.name


def test_example_prime_counter_progress_and_cancel() -> None:
    reg = ToolRegistry()
    reg.load_module(str(EXAMPLE_TOOLS))
    reports: list[float | None] = []
    ctx = ToolContext(
        job_id="j", node="n", config=ToolsConfig(), progress=lambda f, m: reports.append(f)
    )
    spec = reg.get("math.count_primes")
    assert spec.wants_ctx
    assert spec.prepare({"limit": 0}, ctx)() == 0
    assert spec.prepare({"limit": 100}, ctx)() == 25
    assert reports
    assert all(f is not None and 0 < f <= 1 for f in reports)
    ctx.cancelled.set()
    with pytest.raises(RuntimeError, match="cancelled"):
        spec.prepare({"limit": 1000}, ctx)()
