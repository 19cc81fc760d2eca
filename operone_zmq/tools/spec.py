"""Tool declarations: the ``@tool`` decorator, tool specs and job context.

A *tool* is a plain Python function (sync or ``async``) that a worker runs on
behalf of a remote caller.  Its keyword arguments come from the job's argument
map; a parameter named ``ctx`` receives the :class:`ToolContext` of the job.

Compiled in the compiled build (setup.py COMPILED): a job's tool is
checked and called here (:meth:`ToolSpec.prepare`).  The node policy,
:class:`~operone_zmq.tools.config.ToolsConfig`, is in the interpreted
:mod:`operone_zmq.tools.config` and re-exported here.

This module does no I/O and imports neither ZeroMQ nor asyncio.
"""

from __future__ import annotations

import inspect
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, TypeVar, overload

from operone_zmq.errors import BadRequest
from operone_zmq.protocol.bodies import ParamInfo
from operone_zmq.tools.config import UNSAFE_EXECUTABLES, ToolsConfig, unsafe_shell_entries

__all__ = [
    "TOOL_ATTR",
    "UNSAFE_EXECUTABLES",  # (from tools/config.py)
    "ToolContext",
    "ToolSpec",
    "ToolsConfig",  # (from tools/config.py)
    "tool",
    "unsafe_shell_entries",  # (from tools/config.py)
    "validate_tool_name",
]

#: Attribute under which :func:`tool` stores the :class:`ToolSpec` of a function.
TOOL_ATTR: Final = "__operone_tool__"

_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_CTX: Final = "ctx"

F = TypeVar("F", bound=Callable[..., Any])


def validate_tool_name(name: object) -> str:
    """Return ``name`` if it is a valid tool name, else raise :class:`ValueError`."""
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise ValueError(
            f"invalid tool name {name!r}: use 1-64 characters from A-Z, a-z, 0-9, '_', '.' and '-'"
        )
    return name


# -------------------------------------------------------------------- context
def _no_progress(fraction: float | None, message: str | None) -> None:
    """Ignore a progress report."""


def _no_stream(stream: str, data: str) -> None:
    """Ignore streamed output."""


# (init=False and an __init__ of its own: a worker makes one per job, and
# compiled by mypyc a dataclass's generated __init__ stays interpreted, 6x
# the cost; in pure Python they are alike.)
@dataclass(init=False)
class ToolContext:
    """What a running tool may know about its job: ids, node policy, deadline, progress, cancel."""

    job_id: str
    node: str
    config: ToolsConfig
    #: ``time.monotonic()`` value by which the job must finish, or ``None``.
    deadline: float | None
    #: Report progress: ``progress(fraction 0..1 or None, message or None)``.
    progress: Callable[[float | None, str | None], None]
    #: Set when the job is cancelled or timed out; long sync tools should check it.
    cancelled: threading.Event
    #: Send output while running: ``stream("stdout" or "stderr", text)``; a
    #: no-op unless the submitter asked for streaming.
    stream: Callable[[str, str], None]

    def __init__(self, job_id: str, node: str, config: ToolsConfig,
                 deadline: float | None = None,
                 progress: Callable[[float | None, str | None], None] = _no_progress,
                 cancelled: threading.Event | None = None,
                 stream: Callable[[str, str], None] = _no_stream) -> None:
        """``cancelled``: a new :class:`threading.Event` when not given."""
        self.job_id = job_id
        self.node = node
        self.config = config
        self.deadline = deadline
        self.progress = progress
        self.cancelled = threading.Event() if cancelled is None else cancelled
        self.stream = stream

    def remaining(self, default: float) -> float:
        """Return the seconds left before the deadline, at most ``default`` and never below 0."""
        if self.deadline is None:
            return max(default, 0.0)
        return max(0.0, min(default, self.deadline - time.monotonic()))


# ----------------------------------------------------------------------- spec
def _first_doc_line(func: Callable[..., Any]) -> str:
    doc = inspect.getdoc(func)
    if not doc:
        return ""
    for line in doc.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _plural(word: str, names: list[str]) -> str:
    quoted = ", ".join(repr(n) for n in names)
    return f"{word} {quoted}" if len(names) == 1 else f"{word}s {quoted}"


_SCALARS: Final = (type(None), bool, int, float, str)


