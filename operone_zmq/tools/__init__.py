"""Tools: the functions a worker runs for remote callers, and the built-in tool set.

Write a tool with :func:`tool`, collect tools in a :class:`ToolRegistry`
(``load_module`` imports a tool module by dotted name or ``.py`` path) and
get the built-ins from :func:`builtin_registry`.  This package imports
neither ZeroMQ nor asyncio, so tool modules stay cheap to import and test.
"""

from __future__ import annotations

from operone_zmq.tools.builtin import builtin_registry
from operone_zmq.tools.registry import ToolRegistry
from operone_zmq.tools.spec import ToolContext, ToolsConfig, ToolSpec, tool

__all__ = ["ToolContext", "ToolRegistry", "ToolSpec", "ToolsConfig", "builtin_registry", "tool"]
