"""Bodies of the v1 message types: msgpack maps, strictly validated.

Each body type is a frozen dataclass with ``pack() -> bytes`` and a strict
``unpack(bytes)`` classmethod.  Known keys are type-checked; unknown keys are
ignored so that a newer peer may add optional fields (docs/protocol.md,
"Versioning").  Missing required keys, wrong types and out-of-range values
raise :class:`~operone_zmq.errors.ProtocolError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack

from ..errors import ProtocolError
from .frame import Frame
from .limits import ENVELOPE_THRESHOLD as _ENVELOPE_THRESHOLD
from .limits import (
    EXT_BIGINT,
    MAX_BIGINT_BYTES,
    MAX_BODY_CONTAINERS,
    MAX_CAPABILITIES,
    MAX_CONTAINER_LEN,
    MAX_ID_LEN,
    MAX_JOB_ARGS,
    MAX_JOB_TIMEOUT,
    MAX_TOOLS_PER_WORKER,
)

__all__ = [
    "MAX_LSAS_PER_MESSAGE",
    "Bye",
    "Cancel",
    "Disconnect",
    "ErrorBody",
    "Heartbeat",
    "Hello",
    "JobRequest",
    "ParamInfo",
    "Ping",
    "Progress",
    "Query",
    "Ready",
    "ResultBody",
    "ToolInfo",
    "Welcome",
    "pack_lsas",
    "pack_value",
    "unpack_lsas",
    "unpack_map",
    "unpack_value",
]

# msgpack.packb, not a shared Packer: a Packer keeps a buffer and is not
# safe to share between the threads of a worker pool.
_packb: Final[Callable[..., bytes]] = msgpack.packb
_unpackb_msgpack: Final[Callable[..., Any]] = msgpack.unpackb

# ------------------------------------------------------------ big integers
# msgpack integers stop at uint64 / int64.  A Python int beyond that travels
# as the extension type EXT_BIGINT whose data is the integer in signed
# big-endian two's complement, shortest form (docs/protocol.md, section 5.2).
_INT_MIN: Final = -(1 << 63)
_INT_MAX: Final = (1 << 64) - 1


def bigint_to_bytes(value: int) -> bytes:
    """The EXT_BIGINT data of ``value``: signed big-endian two's complement, shortest form."""
    n = (value if value >= 0 else ~value).bit_length() // 8 + 1
    return value.to_bytes(n, "big", signed=True)


def bigint_from_bytes(data: bytes) -> int:
    """The integer of EXT_BIGINT data (any length from 1 to MAX_BIGINT_BYTES)."""
    if not 0 < len(data) <= MAX_BIGINT_BYTES:
        raise ValueError(
            f"{_BIGINT_TEXT} 1..{MAX_BIGINT_BYTES} bytes, got {len(data)}"
        )
    return int.from_bytes(data, "big", signed=True)


def _default(obj: Any) -> Any:
    """msgpack's fallback encoder: integers beyond 64 bits become EXT_BIGINT."""
    if type(obj) is int and not _INT_MIN <= obj <= _INT_MAX:
        data = bigint_to_bytes(obj)
        if len(data) > MAX_BIGINT_BYTES:
            raise ValueError(
                f"integer of {obj.bit_length()} bits is beyond the "
                f"{MAX_BIGINT_BYTES * 8}-bit limit of the big integer extension"
            )
        return msgpack.ExtType(EXT_BIGINT, data)
    raise TypeError(f"cannot serialize {type(obj).__name__} object")


def _ext_hook(code: int, data: bytes) -> Any:
    """msgpack's extension decoder: EXT_BIGINT becomes an int; other codes stay ExtType."""
    if code == EXT_BIGINT:
        return bigint_from_bytes(data)
    return msgpack.ExtType(code, data)


class _TooLong(ValueError):
    """A container longer than MAX_CONTAINER_LEN that the data could hold."""


class _TooMany(ValueError):
    """More than MAX_BODY_CONTAINERS arrays and maps in one body."""


def _container_budget() -> Callable[[Any], Any]:
    """A list_hook / object_hook for msgpack that counts the containers
    built and stops the decode past MAX_BODY_CONTAINERS."""
    left = MAX_BODY_CONTAINERS

    def count(x: Any) -> Any:
        nonlocal left
        left -= 1
        if left < 0:
            raise _TooMany(WHY_TOO_MANY)
        return x

    return count


def _too_long(exc: ValueError, size: int) -> ValueError:
    """``exc`` (msgpack's "N exceeds max_array_len(M)") as _TooLong when the
    data could really hold N elements; a length beyond the data stays what it
    was (the data ends too early)."""
    head = str(exc).split(" ", 1)[0]
    if head.isdigit() and int(head) <= size and " exceeds max_" in str(exc):
        return _TooLong(str(exc))
    return exc


