"""What a worker advertises about each tool: description and parameters (READY ``signatures``)."""

from __future__ import annotations

from typing import Any

from operone_zmq.protocol.bodies import ParamInfo, Ready, ToolInfo
from operone_zmq.tools import ToolContext, tool
from operone_zmq.tools.builtin import builtin_registry
from operone_zmq.tools.registry import ToolRegistry
from operone_zmq.tools.spec import ToolsConfig


class _Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


_OPAQUE = _Opaque()


@tool(name="t.demo")
def demo(a: int, b: str = "x", c: list[str] | None = None, d: tuple[int, int] = (1, 2),
         e: Any = _OPAQUE, f=3, *, ctx: ToolContext) -> None:  # type: ignore[no-untyped-def]
    """Demonstrate parameters.

    More text that is not the description."""


def test_params_from_the_signature() -> None:
    spec = ToolRegistry([demo]).get("t.demo")
    assert spec.description == "Demonstrate parameters."
    assert spec.params == (
        ParamInfo("a", "int", True),
        ParamInfo("b", "str", False, "x"),
        ParamInfo("c", "list[str] | None", False, None),
        ParamInfo("d", "tuple[int, int]", False, [1, 2]),
        ParamInfo("e", "Any", False, "<opaque>"),
        ParamInfo("f", "any", False, 3),
    )
    assert not spec.any_args


def test_builtin_tools_as_specified_in_the_protocol_document() -> None:
    """docs/protocol.md section 5.19 lists these parameters."""
    r = builtin_registry(ToolsConfig())
    got = {i.name: [(p.name, p.type, p.required, p.default) for p in i.params or ()]
           for i in r.infos()}
    assert got == {
        "echo": [],
        "sleep": [("seconds", "float", True, None)],
        "sysinfo": [],
        "shell": [("argv", "list[str]", True, None), ("timeout", "float | None", False, None),
                  ("cwd", "str | None", False, None), ("stdin", "str | None", False, None),
                  ("env", "dict[str, str] | None", False, None)],
        "fs.read": [("path", "str", True, None), ("binary", "bool", False, False),
                    ("offset", "int", False, 0), ("length", "int | None", False, None)],
        "fs.write": [("path", "str", True, None), ("data", "str | bytes", True, None),
                     ("append", "bool", False, False), ("mkdirs", "bool", False, False)],
        "fs.list": [("path", "str", False, ".")],
        "fs.stat": [("path", "str", True, None), ("sha256", "bool", False, False)],
    }
    assert [i.name for i in r.infos() if i.any_args] == ["echo"]


def test_ready_carries_the_signatures_and_round_trips() -> None:
    infos = tuple(builtin_registry(ToolsConfig()).infos())
    ready = Ready("w1", infos, ("gpu",), 4, 1)
    assert Ready.unpack(ready.pack()) == ready


def test_ready_without_signatures_is_still_valid() -> None:
    """A worker of the first v1 revision: tools without parameters (params None)."""
    old = Ready("w1", (ToolInfo("echo", "Return the arguments unchanged."),))
    raw = old.pack()
    assert b"signatures" not in raw
    assert Ready.unpack(raw).tools[0].params is None
    mixed = Ready("w1", (ToolInfo("a", "", (ParamInfo("x"),)), ToolInfo("b")))
    back = Ready.unpack(mixed.pack())
    assert back.tools[0].params == (ParamInfo("x", "any", True),)
    assert back.tools[1].params is None


def _ready(sigs: Any) -> bytes:
    import msgpack
    return msgpack.packb({"worker": "w1", "tools": [["a", ""]], "signatures": sigs})


def test_malformed_signatures_are_protocol_errors() -> None:
    import pytest

    from operone_zmq.errors import ProtocolError
    for sigs, text in [
        ([1], "READY: 'signatures' must be a map of tool names to signatures"),
        ({"a": []}, "READY: the signature of 'a' must be a map"),
        ({"a": {"params": {}}}, "READY: 'params' of 'a' must be a list of at most 256 maps"),
        ({"a": {"params": [1]}}, "READY: each parameter must be a map"),
        ({"a": {"params": [{}]}}, "READY parameter: 'name' is required"),
        ({"a": {"params": [{"name": "x", "required": 1}]}},
         "READY parameter: 'required' must be a boolean"),
        ({"a": {"params": [{"name": "x", "type": "t" * 257}]}},
         "READY parameter: 'type' must be a string of at most 256 characters"),
        ({"a": {"kwargs": "yes"}}, "READY: 'kwargs' must be a boolean"),
    ]:
        with pytest.raises(ProtocolError) as ei:
            Ready.unpack(_ready(sigs))
        assert str(ei.value) == text
    # Signatures of tools the READY does not list are ignored.
    assert Ready.unpack(_ready({"zz": 5})).tools == (ToolInfo("a", ""),)
