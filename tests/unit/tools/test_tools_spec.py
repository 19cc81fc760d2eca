"""Unit tests of the @tool decorator, ToolSpec.prepare, ToolContext and ToolsConfig."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from operone_zmq.errors import BadRequest, ConfigError
from operone_zmq.tools import ToolContext, ToolsConfig, ToolSpec, tool


def make_ctx(**kw: Any) -> ToolContext:
    return ToolContext(job_id="job-1", node="node-a", config=ToolsConfig(), **kw)


# ------------------------------------------------------------------ decorator
def test_bare_decorator_attaches_spec_and_returns_function() -> None:
    def add(a: int, b: int = 2) -> int:
        """Add two numbers.

        More text that is not part of the description.
        """
        return a + b

    decorated = tool(add)
    assert decorated is add
    spec = add.__operone_tool__  # type: ignore[attr-defined]
    assert isinstance(spec, ToolSpec)
    assert spec.name == "add"
    assert spec.description == "Add two numbers."
    assert spec.func is add
    assert spec.is_async is False
    assert spec.wants_ctx is False


def test_decorator_with_arguments() -> None:
    @tool(name="img.blur-2_x", description="Blur an image.")
    async def blur(radius: float, ctx: ToolContext) -> float:
        return radius

    spec: ToolSpec = blur.__operone_tool__  # type: ignore[attr-defined]
    assert spec.name == "img.blur-2_x"
    assert spec.description == "Blur an image."
    assert spec.is_async is True
    assert spec.wants_ctx is True
    assert inspect.iscoroutinefunction(blur)


def test_decorator_without_docstring_has_empty_description() -> None:
    @tool()
    def nodoc() -> None:
        pass

    assert nodoc.__operone_tool__.description == ""  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["", "a" * 65, "has space", "slash/name", "ünï", "x\n"])
def test_invalid_tool_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="invalid tool name"):
        tool(name=name)(lambda: None)


def test_longest_valid_name() -> None:
    assert tool(name="a" * 64)(lambda: None).__operone_tool__.name == "a" * 64  # type: ignore[attr-defined]


def test_required_positional_only_parameter_is_rejected() -> None:
    def f(a: int, /) -> int:
        return a

    with pytest.raises(ValueError, match="positional-only"):
        tool(f)


def test_inconsistent_manual_spec_is_rejected() -> None:
    def f(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="wants_ctx"):
        ToolSpec(name="f", func=f, description="", is_async=False, wants_ctx=True)


# -------------------------------------------------------------------- prepare
def _spec(func: Any) -> ToolSpec:
    return ToolSpec.from_function(func)


def test_prepare_binds_arguments_and_passes_ctx() -> None:
    seen: dict[str, Any] = {}

    def f(a: int, b: int = 10, *, ctx: ToolContext) -> int:
        seen["ctx"] = ctx
        return a + b

    ctx = make_ctx()
    call = _spec(f).prepare({"a": 1}, ctx)
    assert call() == 11
    assert seen["ctx"] is ctx
    assert _spec(f).prepare({"a": 1, "b": 2}, ctx)() == 3


def test_prepare_async_tool_returns_coroutine() -> None:
    async def f(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    call = _spec(f).prepare({"x": 21}, make_ctx())
    coro = call()
    assert inspect.iscoroutine(coro)
    assert asyncio.run(coro) == 42


def test_prepare_reports_missing_argument() -> None:
    def f(x: int, y: int = 0) -> int:
        return x

    with pytest.raises(BadRequest, match=r"tool 'f': missing argument 'x'") as info:
        _spec(f).prepare({"y": 1}, make_ctx())
    assert info.value.details["missing"] == ["x"]


def test_prepare_reports_several_problems_at_once() -> None:
    def f(a: int, b: int) -> int:
        return a

    with pytest.raises(BadRequest) as info:
        _spec(f).prepare({"c": 1, "d": 2}, make_ctx())
    msg = str(info.value)
    assert "missing arguments 'a', 'b'" in msg
    assert "unexpected arguments 'c', 'd'" in msg
    assert "it accepts 'a', 'b'" in msg


def test_prepare_reports_unexpected_argument() -> None:
    def f() -> None:
        pass

    with pytest.raises(BadRequest, match=r"unexpected argument 'y' \(it accepts no arguments\)"):
        _spec(f).prepare({"y": 1}, make_ctx())


def test_prepare_rejects_non_mapping_and_non_str_keys() -> None:
    def f(**kw: Any) -> Any:
        return kw

    spec = _spec(f)
    with pytest.raises(BadRequest, match="must be a map"):
        spec.prepare([1, 2], make_ctx())  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match="must be strings"):
        spec.prepare({1: "x"}, make_ctx())  # type: ignore[dict-item]


def test_ctx_is_reserved_when_tool_wants_it() -> None:
    def f(ctx: ToolContext) -> str:
        return ctx.job_id

    spec = _spec(f)
    assert spec.prepare({}, make_ctx())() == "job-1"
    with pytest.raises(BadRequest, match="reserved"):
        spec.prepare({"ctx": 1}, make_ctx())


def test_var_keyword_accepts_anything() -> None:
    def f(a: int, **rest: Any) -> dict[str, Any]:
        return {"a": a, **rest}

    assert _spec(f).prepare({"a": 1, "zz": 2}, make_ctx())() == {"a": 1, "zz": 2}


def test_positional_only_with_default_cannot_be_set_by_name() -> None:
    def f(a: int = 1, /, b: int = 2) -> int:
        return a + b

    spec = _spec(f)
    assert spec.prepare({"b": 5}, make_ctx())() == 6
    with pytest.raises(BadRequest, match="unexpected argument 'a'"):
        spec.prepare({"a": 5}, make_ctx())


# -------------------------------------------------------------------- context
def test_context_defaults() -> None:
    ctx = make_ctx()
    assert ctx.deadline is None
    assert isinstance(ctx.cancelled, threading.Event)
    assert not ctx.cancelled.is_set()
    ctx.progress(0.5, "half")  # the default is a no-op
    assert make_ctx().cancelled is not ctx.cancelled


def test_remaining() -> None:
    assert make_ctx().remaining(5.0) == 5.0
    assert make_ctx().remaining(-1.0) == 0.0
    ctx = make_ctx(deadline=time.monotonic() + 100.0)
    assert ctx.remaining(5.0) == 5.0
    assert 90.0 < ctx.remaining(1000.0) <= 100.0
    assert make_ctx(deadline=time.monotonic() - 1.0).remaining(5.0) == 0.0


# --------------------------------------------------------------------- config
def test_config_defaults_and_coercion(tmp_path: Path) -> None:
    cfg = ToolsConfig()
    assert cfg.shell_allow == frozenset()
    assert cfg.fs_root is None
    assert cfg.shell_timeout == 60.0
    assert cfg.max_output == 4 * 1024 * 1024
    cfg2 = ToolsConfig(shell_allow={"uname"}, fs_root=str(tmp_path))  # type: ignore[arg-type]
    assert cfg2.shell_allow == frozenset({"uname"})
    assert cfg2.fs_root == tmp_path
    with pytest.raises(AttributeError):
        cfg2.fs_root = None  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shell_allow": "uname"},
        {"shell_allow": frozenset({""})},
        {"shell_allow": frozenset({"bin/uname"})},
        {"shell_timeout": 0},
        {"shell_timeout": float("inf")},
        {"max_output": -1},
        {"fs_root": 3},
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        ToolsConfig(**kwargs)
