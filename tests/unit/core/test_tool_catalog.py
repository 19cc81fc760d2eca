"""QUERY ``tools`` with ``{"detail": true}``: the tool catalog (docs/protocol.md section 5.11)."""

from __future__ import annotations

from operone_zmq.core.tool_catalog import tool_catalog
from operone_zmq.protocol.bodies import ParamInfo, Ready, ToolInfo
from operone_zmq.tools.builtin import builtin_registry
from operone_zmq.tools.spec import ToolsConfig


def test_catalog_of_local_and_remote_tools() -> None:
    render = ToolInfo("render", "Render a scene", (ParamInfo("scene", "str"),
                                                   ParamInfo("frames", "int", False, 1)))
    old = ToolInfo("render", "older worker, no params")
    echo = ToolInfo("echo", "Return the arguments unchanged.", (), True)
    got = tool_catalog("n1", [("n1.w2", ["gpu"], [render, echo]), ("n1.w1", [], [old])],
                       {"n2": ["render", "fs.read"], "n1": ["ignored"]})
    assert got == {"node": "n1", "tools": [
        {"name": "echo", "description": "Return the arguments unchanged.", "params": [],
         "kwargs": True, "caps": ["gpu"], "workers": ["n1.w2"], "nodes": ["n1"]},
        {"name": "fs.read", "description": "", "params": None, "kwargs": False, "caps": [],
         "workers": [], "nodes": ["n2"]},
        {"name": "render", "description": "Render a scene",
         "params": [{"name": "scene", "type": "str", "required": True},
                    {"name": "frames", "type": "int", "required": False, "default": 1}],
         "kwargs": False, "caps": ["gpu"], "workers": ["n1.w1", "n1.w2"], "nodes": ["n1", "n2"]},
    ]}


def test_catalog_of_workers_that_advertise_nothing() -> None:
    got = tool_catalog("n1", [("w", [], [ToolInfo("t", "d")])])
    assert got["tools"] == [{"name": "t", "description": "d", "params": None, "kwargs": False,
                             "caps": [], "workers": ["w"], "nodes": ["n1"]}]
    assert tool_catalog("n1", []) == {"node": "n1", "tools": []}


def test_catalog_from_a_real_ready() -> None:
    """What the broker has after a worker's READY is enough to build the answer."""
    ready = Ready.unpack(Ready("n1.w1", tuple(builtin_registry(ToolsConfig()).infos()),
                               ("x",)).pack())
    got = tool_catalog("n1", [(ready.worker, ready.caps, ready.tools)])
    sleep = next(t for t in got["tools"] if t["name"] == "sleep")
    assert sleep["params"] == [{"name": "seconds", "type": "float", "required": True}]
    assert sleep["caps"] == ["x"] and sleep["workers"] == ["n1.w1"]