def _unpackb(raw: Frame, strict_map_key: bool) -> Any:
    # Container lengths are checked at each container's header, before any
    # allocation (limits.MAX_CONTAINER_LEN); strings and bins are bounded by
    # the frame itself.
    # unpackb's own limits are len(raw): below MAX_CONTAINER_LEN bytes no
    # container can pass it, and the call stays as cheap as it was.
    try:
        if len(raw) <= MAX_CONTAINER_LEN:
            return _unpackb_msgpack(raw, raw=False, strict_map_key=strict_map_key,
                                    ext_hook=_ext_hook)
        # Bigger bodies could hold more containers than MAX_BODY_CONTAINERS:
        # count them as they are built (one call per container; bins and
        # strings cost nothing).
        count = _container_budget()
        return _unpackb_msgpack(raw, raw=False, strict_map_key=strict_map_key,
                                ext_hook=_ext_hook, max_array_len=MAX_CONTAINER_LEN,
                                max_map_len=MAX_CONTAINER_LEN, list_hook=count,
                                object_hook=count)
    except ValueError as exc:
        raise _too_long(exc, len(raw)) from None


def _unpack_envelope(raw: Frame) -> dict[str, Any]:
    """A JOB body's top-level map with each ``args`` value stepped over in C
    (never built; its names are checked): ``args`` is returned as ``{}``."""
    u = msgpack.Unpacker(None, raw=False, strict_map_key=False, ext_hook=_ext_hook,
                         max_buffer_size=len(raw), max_array_len=MAX_CONTAINER_LEN,
                         max_map_len=MAX_CONTAINER_LEN)
    u.feed(raw)
    m: dict[str, Any] = {}
    try:
        _read_envelope(u, m)
    except ValueError as exc:
        raise _too_long(exc, len(raw)) from None
    return m


# The common big JOB body, {"tool", "args"(, "timeout")} (what the clients
# send), read as an envelope without a copy: msgspec steps over each value
# and hands it back as a view (msgspec.Raw) of the body; only "tool" and
# "timeout" are decoded.  msgpack's Unpacker first copies the whole body
# into its own buffer (a 64 KiB body: 16 us against 1.5 us).  Anything
# else, or anything refused, goes the way below, which says why.
_raw_map: Callable[[Any], dict[str, Any]] | None
_small: Callable[[Any], Any] | None
#: msgspec's encoder, for the bodies of plain values (see pack_body).
_fast_encode: Callable[[Any], bytes] | None
try:
    import msgspec
except ImportError:  # pragma: no cover - msgspec is a dependency; this is a fallback
    _raw_map = _small = _fast_encode = None
else:
    _raw_map = msgspec.msgpack.Decoder(dict[str, msgspec.Raw]).decode
    _small = msgspec.msgpack.Decoder().decode
    _fast_encode = msgspec.msgpack.Encoder().encode
_ENVELOPE_KEYS: Final = (frozenset({"tool", "args"}), frozenset({"tool", "args", "timeout"}))


def _fast_envelope(raw: Frame) -> JobRequest | None:
    """The JobRequest of a common JOB body read as an envelope, or None when
    the body is anything else (then the Unpacker way decides)."""
    if _raw_map is None or _small is None or len(raw) > MAX_CONTAINER_LEN:
        # (Bigger bodies may hold containers past MAX_CONTAINER_LEN, which
        # only the Unpacker way refuses.)
        return None
    try:
        top = _raw_map(raw)
        # A fixmap of as many entries as were kept: no key twice (the way
        # below checks every "args" it meets).
        if top.keys() not in _ENVELOPE_KEYS or raw[0] != 0x80 | len(top):
            return None
        nargs = len(_raw_map(top["args"]))
        tool = _small(top["tool"])
        timeout = _small(top["timeout"]) if "timeout" in top else None
    except Exception:  # not this shape: the way below says what is wrong
        return None
    if (type(tool) is not str or not 0 < len(tool) <= MAX_ID_LEN or nargs > MAX_JOB_ARGS
            or (timeout is not None
                and (type(timeout) is not float or not 0.0 < timeout <= MAX_JOB_TIMEOUT))):
        return None
    return JobRequest(tool, {}, timeout, args_skipped=True)


def _read_envelope(u: msgpack.Unpacker, m: dict[str, Any]) -> None:
    n = u.read_map_header()
    for _ in range(n):
        k = u.unpack()
        if type(k) is not str:
            raise ProtocolError("JOB body must be a msgpack map with string keys")
        if k == "args":
            nargs = u.read_map_header()  # raises unless a map
            if nargs > MAX_JOB_ARGS:
                raise ProtocolError(f"JOB: more than {MAX_JOB_ARGS} arguments")
            for _ in range(nargs):
                if type(u.unpack()) is not str:
                    raise ProtocolError("JOB: argument names must be strings")
                u.skip()
            m["args"] = {}
        else:
            m[k] = u.unpack()
    try:
        u.unpack()
    except msgpack.OutOfData:
        return
    raise msgpack.ExtraData(m, b"")


#: The reasons a ``... is not valid msgpack: <reason>`` error gives, the same
#: whichever msgpack library a peer uses (docs/protocol.md, section 5.2).
WHY_TRUNCATED: Final = "the data ends too early"
WHY_EXTRA: Final = "extra bytes after the value"
WHY_UTF8: Final = "a string is not valid UTF-8"
WHY_MAP_KEY: Final = "a map key is not a string"
WHY_DEPTH: Final = "nested too deeply"
WHY_MALFORMED: Final = "malformed data"
WHY_TOO_LONG: Final = f"an array or map has more than {MAX_CONTAINER_LEN} elements"
WHY_TOO_MANY: Final = f"the value holds more than {MAX_BODY_CONTAINERS} arrays and maps"
_BIGINT_TEXT: Final = "big integer extension must hold"