def _plain_default(value: Any) -> Any:
    """The default of an optional argument as READY carries it: a plain
    value (None, bool, int, float, str, or a list of those), else its repr."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, _SCALARS) for v in value):
        return list(value)
    return repr(value)


def _annotation_text(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return "any"
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _params_of(func: Callable[..., Any]) -> tuple[ParamInfo, ...]:
    out: list[ParamInfo] = []
    for p in inspect.signature(func).parameters.values():
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL, p.POSITIONAL_ONLY) or p.name == _CTX:
            continue
        if p.default is p.empty:
            out.append(ParamInfo(p.name, _annotation_text(p.annotation), True))
        else:
            out.append(ParamInfo(p.name, _annotation_text(p.annotation), False,
                                 _plain_default(p.default)))
    return tuple(out)


@dataclass(frozen=True)
class ToolSpec:
    """A named tool: its function, description and how to call it."""

    name: str
    func: Callable[..., Any]
    description: str
    is_async: bool
    wants_ctx: bool
    #: A cheap, non-blocking sync tool: the worker runs it right in its
    #: receive loop (no thread hop).  Only for tools that return in microseconds.
    inline: bool = False
    # Precomputed from the signature so that ``prepare`` is cheap.
    _accepted: frozenset[str] = field(init=False, repr=False, compare=False)
    _required: frozenset[str] = field(init=False, repr=False, compare=False)
    _var_keyword: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate_tool_name(self.name)
        if not callable(self.func):
            raise TypeError(f"tool {self.name!r}: {self.func!r} is not callable")
        try:
            sig = inspect.signature(self.func)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"tool {self.name!r}: cannot read its signature: {exc}") from exc
        accepted: set[str] = set()
        required: set[str] = set()
        var_keyword = False
        has_ctx = False
        for p in sig.parameters.values():
            if p.kind is p.VAR_KEYWORD:
                var_keyword = True
            elif p.kind is p.VAR_POSITIONAL:
                continue
            elif p.name == _CTX:
                if p.kind is p.POSITIONAL_ONLY:
                    raise ValueError(
                        f"tool {self.name!r}: parameter 'ctx' must not be positional-only"
                    )
                has_ctx = True
            elif p.kind is p.POSITIONAL_ONLY:
                if p.default is p.empty:
                    raise ValueError(
                        f"tool {self.name!r}: parameter {p.name!r} is positional-only and "
                        "required, but tool arguments are passed by name"
                    )
            else:
                accepted.add(p.name)
                if p.default is p.empty:
                    required.add(p.name)
        if has_ctx != self.wants_ctx:
            raise ValueError(
                f"tool {self.name!r}: wants_ctx={self.wants_ctx} but the function "
                f"{'has' if has_ctx else 'has no'} 'ctx' parameter"
            )
        object.__setattr__(self, "_accepted", frozenset(accepted))
        object.__setattr__(self, "_required", frozenset(required))
        object.__setattr__(self, "_var_keyword", var_keyword)

    @property
    def params(self) -> tuple[ParamInfo, ...]:
        """The arguments the tool accepts by name, in signature order (not ``ctx``).

        Positional-only parameters with a default are left out (arguments
        come by name, so they always take their default)."""
        return _params_of(self.func)

    @property
    def any_args(self) -> bool:
        """True when the tool takes any other keyword argument (``**kwargs``)."""
        return self._var_keyword

    @classmethod
    def from_function(
        cls,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        inline: bool = False,
    ) -> ToolSpec:
        """Build the spec of ``func``, defaulting to its ``__name__`` and first docstring line."""
        if not callable(func):
            raise TypeError(f"@tool needs a function, not {func!r}")
        if name is None:
            name = getattr(func, "__name__", None)
            if not isinstance(name, str):
                raise ValueError(f"cannot name tool {func!r}: pass name=...")
        try:
            params = inspect.signature(func).parameters
        except (TypeError, ValueError) as exc:
            raise ValueError(f"tool {name!r}: cannot read its signature: {exc}") from exc
        return cls(
            name=validate_tool_name(name),
            func=func,
            description=_first_doc_line(func) if description is None else description,
            is_async=inspect.iscoroutinefunction(func),
            wants_ctx=_CTX in params and params[_CTX].kind is not inspect.Parameter.VAR_KEYWORD,
            inline=inline,
        )

    def prepare(self, args: Mapping[str, Any], ctx: ToolContext) -> Callable[[], Any]:
        """Check ``args`` against the signature and return a zero-argument call of the tool.

        Calling the result runs a sync tool, or returns the coroutine of an
        async tool.  Raises :class:`BadRequest` naming the tool and every
        missing or unexpected argument.
        """
        # (The exact type first: an ABC isinstance costs a microsecond a job.)
        if type(args) is not dict and not isinstance(args, Mapping):
            raise BadRequest(
                f"arguments of tool {self.name!r} must be a map of argument names to values, "
                f"not {type(args).__name__}",
                details={"tool": self.name},
            )
        # (Keys as objects: compiled, iterating a Mapping[str, Any] checks
        # each key is a str, a TypeError before the check below.)
        keys: Iterable[object] = args
        for key in keys:
            if not isinstance(key, str):
                raise BadRequest(
                    f"argument names of tool {self.name!r} must be strings, not {key!r}",
                    details={"tool": self.name},
                )
        if self.wants_ctx and _CTX in args:
            raise BadRequest(
                f"tool {self.name!r}: argument name 'ctx' is reserved for the job context",
                details={"tool": self.name, "unexpected": [_CTX]},
            )
        missing = self._required.difference(args)
        unexpected = () if self._var_keyword else [k for k in args if k not in self._accepted]
        if missing or unexpected:
            problems: list[str] = []
            if missing:
                problems.append(_plural("missing argument", sorted(missing)))
            if unexpected:
                accepts = ", ".join(repr(n) for n in sorted(self._accepted)) or "no arguments"
                problems.append(
                    f"{_plural('unexpected argument', sorted(unexpected))} (it accepts {accepts})"
                )
            raise BadRequest(
                f"tool {self.name!r}: " + "; ".join(problems),
                details={
                    "tool": self.name,
                    "missing": sorted(missing),
                    "unexpected": sorted(unexpected),
                },
            )
        if self.wants_ctx:
            return partial(self.func, **args, ctx=ctx)
        return partial(self.func, **args)


# ------------------------------------------------------------------ decorator
@overload
def tool(func: F, /) -> F: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None, inline: bool = False
) -> Callable[[F], F]: ...


def tool(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    inline: bool = False,
) -> F | Callable[[F], F]:
    """Mark a function as a tool (``@tool`` or ``@tool(name=..., description=...)``).

    ``inline=True`` declares a sync tool so cheap that the worker may run it
    in its receive loop instead of a thread; an async tool cannot be inline.
    """

    def decorate(f: F) -> F:
        spec = ToolSpec.from_function(f, name=name, description=description, inline=inline)
        if spec.is_async and inline:
            raise ValueError(f"tool {spec.name!r}: an async tool cannot be inline")
        setattr(f, TOOL_ATTR, spec)
        return f

    if func is None:
        return decorate
    return decorate(func)
