"""The tool registry of a worker: tools by name, and loading tool modules.

A tool module is any Python module (a dotted module name or a ``.py`` file)
whose functions are decorated with :func:`operone_zmq.tools.tool`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from operone_zmq.errors import ConfigError, ToolNotFound
from operone_zmq.protocol.bodies import ToolInfo
from operone_zmq.tools.spec import TOOL_ATTR, ToolSpec

__all__ = ["ToolRegistry"]


def _spec_of(obj: ToolSpec | Callable[..., Any]) -> ToolSpec:
    if isinstance(obj, ToolSpec):
        return obj
    spec = getattr(obj, TOOL_ATTR, None)
    if isinstance(spec, ToolSpec):
        return spec
    return ToolSpec.from_function(obj)


def _looks_like_path(ref: str) -> bool:
    return (
        ref.endswith(".py")
        or os.sep in ref
        or (os.altsep is not None and os.altsep in ref)
        or ref.startswith("~")
    )


def _import_file(ref: str) -> ModuleType:
    path = Path(ref).expanduser()
    if not path.is_file():
        raise ConfigError(f"tool module file {ref!r} does not exist")
    if path.suffix != ".py":
        raise ConfigError(f"tool module file {ref!r} is not a .py file")
    path = path.resolve()
    digest = hashlib.sha1(str(path).encode("utf-8", "surrogateescape")).hexdigest()[:10]
    stem = re.sub(r"\W", "_", path.stem)
    mod_name = f"_operone_tools_{stem}_{digest}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import tool module {ref!r}: not a loadable Python file")
    module = importlib.util.module_from_spec(spec)
    # Registered before running it so that dataclasses, pickling etc. work inside.
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(mod_name, None)
        raise ConfigError(
            f"cannot import tool module {ref!r}: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _import_dotted(ref: str) -> ModuleType:
    try:
        return importlib.import_module(ref)
    except (Exception, SystemExit) as exc:
        raise ConfigError(
            f"cannot import tool module {ref!r}: {type(exc).__name__}: {exc}"
        ) from exc


class ToolRegistry:
    """The tools a worker offers, by name."""

    def __init__(self, tools: Iterable[ToolSpec | Callable[..., Any]] = ()) -> None:
        self._tools: dict[str, ToolSpec] = {}
        for t in tools:
            self.register(t)

    def register(self, spec_or_func: ToolSpec | Callable[..., Any]) -> ToolSpec:
        """Add a tool (a spec, an ``@tool`` function or a plain function) and return its spec."""
        spec = _spec_of(spec_or_func)
        if spec.name in self._tools:
            raise ValueError(f"a tool named {spec.name!r} is already registered")
        self._tools[spec.name] = spec
        return spec

    def get(self, name: object) -> ToolSpec:
        """Return the spec of tool ``name`` or raise :class:`ToolNotFound`
        (a name that is not a str included: compiled, a ``str`` parameter
        would raise TypeError at the call instead)."""
        spec = self._tools.get(name) if type(name) is str else None
        if spec is None:
            raise ToolNotFound(f"no tool named {name!r} on this node")
        return spec

    def names(self) -> list[str]:
        """Return the registered tool names, sorted."""
        return sorted(self._tools)

    def __contains__(self, name: object) -> bool:
        """Tell whether a tool of that name is registered."""
        return isinstance(name, str) and name in self._tools

    def __len__(self) -> int:
        """Return the number of registered tools."""
        return len(self._tools)

    def describe(self) -> list[dict[str, str]]:
        """Return ``[{"name", "description"}, ...]`` for every tool, sorted by name."""
        return [{"name": n, "description": self._tools[n].description} for n in sorted(self._tools)]

    def infos(self) -> list[ToolInfo]:
        """What a worker advertises in READY: every tool's name, description,
        parameters and whether it takes any keyword (``**kwargs``), sorted by name."""
        return [
            ToolInfo(n, s.description, s.params, s.any_args)
            for n, s in sorted(self._tools.items())
        ]

    def load_module(self, ref: str) -> list[str]:
        """Import a tool module (dotted name or ``.py`` path), register its tools, return names.

        Raises :class:`ConfigError` if the module cannot be imported, defines
        no tools, or defines a tool whose name is already registered; in that
        case nothing is registered.
        """
        if not isinstance(ref, str) or not ref.strip():
            raise ConfigError(f"invalid tool module reference {ref!r}")
        module = _import_file(ref) if _looks_like_path(ref) else _import_dotted(ref)
        found: dict[str, ToolSpec] = {}
        for value in list(vars(module).values()):
            spec = getattr(value, TOOL_ATTR, None) if callable(value) else None
            if not isinstance(spec, ToolSpec):
                continue
            other = found.get(spec.name)
            if other is not None and other is not spec:
                raise ConfigError(f"tool module {ref!r} defines two tools named {spec.name!r}")
            found[spec.name] = spec
        if not found:
            raise ConfigError(
                f"tool module {ref!r} defines no tools "
                "(decorate its functions with @operone_zmq.tools.tool)"
            )
        clashes = sorted(n for n in found if n in self._tools)
        if clashes:
            raise ConfigError(
                f"tool module {ref!r}: "
                + ", ".join(repr(n) for n in clashes)
                + (" is" if len(clashes) == 1 else " are")
                + " already registered on this node"
            )
        self._tools.update(found)
        return sorted(found)