def _why(exc: BaseException) -> str:
    """A decoder failure as fixed wire text: never empty, never a Python repr."""
    if isinstance(exc, msgpack.ExtraData):
        return WHY_EXTRA
    if isinstance(exc, UnicodeDecodeError):
        return WHY_UTF8
    if isinstance(exc, msgpack.StackError):
        return WHY_DEPTH
    if isinstance(exc, _TooLong):
        return WHY_TOO_LONG
    if isinstance(exc, _TooMany):
        return WHY_TOO_MANY
    text = str(exc)
    if isinstance(exc, msgpack.OutOfData) or "incomplete input" in text or " exceeds max_" in text:
        return WHY_TRUNCATED
    if "not allowed for map key" in text:
        return WHY_MAP_KEY
    if text.startswith(_BIGINT_TEXT):
        return text
    return WHY_MALFORMED


def decode_failure(what: str, exc: BaseException) -> str:
    """The text of a ``<what> is not valid msgpack`` error (shared with the header codec)."""
    return f"{what} is not valid msgpack: {_why(exc)}"


def pack_value(value: Any) -> bytes:
    """Encode any msgpack-able value (raises ProtocolError when it is not).

    Integers beyond 64 bits are encoded as the big integer extension."""
    try:
        return _packb(value, default=_default)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ProtocolError(f"value cannot be encoded as msgpack: {exc}") from exc


# A value made only of the types both encoders write alike (str-keyed maps,
# arrays, str, bin, int, float, bool, nil; exact types, no subclasses) is
# encoded by msgspec, which writes the very same bytes (msgpack's smallest
# forms, float64, str and bin types) straight into one ``bytes``: msgpack's
# packb builds a 256 KiB buffer and copies the result out of it (a 64 KiB
# RESULT: 11.5 us against 3 us).  Anything else (a set, a datetime, an
# ExtType, a big integer, a long or deep value) goes through msgpack, so the
# types that may be sent and the errors stay what they were: msgspec would
# also take sets, dates, dataclasses and more.  (_fast_encode: above.)
_LEAF_TYPES: Final = frozenset({str, bytes, int, float, bool, type(None)})
#: Elements (of every map and array together) :func:`_plain` looks at
#: before it leaves a value to msgpack: bounds the Python-level scan that
#: decides (a big payload is one ``bin``, one element).
_PLAIN_ELEMENTS: Final = 64


def _plain(value: Any) -> bool:
    """Whether ``value`` is made only of exact str-keyed dicts, lists,
    tuples and leaf types, with at most _PLAIN_ELEMENTS elements in all."""
    left = _PLAIN_ELEMENTS
    stack = [value]
    leaf = _LEAF_TYPES
    while stack:
        v = stack.pop()
        t = type(v)
        if t in leaf:
            continue
        if t is dict:
            left -= len(v)
            if left < 0:
                return False
            for k, x in v.items():
                if type(k) is not str:
                    return False
                if type(x) not in leaf:
                    stack.append(x)
        elif t is list or t is tuple:
            left -= len(v)
            if left < 0:
                return False
            for x in v:
                if type(x) not in leaf:
                    stack.append(x)
        else:
            return False
    return True


def pack_body(m: dict[str, Any], loose: Any = None) -> bytes:
    """:func:`pack_value` of a body map, by msgspec when it writes the same
    bytes (see above).  ``loose``: the part of ``m`` that may hold any value
    (the caller's arguments or result), when the rest is of the body's own
    field types; only it is looked at (the whole map when not given: a
    look at a small map costs what msgpack's whole encoding does)."""
    if _fast_encode is not None and _plain(m if loose is None else loose):
        try:
            return _fast_encode(m)
        except (TypeError, ValueError, OverflowError):  # an int past 64 bits
            pass
    return pack_value(m)


def unpack_value(raw: Frame) -> Any:
    """Decode a msgpack value (maps keep str or int keys; big integers become ints)."""
    try:
        return _unpackb(raw, False)
    except Exception as exc:
        raise ProtocolError(decode_failure("body", exc)) from exc


def unpack_map(raw: Frame, what: str) -> dict[str, Any]:
    """Decode a body that must be a msgpack map with string keys."""
    try:
        m = _unpackb(raw, True)
    except Exception as exc:
        raise ProtocolError(decode_failure(f"{what} body", exc)) from exc
    if type(m) is not dict:
        raise ProtocolError(f"{what} body must be a msgpack map")
    return m


def _name(m: dict[str, Any], key: str, what: str, *, required: bool = True) -> str | None:
    v = m.get(key)
    if v is None:
        if required:
            raise ProtocolError(f"{what}: '{key}' is required")
        return None
    if type(v) is not str or not 0 < len(v) <= MAX_ID_LEN:
        raise ProtocolError(f"{what}: '{key}' must be a string of 1..{MAX_ID_LEN} characters")
    return v


def _req(m: dict[str, Any], key: str, what: str) -> str:
    v = _name(m, key, what, required=True)
    if v is None:  # pragma: no cover - _name raises first
        raise ProtocolError(f"{what}: '{key}' is required")
    return v


def _text(m: dict[str, Any], key: str, what: str, default: str = "", limit: int = 65536) -> str:
    v = m.get(key, default)
    if v is None:
        return default
    if type(v) is not str or len(v) > limit:
        raise ProtocolError(f"{what}: '{key}' must be a string of at most {limit} characters")
    return v


def _names(m: dict[str, Any], key: str, what: str, limit: int) -> tuple[str, ...]:
    v = m.get(key)
    if v is None:
        return ()
    if type(v) is not list or len(v) > limit:
        raise ProtocolError(f"{what}: '{key}' must be a list of at most {limit} names")
    for x in v:
        if type(x) is not str or not 0 < len(x) <= MAX_ID_LEN:
            raise ProtocolError(f"{what}: '{key}' entries must be names of 1..{MAX_ID_LEN} chars")
    return tuple(v)


def _number(
    m: dict[str, Any], key: str, what: str, lo: float, hi: float
) -> float | None:
    v = m.get(key)
    if v is None:
        return None
    if type(v) not in (int, float) or not lo <= v <= hi:
        raise ProtocolError(f"{what}: '{key}' must be a number in {lo}..{hi}")
    return float(v)


def _int(m: dict[str, Any], key: str, what: str, lo: int, hi: int, default: int) -> int:
    v = m.get(key, default)
    if type(v) is not int or not lo <= v <= hi:
        raise ProtocolError(f"{what}: '{key}' must be an integer in {lo}..{hi}")
    return v


def _bool(m: dict[str, Any], key: str, what: str, default: bool) -> bool:
    v = m.get(key, default)
    if type(v) is not bool:
        raise ProtocolError(f"{what}: '{key}' must be a boolean")
    return v


# Not frozen: JobRequest and ResultBody are built once per job in every
# process (client, broker, worker), and a frozen dataclass's __init__ sets
# each field through object.__setattr__: 2.8 us against 0.6 us for the ten
# fields here.  Treat them as values all the same; nothing assigns to them.
# (init=False and an __init__ of its own, as for the other bodies made once
# per job: compiled by mypyc, a dataclass's generated __init__ stays
# interpreted, 6x the cost of a compiled one; in pure Python they are alike.)
@dataclass(slots=True, init=False)
class JobRequest:
    """Body of JOB: which tool to run with which arguments, and how."""

    tool: str
    args: dict[str, Any]
    timeout: float | None
    on: str | None
    caps: tuple[str, ...]
    retries: int
    idempotent: bool
    prefer_local: bool
    stream: bool  # send the tool's output as PROGRESS while it runs
    #: Decoded as an envelope (``unpack(..., envelope=True)`` of a big body):
    #: ``args`` is empty here and still in the raw body.
    args_skipped: bool = field(compare=False)

    def __init__(self, tool: str, args: dict[str, Any] | None = None,
                 timeout: float | None = None, on: str | None = None,
                 caps: tuple[str, ...] = (), retries: int = 0, idempotent: bool = True,
                 prefer_local: bool = False, stream: bool = False,
                 args_skipped: bool = False) -> None:
        self.tool = tool
        self.args = {} if args is None else args
        self.timeout = timeout
        self.on = on
        self.caps = caps
        self.retries = retries
        self.idempotent = idempotent
        self.prefer_local = prefer_local
        self.stream = stream
        self.args_skipped = args_skipped

    def pack(self) -> bytes:
        m: dict[str, Any] = {"tool": self.tool, "args": self.args}
        if self.prefer_local:
            m["local"] = True
        if self.stream:
            m["stream"] = True
        if self.timeout is not None:
            m["timeout"] = self.timeout
        if self.on is not None:
            m["on"] = self.on
        if self.caps:
            m["caps"] = list(self.caps)
        if self.retries:
            m["retries"] = self.retries
        if not self.idempotent:
            m["idem"] = False
        # (caps: a tuple of names, by its type; what a caller put in it is
        # looked at too when there are any.)
        return pack_body(m, (self.args, self.caps) if self.caps else self.args)

    @classmethod
    def unpack(cls, raw: Frame, *, envelope: bool = False) -> JobRequest:
        """Decode a JOB body.  ``envelope`` (a broker): a body larger than
        ENVELOPE_THRESHOLD has its argument values stepped over, not built
        (``args`` is then empty and ``args_skipped`` true)."""
        # Argument values may be maps with any keys (as RESULT values may);
        # only the top-level keys are checked to be strings.
        skipped = envelope and len(raw) > _ENVELOPE_THRESHOLD
        if skipped:
            fast = _fast_envelope(raw)
            if fast is not None:
                return fast
        try:
            m = _unpack_envelope(raw) if skipped else _unpackb(raw, False)
        except ProtocolError:
            raise
        except Exception as exc:
            raise ProtocolError(decode_failure("JOB body", exc)) from exc
        if not skipped and type(m) is dict and len(m) <= 4:
            # The common bodies, {"tool", "args"} with a "timeout" (what the
            # clients send by default) and an "on" (a job for a named node,
            # decoded at its origin, its destination and its worker): the
            # checks below, inlined.
            tool = m.get("tool")
            args = m.get("args")
            timeout = m.get("timeout")
            on = m.get("on")
            if (len(m) == 2 + (timeout is not None) + (on is not None)
                    and type(tool) is str and 0 < len(tool) <= MAX_ID_LEN and type(args) is dict
                    and len(args) <= MAX_JOB_ARGS
                    and (not args or all(type(k) is str for k in args))
                    and (timeout is None
                         or (type(timeout) is float and 0.0 < timeout <= MAX_JOB_TIMEOUT))
                    and (on is None or (type(on) is str and 0 < len(on) <= MAX_ID_LEN))):
                return cls(tool, args, timeout, on)
        if type(m) is not dict or any(type(k) is not str for k in m):
            raise ProtocolError("JOB body must be a msgpack map with string keys")
        tool = _req(m, "tool", "JOB")
        args = m.get("args", {})
        if type(args) is not dict:
            raise ProtocolError("JOB: 'args' must be a map of argument names to values")
        if len(args) > MAX_JOB_ARGS:
            raise ProtocolError(f"JOB: more than {MAX_JOB_ARGS} arguments")
        for k in args:
            if type(k) is not str:
                raise ProtocolError("JOB: argument names must be strings")
        timeout = _number(m, "timeout", "JOB", 0.0, MAX_JOB_TIMEOUT)
        if timeout is not None and timeout <= 0:
            raise ProtocolError("JOB: 'timeout' must be positive")
        return cls(
            tool=tool,
            args=args,
            timeout=timeout,
            on=_name(m, "on", "JOB", required=False),
            caps=_names(m, "caps", "JOB", MAX_CAPABILITIES),
            retries=_int(m, "retries", "JOB", 0, 100, 0),
            idempotent=_bool(m, "idem", "JOB", True),
            prefer_local=_bool(m, "local", "JOB", False),
            stream=_bool(m, "stream", "JOB", False),
            args_skipped=skipped,
        )


@dataclass(slots=True, init=False)  # not frozen, and an __init__: see JobRequest
class ResultBody:
    """Body of RESULT: the tool's return value and where it ran."""

    value: Any
    node: str
    duration: float  # seconds the tool ran
    attempts: int

    def __init__(self, value: Any, node: str = "", duration: float = 0.0,
                 attempts: int = 1) -> None:
        self.value = value
        self.node = node
        self.duration = duration
        self.attempts = attempts

    def pack(self) -> bytes:
        return pack_body(
            {"value": self.value, "node": self.node, "duration": self.duration,
             "attempts": self.attempts}, self.value
        )

    @classmethod
    def unpack(cls, raw: Frame) -> ResultBody:
        try:
            m = _unpackb(raw, False)
        except Exception as exc:
            raise ProtocolError(decode_failure("RESULT body", exc)) from exc
        if type(m) is not dict or "value" not in m:
            raise ProtocolError("RESULT body must be a map with a 'value'")
        node = m.get("node", "")
        if type(node) is not str:
            raise ProtocolError("RESULT: 'node' must be a string")
        duration = m.get("duration", 0.0)
        if type(duration) not in (int, float):
            raise ProtocolError("RESULT: 'duration' must be a number")
        attempts = m.get("attempts", 1)
        if type(attempts) is not int:
            raise ProtocolError("RESULT: 'attempts' must be an integer")
        return cls(m["value"], node, float(duration), attempts)


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """Body of ERROR: a stable code, a message, and where it came from."""

    code: str
    message: str
    type: str | None = None  # remote exception type name, for tool failures
    node: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def pack(self) -> bytes:
        m: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.type is not None:
            m["type"] = self.type
        if self.node is not None:
            m["node"] = self.node
        if self.details:
            # Details come from exceptions: keep what msgpack can carry, and the
            # repr of anything else, so an odd detail never loses the error.
            m["details"] = {str(k): v if v is None or isinstance(
                v, str | int | float | bytes | list | tuple | dict) else repr(v)
                for k, v in self.details.items()}
        return pack_value(m)

    @classmethod
    def unpack(cls, raw: Frame) -> ErrorBody:
        m = unpack_map(raw, "ERROR")
        code = _req(m, "code", "ERROR")
        details = m.get("details", {})
        if type(details) is not dict:
            raise ProtocolError("ERROR: 'details' must be a map")
        return cls(
            code=code,
            message=_text(m, "message", "ERROR"),
            type=_text(m, "type", "ERROR", limit=256) or None,
            node=_text(m, "node", "ERROR", limit=MAX_ID_LEN) or None,
            details=details,
        )


#: Parameters one tool may advertise in READY (a tool's signature is short;
#: this bounds what one READY entry can hold).
MAX_TOOL_PARAMS: Final = 256
#: Longest parameter type text in READY (an annotation like ``dict[str, int] | None``).
MAX_PARAM_TYPE_LEN: Final = 256
#: Longest tool description kept from READY; longer ones are clipped.
MAX_DESCRIPTION_LEN: Final = 1024


@dataclass(frozen=True, slots=True)
class ParamInfo:
    """One argument a tool accepts, as a worker advertises it (READY ``signatures``)."""

    name: str
    #: The annotation as text (``"int"``, ``"str | None"``, ``"list[str]"``);
    #: ``"any"`` without one.  Informational: the worker checks only names.
    type: str = "any"
    required: bool = True
    #: The default of an optional argument (a plain value, or its repr text).
    default: Any = None

    def to_wire(self) -> dict[str, Any]:
        m: dict[str, Any] = {"name": self.name, "type": self.type, "required": self.required}
        if not self.required:
            m["default"] = self.default
        return m

    @classmethod
    def from_wire(cls, v: Any) -> ParamInfo:
        if type(v) is not dict:
            raise ProtocolError("READY: each parameter must be a map")
        name = _req(v, "name", "READY parameter")
        ptype = _text(v, "type", "READY parameter", "any", MAX_PARAM_TYPE_LEN) or "any"
        required = _bool(v, "required", "READY parameter", True)
        return cls(name, ptype, required, None if required else v.get("default"))


@dataclass(frozen=True, slots=True)
class ToolInfo:
    """A tool a worker offers: its name and description and, when the worker
    advertised them, its parameters (``None``: not advertised, e.g. an older worker)."""

    name: str
    description: str = ""
    params: tuple[ParamInfo, ...] | None = None
    #: The tool also takes any other keyword argument (``**kwargs``).
    any_args: bool = False


def _signature(v: Any, tool: str) -> tuple[tuple[ParamInfo, ...], bool]:
    if type(v) is not dict:
        raise ProtocolError(f"READY: the signature of '{tool}' must be a map")
    params = v.get("params", [])
    if type(params) is not list or len(params) > MAX_TOOL_PARAMS:
        raise ProtocolError(
            f"READY: 'params' of '{tool}' must be a list of at most {MAX_TOOL_PARAMS} maps"
        )
    return tuple(ParamInfo.from_wire(p) for p in params), _bool(v, "kwargs", "READY", False)


#: Running job ids one READY may list: a worker runs at most its slots
#: (<= 100,000) jobs at once.
MAX_RUNNING_IDS: Final = 100_000


def _ids(m: dict[str, Any], key: str, what: str, limit: int) -> tuple[str, ...]:
    v = m.get(key)
    if v is None:
        return ()
    if type(v) is not list or len(v) > limit:
        raise ProtocolError(f"{what}: '{key}' must be a list of at most {limit} job ids")
    for x in v:
        if type(x) is not str or not 0 < len(x) <= 64:
            raise ProtocolError(f"{what}: '{key}' entries must be job ids of 1..64 characters")
    return tuple(v)


@dataclass(frozen=True, slots=True)
class Ready:
    """Body of READY: a worker registers its tools, capabilities and slots."""

    worker: str
    tools: tuple[ToolInfo, ...]
    caps: tuple[str, ...] = ()
    slots: int = 64
    pid: int = 0
    #: Ids of jobs the worker is still running (it registers again after its
    #: broker restarted; additive, v1 revision 4).
    running: tuple[str, ...] = ()
    #: The worker accepts BATCH messages (additive, v1 revision 7).
    batch: bool = False

    def pack(self) -> bytes:
        m: dict[str, Any] = {
            "worker": self.worker,
            "tools": [[t.name, t.description] for t in self.tools],
            "caps": list(self.caps),
            "slots": self.slots,
            "pid": self.pid,
        }
        # Additive (v1 revision 2): a v1 broker ignores the key it does not know.
        sigs = {
            t.name: {"params": [p.to_wire() for p in t.params], "kwargs": t.any_args}
            for t in self.tools if t.params is not None
        }
        if sigs:
            m["signatures"] = sigs
        if self.running:
            m["running"] = list(self.running)
        if self.batch:
            m["batch"] = True
        return pack_value(m)

    @classmethod
    def unpack(cls, raw: Frame) -> Ready:
        m = unpack_map(raw, "READY")
        worker = _req(m, "worker", "READY")
        tools_raw = m.get("tools", [])
        if type(tools_raw) is not list or len(tools_raw) > MAX_TOOLS_PER_WORKER:
            raise ProtocolError("READY: 'tools' must be a list of [name, description]")
        sigs = m.get("signatures")
        if sigs is None:
            sigs = {}
        elif type(sigs) is not dict:
            raise ProtocolError("READY: 'signatures' must be a map of tool names to signatures")
        tools = []
        for t in tools_raw:
            if (
                type(t) is not list
                or len(t) != 2
                or type(t[0]) is not str
                or not 0 < len(t[0]) <= MAX_ID_LEN
                or type(t[1]) is not str
            ):
                raise ProtocolError("READY: each tool must be [name, description]")
            sig = sigs.get(t[0])
            if sig is None:
                tools.append(ToolInfo(t[0], t[1][:MAX_DESCRIPTION_LEN]))
            else:
                params, any_args = _signature(sig, t[0])
                tools.append(ToolInfo(t[0], t[1][:MAX_DESCRIPTION_LEN], params, any_args))
        return cls(
            worker=worker,
            tools=tuple(tools),
            caps=_names(m, "caps", "READY", MAX_CAPABILITIES),
            slots=_int(m, "slots", "READY", 1, 100_000, 64),
            pid=_int(m, "pid", "READY", 0, 2**31, 0),
            running=_ids(m, "running", "READY", MAX_RUNNING_IDS),
            batch=m.get("batch") is True,
        )


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Body of HEARTBEAT: how many jobs the sender is running."""

    running: int = 0

    def pack(self) -> bytes:
        return pack_value({"running": self.running})

    @classmethod
    def unpack(cls, raw: Frame) -> Heartbeat:
        if not raw:
            return cls()
        m = unpack_map(raw, "HEARTBEAT")
        return cls(running=_int(m, "running", "HEARTBEAT", 0, 2**31, 0))


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Body of DISCONNECT: why the session ends."""

    reason: str = ""

    def pack(self) -> bytes:
        return pack_value({"reason": self.reason})

    @classmethod
    def unpack(cls, raw: Frame) -> Disconnect:
        if not raw:
            return cls()
        return cls(_text(unpack_map(raw, "DISCONNECT"), "reason", "DISCONNECT", limit=1024))


@dataclass(frozen=True, slots=True)
class Cancel:
    """Body of CANCEL: why the job is being cancelled."""

    reason: str = ""

    def pack(self) -> bytes:
        return pack_value({"reason": self.reason})

    @classmethod
    def unpack(cls, raw: Frame) -> Cancel:
        if not raw:
            return cls()
        return cls(_text(unpack_map(raw, "CANCEL"), "reason", "CANCEL", limit=1024))


@dataclass(frozen=True, slots=True)
class Progress:
    """Body of PROGRESS: a fraction done, a note, or a chunk of streamed output."""

    fraction: float | None = None
    message: str | None = None
    stream: str | None = None  # "stdout" or "stderr" for streamed output
    data: str | None = None

    def pack(self) -> bytes:
        m: dict[str, Any] = {}
        if self.fraction is not None:
            m["fraction"] = self.fraction
        if self.message is not None:
            m["message"] = self.message
        if self.stream is not None:
            m["stream"] = self.stream
        if self.data is not None:
            m["data"] = self.data
        return pack_value(m)

    @classmethod
    def unpack(cls, raw: Frame) -> Progress:
        m = unpack_map(raw, "PROGRESS")
        stream = m.get("stream")
        if stream not in (None, "stdout", "stderr"):
            raise ProtocolError("PROGRESS: 'stream' must be 'stdout' or 'stderr'")
        return cls(
            fraction=_number(m, "fraction", "PROGRESS", 0.0, 1.0),
            message=_text(m, "message", "PROGRESS", limit=4096) or None,
            stream=stream,
            data=_text(m, "data", "PROGRESS", limit=1 << 20) or None,
        )


#: What a client may ask a broker with QUERY.
QUERY_KINDS: Final = frozenset({
    "stats", "workers", "tools", "ping", "peers", "topology", "route", "network", "broadcasts",
    "connect", "cancel", "placement", "qos",
})


@dataclass(frozen=True, slots=True)
class Query:
    """Body of QUERY: what the client wants to know about the cluster."""

    what: str
    args: dict[str, Any] = field(default_factory=dict)

    def pack(self) -> bytes:
        return pack_value({"what": self.what, "args": self.args})

    @classmethod
    def unpack(cls, raw: Frame) -> Query:
        m = unpack_map(raw, "QUERY")
        what = _req(m, "what", "QUERY")
        args = m.get("args", {})
        if type(args) is not dict:
            raise ProtocolError("QUERY: 'args' must be a map")
        return cls(what, args)


# ------------------------------------------------------------ peer mesh bodies
@dataclass(frozen=True, slots=True)
class Hello:
    """Body of HELLO: a broker introduces itself on a new peer link."""

    node: str
    name: str = ""
    cluster: str = "operone"
    token: str | None = None
    #: The sender's Ed25519 signing key (64 hex digits; "" = it does not sign).
    signing_key: str = ""
    #: The sender's broker run (additive, v1 revision 4; 0: not said).
    incarnation: int = 0
    #: It takes messages originated by the receiver and addressed to it over
    #: this link without a signature (revision 5, docs/protocol.md §2.2).
    direct: bool = False
    #: It accepts BATCH messages on this connection (revision 7, §5.20);
    #: absent, or any other value than true: it does not.
    batch: bool = False
    #: It takes a message's signature in frame 0 after the tag on this
    #: connection (revision 9, §3); absent or not true: it does not.
    sig_in_tag: bool = False

    def pack(self) -> bytes:
        m: dict[str, Any] = {"node": self.node, "name": self.name, "cluster": self.cluster}
        if self.token is not None:
            m["token"] = self.token
        if self.signing_key:
            m["sk"] = self.signing_key
        if self.incarnation:
            m["incarnation"] = self.incarnation
        if self.direct:
            m["direct"] = True
        if self.batch:
            m["batch"] = True
        if self.sig_in_tag:
            m["sig_in_tag"] = True
        return pack_value(m)

    @classmethod
    def unpack(cls, raw: Frame) -> Hello:
        m = unpack_map(raw, "HELLO")
        token = m.get("token")
        if token is not None and (type(token) is not str or len(token) > 8192):
            raise ProtocolError("HELLO: 'token' must be a string of at most 8192 characters")
        return cls(
            node=_req(m, "node", "HELLO"),
            name=_text(m, "name", "HELLO", limit=256),
            cluster=_req(m, "cluster", "HELLO"),
            token=token,
            signing_key=_signing_key(m, "HELLO"),
            incarnation=_int(m, "incarnation", "HELLO", 0, 2**63 - 1, 0),
            direct=_direct(m, "HELLO"),
            batch=m.get("batch") is True,
            sig_in_tag=m.get("sig_in_tag") is True,
        )


def _signing_key(m: dict[str, Any], what: str) -> str:
    sk = m.get("sk", "")
    if type(sk) is not str or (sk and (len(sk) != 64 or sk.strip("0123456789abcdef"))):
        raise ProtocolError(f"{what}: 'sk' must be an Ed25519 public key in 64 lowercase hex"
                            " digits")
    return sk


def _direct(m: dict[str, Any], what: str) -> bool:
    direct = m.get("direct", False)
    if type(direct) is not bool:
        raise ProtocolError(f"{what}: 'direct' must be a boolean")
    return direct


@dataclass(frozen=True, slots=True)
class Welcome:
    """Body of WELCOME: the accepting broker's answer to HELLO."""

    node: str
    name: str = ""
    cluster: str = "operone"
    #: The answering broker's Ed25519 signing key (as in HELLO).
    signing_key: str = ""
    #: The answering broker's run (additive, v1 revision 4; 0: not said).
    incarnation: int = 0
    #: As in HELLO.
    direct: bool = False
    #: As in HELLO: the answering broker accepts BATCH on this connection.
    batch: bool = False
    #: As in HELLO (revision 9): it takes signatures after the tag.
    sig_in_tag: bool = False

    def pack(self) -> bytes:
        m: dict[str, Any] = {"node": self.node, "name": self.name, "cluster": self.cluster}
        if self.signing_key:
            m["sk"] = self.signing_key
        if self.incarnation:
            m["incarnation"] = self.incarnation
        if self.direct:
            m["direct"] = True
        if self.batch:
            m["batch"] = True
        if self.sig_in_tag:
            m["sig_in_tag"] = True
        return pack_value(m)

    @classmethod
    def unpack(cls, raw: Frame) -> Welcome:
        m = unpack_map(raw, "WELCOME")
        return cls(
            node=_req(m, "node", "WELCOME"),
            name=_text(m, "name", "WELCOME", limit=256),
            cluster=_req(m, "cluster", "WELCOME"),
            signing_key=_signing_key(m, "WELCOME"),
            incarnation=_int(m, "incarnation", "WELCOME", 0, 2**63 - 1, 0),
            direct=_direct(m, "WELCOME"),
            batch=m.get("batch") is True,
            sig_in_tag=m.get("sig_in_tag") is True,
        )


@dataclass(frozen=True, slots=True)
class Bye:
    """Body of BYE: the link is refused or closed, and why."""

    reason: str = ""
    code: str = "refused"

    def pack(self) -> bytes:
        return pack_value({"reason": self.reason, "code": self.code})

    @classmethod
    def unpack(cls, raw: Frame) -> Bye:
        if not raw:
            return cls()
        m = unpack_map(raw, "BYE")
        return cls(_text(m, "reason", "BYE", limit=1024), _text(m, "code", "BYE", "refused", 64))


@dataclass(frozen=True, slots=True)
class Ping:
    """Body of PING and PONG: a heartbeat sequence number (PONG echoes it).

    Additive (v1 revision 4): a broker's PONG says its ``incarnation``; a
    PONG also says ``held``, the microseconds between the PING's receipt and
    the PONG's sending at the answering broker (subtracted from the RTT).
    Additive (v1 revision 7): a broker's PONG to a client says ``batch``
    (true: the broker accepts BATCH messages from that client)."""

    seq: int
    incarnation: int = 0
    held: int = 0
    batch: bool = False

    def pack(self) -> bytes:
        m: dict[str, Any] = {"seq": self.seq}
        if self.incarnation:
            m["incarnation"] = self.incarnation
        if self.held:
            m["held"] = self.held
        if self.batch:
            m["batch"] = True
        return pack_value(m)

    @classmethod
    def unpack(cls, raw: Frame) -> Ping:
        m = unpack_map(raw, "PING")
        return cls(_int(m, "seq", "PING", 0, 2**63 - 1, 0),
                   _int(m, "incarnation", "PING", 0, 2**63 - 1, 0),
                   _int(m, "held", "PING", 0, 2**63 - 1, 0),
                   m.get("batch") is True)


#: LSAs per LSA message: a database exchange with a new neighbour is split in
#: messages of at most this many, so no message is huge.
MAX_LSAS_PER_MESSAGE: Final = 256


def pack_lsas(lsas: list[dict[str, Any]]) -> bytes:
    """Body of LSA: a list of link-state advertisements (wire dicts)."""
    return pack_value(lsas)


def unpack_lsas(raw: Frame) -> list[Any]:
    """Decode the list of an LSA body (each entry is validated by the routing layer)."""
    v = unpack_value(raw)
    if type(v) is not list or len(v) > MAX_LSAS_PER_MESSAGE:
        raise ProtocolError(f"LSA body must be a list of at most {MAX_LSAS_PER_MESSAGE} LSAs")
    return v
