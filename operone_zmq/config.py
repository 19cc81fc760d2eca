"""Configuration: the operone home directory and its TOML config file.

Precedence, lowest first: the defaults of the dataclasses below, then
``config.toml`` in the home directory, then environment variables
``OPERONE_<SECTION>_<KEY>`` (``OPERONE_NODE_BASE_PORT=7800``, lists
comma-separated, booleans as true/false/1/0/yes/no/on/off, an empty value for
"unset"), then explicit overrides ``{"section.key": value}`` (the CLI's options).

Unknown sections and keys in the file or in overrides, values of the wrong
type and values out of range raise :class:`~operone_zmq.errors.ConfigError`
naming the option (``workers.count``) and where it came from.  Unknown
``OPERONE_*`` variables are ignored here (the environment is shared with
other programs); the CLI warns about them (:func:`unknown_env_vars`).
"""

from __future__ import annotations

import math
import os
import re
import socket
import sys
import tempfile
import textwrap
import tomllib
import types
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from operone_zmq.errors import ConfigError
from operone_zmq.security.keys import (
    NAME_PATTERN,
    KeyPair,
    TrustStore,
    generate_keypair,
    load_keypair,
    load_signing_seed,
    validate_name,
)
from operone_zmq.security.tokens import MIN_SECRET_BYTES

__all__ = [
    "BUILD_ENV_VARS",
    "CLI_ENV_VARS",
    "DEFAULT_BASE_PORT",
    "MAX_BASE_PORT",
    "WORKER_PORT_OFFSET",
    "BrokerConfig",
    "Config",
    "Home",
    "LimitsConfig",
    "LoggingConfig",
    "MeshConfig",
    "NodeConfig",
    "RoutingConfig",
    "SecurityConfig",
    "ToolsSection",
    "WorkersConfig",
    "default_home",
    "default_node_id",
    "init_home",
    "load_config",
    "parse_peer_address",
    "render_config",
    "resolve_worker_endpoint",
    "unknown_env_vars",
    "write_default_config",
]

#: First of the four consecutive class ports (critical, high, normal, low).
DEFAULT_BASE_PORT = 7700
#: The four class ROUTERs use base_port .. base_port + 3.
MAX_BASE_PORT = 65535 - 4
#: Where there is no ipc:// (Windows), workers reach the broker on this port
#: offset from base_port, on 127.0.0.1.
WORKER_PORT_OFFSET = 10
#: An ipc:// path must fit sun_path: 104 bytes on macOS, 108 on Linux, with the
#: NUL; longer run directories fall back to the TCP worker endpoint.
_IPC_PATH_MAX = 100

_KEY_RE = re.compile(NAME_PATTERN)
_CAPABILITY_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_SECRET_OPTIONS = frozenset({"security.jwt_secret"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


# ----------------------------------------------------------------- home dir
def default_home(environ: Mapping[str, str] | None = None, *, platform: str | None = None) -> Path:
    """Return $OPERONE_HOME, else %APPDATA%/operone on Windows, else ~/.config/operone."""
    env = os.environ if environ is None else environ
    if env.get("OPERONE_HOME"):
        return Path(env["OPERONE_HOME"]).expanduser()
    if (sys.platform if platform is None else platform) == "win32":
        appdata = env.get("APPDATA")
        return (Path(appdata) if appdata else Path.home() / "AppData" / "Roaming") / "operone"
    xdg = env.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".config"
    return base / "operone"


@dataclass(frozen=True)
class Home:
    """The directory holding one node's config, keys, trust store, sockets and logs."""

    path: Path

    @classmethod
    def default(cls, environ: Mapping[str, str] | None = None) -> Home:
        """Return the home at :func:`default_home`."""
        return cls(default_home(environ))

    @property
    def config_file(self) -> Path:
        """The TOML configuration file."""
        return self.path / "config.toml"

    @property
    def keys_dir(self) -> Path:
        """The directory of this node's own Curve certificates."""
        return self.path / "keys"

    @property
    def node_secret(self) -> Path:
        """This node's secret certificate (mode 0600)."""
        return self.keys_dir / "node.key_secret"

    @property
    def node_signing(self) -> Path:
        """The node's Ed25519 signing key (64 hex digits, mode 0600)."""
        return self.keys_dir / "node.sign_secret"

    @property
    def node_public(self) -> Path:
        """This node's public certificate, to hand to other nodes' operators."""
        return self.keys_dir / "node.key"

    @property
    def trust_dir(self) -> Path:
        """The :class:`~operone_zmq.security.TrustStore` directory."""
        return self.path / "trust"

    @property
    def run_dir(self) -> Path:
        """Runtime files: the broker's ipc:// worker socket (mode 0700)."""
        return self.path / "run"

    @property
    def log_dir(self) -> Path:
        """Log files of services started in the background."""
        return self.path / "log"

    def ensure_dirs(self) -> None:
        """Create the home and its subdirectories, the subdirectories with mode 0700."""
        try:
            if not self.path.exists():
                self.path.mkdir(mode=0o700, parents=True)
                os.chmod(self.path, 0o700)
            for d in (self.keys_dir, self.trust_dir, self.run_dir, self.log_dir):
                d.mkdir(mode=0o700, exist_ok=True)
                os.chmod(d, 0o700)
        except OSError as exc:
            raise ConfigError(f"cannot create the operone home {self.path}: {exc}") from exc


def default_node_id() -> str:
    """Return a node id derived from this host's name (a slug matching the node id rules)."""
    host = socket.gethostname().split(".")[0].lower()
    slug = re.sub(r"[^a-z0-9_-]+", "-", host).strip("-")[:64]
    return slug or "node"


# ------------------------------------------------------------------ checks
class _OptionError(ConfigError):
    """A value out of range; ``option`` names it so the loader can say where it came from."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option} {message}")
        self.option = option


def _need(ok: bool, option: str, message: str) -> None:
    if not ok:
        raise _OptionError(option, message)


def _positive(value: float, option: str) -> None:
    _need(math.isfinite(value) and value > 0, option, f"must be a positive number, not {value}")


def _in_range(value: int, low: int, high: int, option: str) -> None:
    _need(low <= value <= high, option, f"must be between {low} and {high}, not {value}")


def _name(value: str, option: str) -> None:
    _need(
        bool(_KEY_RE.fullmatch(value)),
        option,
        f"must be 1-64 letters, digits, '_', '-' or '.' (not starting with '.'), not {value!r}",
    )


def _freeze_lists(obj: Any) -> None:
    """Turn list values given to a frozen dataclass into tuples."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, list):
            object.__setattr__(obj, f.name, tuple(value))


def parse_peer_address(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[v6addr]:PORT`` for IPv6) into host and port, or raise ConfigError."""
    host, sep, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if (not sep or not host or any(c.isspace() for c in host) or not port.isascii()
            or not port.isdigit() or len(port) > 5):
        raise ConfigError(f"peer address {value!r} is not HOST:PORT")
    number = int(port)
    if not 1 <= number <= 65535:
        raise ConfigError(f"peer address {value!r} has port {number}, outside 1..65535")
    return host, number


# ---------------------------------------------------------------- sections
@dataclass(frozen=True)
class NodeConfig:
    """Who this node is and where its broker listens."""

    id: str
    name: str = ""  # empty: the same as id
    cluster: str = "operone"
    host: str = "127.0.0.1"
    base_port: int = DEFAULT_BASE_PORT

    def __post_init__(self) -> None:
        _name(self.id, "node.id")
        if not self.name:
            object.__setattr__(self, "name", self.id)
        _need(
            len(self.name) <= 256 and self.name.isprintable(),
            "node.name",
            "must be printable text of at most 256 characters",
        )
        _name(self.cluster, "node.cluster")
        _need(
            bool(self.host) and not any(c.isspace() for c in self.host),
            "node.host",
            f"must be a host name or address, not {self.host!r}",
        )
        _in_range(self.base_port, 1, MAX_BASE_PORT, "node.base_port")


@dataclass(frozen=True)
class SecurityConfig:
    """Token settings (CurveZMQ is always on: there is no plaintext mode)."""

    jwt_secret: str | None = field(default=None, repr=False)
    require_token: bool = False
    token_ttl: float = 3600
    signatures: bool = True

    def __post_init__(self) -> None:
        if self.jwt_secret is not None:
            _need(
                len(self.jwt_secret.encode("utf-8")) >= MIN_SECRET_BYTES,
                "security.jwt_secret",
                f"must be at least {MIN_SECRET_BYTES} bytes long",
            )
        _need(
            not self.require_token or self.jwt_secret is not None,
            "security.require_token",
            "needs security.jwt_secret to be set",
        )
        _positive(self.token_ttl, "security.token_ttl")


#: Executables the ``shell`` tool may run by default: none.  Any program that
#: reads files (cat, ls) hands out the node's secret key, and hostname or date
#: change the host; ``fs.*`` is the way to read files, confined to fs_root.
_DEFAULT_SHELL_ALLOW: tuple[str, ...] = ()


@dataclass(frozen=True)
class ToolsSection:
    """Which tools this node offers and how they are confined."""

    shell_allow: tuple[str, ...] = _DEFAULT_SHELL_ALLOW
    fs_root: str | None = None
    modules: tuple[str, ...] = ()
    shell_allow_unsafe: bool = False
    shell_user: str | None = None

    def __post_init__(self) -> None:
        _freeze_lists(self)
        for exe in self.shell_allow:
            _need(
                bool(exe) and exe.isprintable() and not any(c.isspace() for c in exe),
                "tools.shell_allow",
                f"entries must be executable names or paths, not {exe!r}",
            )
        if self.fs_root is not None:
            root = os.path.expanduser(self.fs_root)
            _need(
                os.path.isabs(root),
                "tools.fs_root",
                f"must be an absolute path, not {self.fs_root!r}",
            )
            object.__setattr__(self, "fs_root", root)
        for module in self.modules:
            _need(
                bool(_MODULE_RE.fullmatch(module)),
                "tools.modules",
                f"entries must be Python module names, not {module!r}",
            )


@dataclass(frozen=True)
class WorkersConfig:
    """The worker processes a node starts and how they heartbeat."""

    count: int = 2
    concurrency: int = 128
    threads: int = 8
    capabilities: tuple[str, ...] = ()
    heartbeat_interval: float = 1.0
    heartbeat_liveness: int = 3

    def __post_init__(self) -> None:
        _freeze_lists(self)
        _in_range(self.count, 0, 1024, "workers.count")
        _in_range(self.concurrency, 1, 65536, "workers.concurrency")
        _in_range(self.threads, 1, 1024, "workers.threads")
        for cap in self.capabilities:
            _need(
                bool(_CAPABILITY_RE.fullmatch(cap)),
                "workers.capabilities",
                f"entries must be 1-64 letters, digits or '_.:-', not {cap!r}",
            )
        _positive(self.heartbeat_interval, "workers.heartbeat_interval")
        _in_range(self.heartbeat_liveness, 1, 1000, "workers.heartbeat_liveness")


@dataclass(frozen=True)
class LimitsConfig:
    """Sizes and counts past which work is refused rather than queued."""

    max_message_size: int = 64 * 1024 * 1024
    max_queued_jobs: int = 10_000
    max_clients: int = 1000
    result_cache_seconds: float = 300
    max_client_jobs: int = 5_000
    max_client_bytes: int = 128 * 1024 * 1024
    max_origin_bytes: int = 512 * 1024 * 1024

    def __post_init__(self) -> None:
        _in_range(self.max_message_size, 1024, 2**31 - 1, "limits.max_message_size")
        _in_range(self.max_queued_jobs, 1, 10_000_000, "limits.max_queued_jobs")
        _in_range(self.max_clients, 1, 1_000_000, "limits.max_clients")
        _in_range(self.max_client_jobs, 1, 100_000, "limits.max_client_jobs")
        _in_range(self.max_client_bytes, 1024, 2**40, "limits.max_client_bytes")
        _in_range(self.max_origin_bytes, 1024, 2**40, "limits.max_origin_bytes")
        _need(
            math.isfinite(self.result_cache_seconds) and self.result_cache_seconds >= 0,
            "limits.result_cache_seconds",
            f"must be a number >= 0, not {self.result_cache_seconds}",
        )


@dataclass(frozen=True)
class BrokerConfig:
    """The broker's local side: where its workers connect, how often it heartbeats."""

    worker_endpoint: str | None = None
    heartbeat_interval: float = 1.0

    def __post_init__(self) -> None:
        if self.worker_endpoint is not None:
            scheme, sep, rest = self.worker_endpoint.partition("://")
            _need(
                scheme in ("ipc", "tcp") and bool(sep) and bool(rest),
                "broker.worker_endpoint",
                f"must be an ipc:// or tcp:// endpoint, not {self.worker_endpoint!r}",
            )
        _positive(self.heartbeat_interval, "broker.heartbeat_interval")


@dataclass(frozen=True)
class RoutingConfig:
    """How the link-state routing remembers nodes that went away."""

    down_retention_s: float = 14400.0

    def __post_init__(self) -> None:
        _need(
            math.isfinite(self.down_retention_s) and self.down_retention_s >= 0,
            "routing.down_retention_s",
            f"must be a number of seconds >= 0, not {self.down_retention_s}",
        )


@dataclass(frozen=True)
class MeshConfig:
    """The neighbour brokers this node dials."""

    peers: tuple[str, ...] = ()
    max_peers: int = 64
    discover: bool = False

    def __post_init__(self) -> None:
        _freeze_lists(self)
        for peer in self.peers:
            node, at, address = peer.partition("@")
            try:
                _need(bool(at) and bool(_KEY_RE.fullmatch(node)), "mesh.peers",
                      f"entry {peer!r} is not NODE@HOST:PORT")
                parse_peer_address(address)
            except ConfigError as exc:
                raise _OptionError("mesh.peers",
                                   f"entry {peer!r} is not NODE@HOST:PORT") from exc
        _in_range(self.max_peers, 1, 100_000, "mesh.max_peers")


def parse_ssh_host(entry: str) -> tuple[str, str, str, int]:
    """Split ``NAME=USER@HOST:PORT`` (``:PORT`` optional, default 22)."""
    name, eq, target = entry.partition("=")
    user, at, hostport = target.rpartition("@")
    if not eq or not _KEY_RE.fullmatch(name) or not at or not user or not hostport:
        raise ConfigError(f"ssh host {entry!r} is not NAME=USER@HOST[:PORT]")
    if hostport.count(":") == 1 or (hostport.startswith("[") and "]:" in hostport):
        host, port = parse_peer_address(hostport)
    else:
        host, port = hostport.strip("[]"), 22
    return name, user, host, port


@dataclass(frozen=True)
class SSHConfig:
    """Legacy hosts this broker runs jobs on over SSH."""

    hosts: tuple[str, ...] = ()
    key_file: str | None = None
    known_hosts: str | None = None
    accept_unknown_host: bool = False
    max_concurrency: int = 4
    command_timeout: float = 60.0

    def __post_init__(self) -> None:
        _freeze_lists(self)
        for entry in self.hosts:
            try:
                parse_ssh_host(entry)
            except ConfigError as exc:
                raise _OptionError("ssh.hosts", str(exc)) from exc
        _in_range(self.max_concurrency, 1, 1024, "ssh.max_concurrency")
        _positive(self.command_timeout, "ssh.command_timeout")


@dataclass(frozen=True)
class LoggingConfig:
    """How the services log."""

    format: Literal["console", "json"] = "console"
    level: str = "info"

    def __post_init__(self) -> None:
        _need(
            self.format in ("console", "json"),
            "logging.format",
            f"must be 'console' or 'json', not {self.format!r}",
        )
        level = self.level.lower()
        _need(level in _LOG_LEVELS, "logging.level", f"must be one of {', '.join(_LOG_LEVELS)}")
        object.__setattr__(self, "level", level)


@dataclass(frozen=True)
class Config:
    """The whole configuration of one node."""

    node: NodeConfig
    security: SecurityConfig = field(default_factory=SecurityConfig)
    tools: ToolsSection = field(default_factory=ToolsSection)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    ssh: SSHConfig = field(default_factory=SSHConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


_SECTIONS: dict[str, type[Any]] = {
    "node": NodeConfig,
    "security": SecurityConfig,
    "tools": ToolsSection,
    "workers": WorkersConfig,
    "limits": LimitsConfig,
    "broker": BrokerConfig,
    "mesh": MeshConfig,
    "routing": RoutingConfig,
    "ssh": SSHConfig,
    "logging": LoggingConfig,
}


@cache
def _option_types(section: str) -> dict[str, Any]:
    return get_type_hints(_SECTIONS[section])


#: The CLI's own variables (its global options), not config options.
CLI_ENV_VARS = frozenset({"OPERONE_HOME", "OPERONE_LOG_FORMAT", "OPERONE_LOG_LEVEL"})
#: Variables the package's build reads (README, "Install"), not the CLI: set
#: in a shell to build the compiled package, they are not a typo.
BUILD_ENV_VARS = frozenset({"OPERONE_ZMQ_COMPILE"})


def unknown_env_vars(environ: Mapping[str, str]) -> list[str]:
    """The ``OPERONE_*`` variables of ``environ`` that set nothing (a typo, an
    option that does not exist), each with what is known, sorted."""
    found = []
    for name in sorted(environ):
        if (not name.startswith("OPERONE_") or name in CLI_ENV_VARS or name in BUILD_ENV_VARS
                or name.startswith("OPERONE_TEST_")):  # the test suite's own knobs
            continue
        for section in _SECTIONS:
            prefix = f"OPERONE_{section.upper()}_"
            if name.startswith(prefix):
                key = name[len(prefix):].lower()
                if key in _option_types(section) or f"{section}.{key}" in _REMOVED_OPTIONS:
                    break
                found.append(f"{name} (no option {section}.{key}; known in [{section}]:"
                             f" {', '.join(_option_types(section))})")
                break
        else:
            found.append(f"{name} (no section; sections: {', '.join(_SECTIONS)};"
                         f" CLI: {', '.join(sorted(CLI_ENV_VARS))})")
    return found


# ---------------------------------------------------------------- coercion
class _WrongType(Exception):
    """Raised by :func:`_coerce` with what was expected."""


def _coerce(value: object, tp: Any, text: bool) -> object:
    """Return ``value`` as type ``tp``; strings are parsed when ``text`` (environment, CLI)."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):  # only `X | None` is used
        if value is None or value == "":
            return None
        (inner,) = (a for a in get_args(tp) if a is not type(None))
        return _coerce(value, inner, text)
    if origin is Literal:
        choices = get_args(tp)
        if isinstance(value, str) and value.lower() in choices:
            return value.lower()
        raise _WrongType(" or ".join(repr(c) for c in choices))
    if origin is tuple:
        if text and isinstance(value, str):
            return tuple(s.strip() for s in value.split(",") if s.strip())
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise _WrongType("a list of strings")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if text and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _WrongType("true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if text and isinstance(value, str):
            try:
                return int(value.strip(), 10)
            except ValueError:
                pass
        raise _WrongType("an integer")
    if tp is float:
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif text and isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                pass
        if number is None or not math.isfinite(number):
            raise _WrongType("a number")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise _WrongType("a string")
    raise TypeError(f"unsupported option type {tp!r}")  # pragma: no cover - a bug here


#: Options that existed once, with what to do instead: a file or variable that
#: still sets one is an error, not silently a different setup than it says.
_REMOVED_OPTIONS = {
    "security.curve": "there is no plaintext mode: every connection uses CurveZMQ. "
    "Delete this option",
}


class _Layers:
    """Option values gathered from file, environment and overrides, with their origins."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, object]] = {s: {} for s in _SECTIONS}
        self.origins: dict[str, str] = {}

    def set(self, section: str, key: str, value: object, origin: str, *, text: bool) -> None:
        option = f"{section}.{key}"
        if option in _REMOVED_OPTIONS:
            raise ConfigError(f"option {option} {origin} was removed: {_REMOVED_OPTIONS[option]}")
        types_ = _option_types(section)
        if key not in types_:
            raise ConfigError(
                f"unknown option {option} {origin} (known in [{section}]: {', '.join(types_)})"
            )
        try:
            self.values[section][key] = _coerce(value, types_[key], text)
        except _WrongType as exc:
            shown = "<hidden>" if option in _SECRET_OPTIONS else repr(value)
            raise ConfigError(f"{option} {origin} must be {exc}, not {shown}") from None
        self.origins[option] = origin

    def add_file(self, path: Path) -> None:
        try:
            with path.open("rb") as f:
                data = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        except ValueError as exc:  # TOMLDecodeError, UnicodeDecodeError
            raise ConfigError(f"invalid TOML in {path}: {exc}") from exc
        for section, table in data.items():
            if section not in _SECTIONS:
                raise ConfigError(
                    f"unknown section [{section}] in {path} (known: {', '.join(_SECTIONS)})"
                )
            if not isinstance(table, dict):
                raise ConfigError(f"{section} in {path} must be a [{section}] table")
            for key, value in table.items():
                self.set(section, key, value, f"in {path}", text=False)

    def add_environ(self, environ: Mapping[str, str]) -> None:
        for name, value in environ.items():
            for section in _SECTIONS:
                prefix = f"OPERONE_{section.upper()}_"
                if name.startswith(prefix):
                    key = name[len(prefix) :].lower()
                    if key in _option_types(section) or f"{section}.{key}" in _REMOVED_OPTIONS:
                        self.set(
                            section, key, value, f"from environment variable {name}", text=True
                        )

    def add_overrides(self, overrides: Mapping[str, Any], origin: str) -> None:
        for dotted, value in overrides.items():
            if value is None:
                continue
            section, _, key = dotted.partition(".")
            if section not in _SECTIONS or not key:
                raise ConfigError(
                    f"unknown option {dotted!r} {origin} (use section.key, sections: "
                    f"{', '.join(_SECTIONS)})"
                )
            self.set(section, key, value, origin, text=isinstance(value, str))

    def build(self) -> Config:
        self.values["node"].setdefault("id", default_node_id())
        sections: dict[str, Any] = {}
        for section, cls in _SECTIONS.items():
            try:
                sections[section] = cls(**self.values[section])
            except _OptionError as exc:
                origin = self.origins.get(exc.option)
                raise ConfigError(f"{exc} ({origin})" if origin else str(exc)) from None
        return Config(**sections)


# ------------------------------------------------------------------ public
def resolve_worker_endpoint(
    home: Home, node: NodeConfig, endpoint: str | None = None, *, platform: str | None = None
) -> str:
    """Return ``endpoint``, or the default: ipc:// under the run dir, tcp://127.0.0.1 on Windows."""
    if endpoint:
        return endpoint
    if (sys.platform if platform is None else platform) != "win32":
        path = (home.run_dir / f"{node.id}.workers.ipc").absolute()
        if len(os.fsencode(path)) <= _IPC_PATH_MAX:
            return f"ipc://{path}"
    port = node.base_port + WORKER_PORT_OFFSET
    if port > 65535:
        raise ConfigError(
            f"node.base_port {node.base_port} leaves no room for the worker port "
            f"(base_port + {WORKER_PORT_OFFSET}); set broker.worker_endpoint"
        )
    return f"tcp://127.0.0.1:{port}"


def load_config(
    home: Home,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read the home's config.toml (if any), then OPERONE_* variables, then overrides.

    ``overrides`` maps ``"section.key"`` to a value (a string is parsed as in
    the environment; None means "not given").  The returned config always
    has ``broker.worker_endpoint`` set (see :func:`resolve_worker_endpoint`).
    """
    layers = _Layers()
    if home.config_file.exists():
        layers.add_file(home.config_file)
    layers.add_environ(os.environ if environ is None else environ)
    layers.add_overrides(overrides or {}, "from override")
    config = layers.build()
    endpoint = resolve_worker_endpoint(home, config.node, config.broker.worker_endpoint)
    return replace(config, broker=replace(config.broker, worker_endpoint=endpoint))


# ---------------------------------------------------------------- writing
_HEADER = """\
# operone-zmq configuration.
#
# Every option is listed.  Commented-out options show their default; set one
# by removing the '#'.  Each option can also be set by an environment variable
# OPERONE_<SECTION>_<KEY> (for example OPERONE_NODE_BASE_PORT=7800; lists are
# comma-separated), which wins over this file; command-line options win over both.\
"""

_SECTION_DOCS = {
    "node": "Who this node is and where its broker listens.",
    "security": "CurveZMQ encrypts and authenticates every TCP connection; JSON Web "
    "Tokens (JWT) can be required on top.  Admitted Curve keys are managed with "
    "'operone keys list|accept|reject'.",
    "tools": "Tools are opt-in: only what is allowed here runs on this node.",
    "workers": "Worker processes started by 'operone node start' / 'operone worker start'.",
    "limits": "Bounds: past these, work is refused with an error, never queued without end.",
    "broker": "The broker's local side.",
    "mesh": "Neighbour brokers to link to.  They must trust this node's key "
    "(keys/node.key) and this node must trust theirs.",
    "routing": "Link-state routing between the brokers of the mesh.",
    "ssh": "Legacy hosts with only SSH: this broker runs their jobs through Fabric, and "
    "the mesh sees each as a node (kind ssh) offering shell, fs.read and fs.write.",
    "logging": "Logging of the broker and worker services.",
}

#: Per option: the comment, and for options that default to None an example.
_OPTION_DOCS: dict[str, tuple[str, str | None]] = {
    "node.id": (
        "Unique id of this node in the cluster: 1-64 letters, digits, '_', '-', '.'.  "
        "Other nodes trust this node's key under this name.",
        None,
    ),
    "node.name": ("Human-readable name shown in 'operone peers'.  Default: the id.", None),
    "node.cluster": (
        "Cluster name; nodes only join nodes of the same cluster, and tokens are "
        "issued for it (the JWT audience).",
        None,
    ),
    "node.host": (
        "Address the broker binds its four class ports on: 127.0.0.1 for this PC "
        "only, 0.0.0.0 for every interface, or one interface's address.",
        None,
    ),
    "node.base_port": (
        "First of four consecutive TCP ports, one per priority class "
        "(critical, high, normal, low): base_port .. base_port+3.",
        None,
    ),
    "security.jwt_secret": (
        "Shared secret (at least 32 bytes) for signing and checking JSON Web Tokens; "
        "the same on every node of the cluster.  Unset: no tokens.  Generate one with "
        "python -c 'import secrets; print(secrets.token_urlsafe(48))'.  Keep this file "
        "private (mode 0600) when it is set.",
        "paste-a-random-secret-of-at-least-32-bytes-here",
    ),
    "security.require_token": (
        "Require a valid token, bound to the connection's Curve key, in every peer "
        "broker's HELLO, in addition to a trusted key (clients carry no token: they "
        "are admitted by their trusted key alone).  Needs jwt_secret; make tokens "
        "with 'operone token create'.",
        None,
    ),
    "security.token_ttl": (
        "Lifetime of tokens created by 'operone token create', in seconds.",
        None,
    ),
    "security.signatures": (
        "Sign LSAs and routed messages with the node's Ed25519 key and verify "
        "those of others (docs/security.md).  false: neither, and no link to a "
        "broker that signs (HELLO without a signing key is refused there); only "
        "for measuring what signing costs, on a whole mesh at once.",
        None,
    ),
    "tools.shell_allow": (
        "Executables the 'shell' tool may run (argv lists, never a shell string), as "
        "bare names or absolute paths.  Default: none (the tool is refused).  The "
        "program runs with its working directory in fs_root, but reads and writes "
        "whatever the node's user can: allow only programs you would let every "
        "trusted client run, never cat, ls or an interpreter.  Use fs.* to read files.",
        None,
    ),
    "tools.shell_allow_unsafe": (
        "Allow shell_allow entries that run any program their arguments name (env, "
        "find, xargs, nice, timeout, setsid, sudo, ssh, shells, interpreters, ...).  "
        "Without it such entries are refused at startup; with it each start logs a "
        "warning naming them.",
        None,
    ),
    "tools.shell_user": (
        "Run shell children as this user (name or uid), with its primary group and no "
        "supplementary groups, so a job cannot read the operone home (mode 0700).  "
        "Needs the worker to run as root; unset: the worker's own user.",
        "nobody",
    ),
    "tools.fs_root": (
        "Absolute directory that the file tools are confined to.  Unset: file tools are disabled.",
        "/srv/operone/files",
    ),
    "tools.modules": (
        "Python modules imported by workers to register extra tools (@tool).",
        None,
    ),
    "workers.count": (
        "Worker processes to start with the broker (0: the broker serves only the "
        "tools registered in its own process).",
        None,
    ),
    "workers.concurrency": ("Jobs one worker runs at the same time.", None),
    "workers.threads": ("Threads per worker for blocking (non-async) tools.", None),
    "workers.capabilities": (
        "Capabilities this node's workers advertise (for example 'gpu', 'linux'); jobs "
        "can ask for them.",
        None,
    ),
    "workers.heartbeat_interval": ("Seconds between worker heartbeats.", None),
    "workers.heartbeat_liveness": (
        "Missed heartbeats after which a worker is considered lost and its jobs "
        "are retried elsewhere.",
        None,
    ),
    "limits.max_message_size": ("Largest message accepted, in bytes.", None),
    "limits.max_queued_jobs": ("Jobs waiting for a worker before new ones are refused.", None),
    "limits.max_clients": (
        "Client connections served at the same time (one per priority class a client "
        "uses).  A new one past it gets the error too_many_clients; a connection silent "
        "for 60 s with no job in flight gives its place up.  At start the broker raises "
        "its open-file limit to the hard limit and refuses to start if that cannot hold "
        "this many clients, its peers and a reserve.",
        None,
    ),
    "limits.max_client_jobs": (
        "Jobs one client connection, and all connections of one client key that is not "
        "an operator together, may have in flight (not yet answered) before new "
        "ones are refused with overloaded; kept below the 10,000-message send "
        "high-water mark so the answers of a client that stops reading fit its pipe.",
        None,
    ),
    "limits.max_client_bytes": (
        "Body bytes of the jobs one client connection, and all connections of one "
        "client key that is not an operator together, have in flight before new ones "
        "are refused with overloaded (two maximum-size messages by default).",
        None,
    ),
    "limits.max_origin_bytes": (
        "Body bytes of the jobs this node runs for one other node before more are "
        "refused with overloaded.",
        None,
    ),
    "limits.result_cache_seconds": (
        "How long finished results are kept by job id, so a retried job is answered "
        "from the cache instead of running twice.",
        None,
    ),
    "broker.worker_endpoint": (
        "Endpoint where local workers connect.  Unset: ipc:// in the run directory, "
        "or tcp://127.0.0.1:<base_port+10> on Windows.",
        "tcp://127.0.0.1:7710",
    ),
    "broker.heartbeat_interval": ("Seconds between heartbeats to neighbour brokers.", None),
    "ssh.hosts": (
        'Legacy hosts, as "NAME=USER@HOST[:PORT]"; NAME is the node id the mesh uses.',
        None,
    ),
    "ssh.key_file": ("Private key for the SSH logins (else agent / ~/.ssh keys).",
                     "~/.ssh/id_ed25519"),
    "ssh.known_hosts": ("known_hosts file the host keys are checked against.",
                        "~/.ssh/known_hosts"),
    "ssh.accept_unknown_host": (
        "Accept and remember an unknown host key on first use (a changed key is always "
        "refused).",
        None,
    ),
    "ssh.max_concurrency": ("Commands run at once on one legacy host.", None),
    "ssh.command_timeout": ("Longest an SSH command may run, in seconds.", None),
    "mesh.discover": (
        "Advertise this broker with zeroconf (_operone._tcp.local.) and link to the brokers "
        "it finds whose keys are trusted under their node ids; untrusted ones are listed "
        "as pending for 'operone keys accept'.",
        None,
    ),
    "mesh.peers": (
        'Brokers to link to, as "NODE@HOST:PORT": NODE is the peer\'s node id (its key must '
        "be trusted here under that name) and PORT its base port.",
        None,
    ),
    "mesh.max_peers": (
        "Most neighbour links this broker keeps: it dials at most this many, and refuses a "
        "HELLO that would take it past this many links up.",
        None,
    ),
    "routing.down_retention_s": (
        "Seconds a node that went away (its link-state advertisement aged out) stays "
        "known as 'down since T': routes and errors say 'known but unreachable' and "
        "partition events name it; after this time it is forgotten "
        "(partition:forgotten, never reported as healed).  0: forget it at once.",
        None,
    ),
    "logging.format": ('"console" for people, "json" for log collectors.', None),
    "logging.level": ("debug, info, warning, error or critical.", None),
}


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value: object, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, tuple | list):
        items = [_toml_string(v) for v in value]
        flat = "[" + ", ".join(items) + "]"
        if len(key) + len(flat) <= 84:
            return flat
        return "[\n" + "".join(f"    {item},\n" for item in items) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")  # pragma: no cover - a bug here


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, width=78, initial_indent="# ", subsequent_indent="# ")


def render_config(config: Config) -> str:
    """Return ``config`` as annotated TOML: every option explained, defaults commented out."""
    lines = [_HEADER]
    for section, cls in _SECTIONS.items():
        obj = getattr(config, section)
        lines += ["", *_comment(_SECTION_DOCS[section]), f"[{section}]"]
        for f in fields(cls):
            option = f"{section}.{f.name}"
            doc, example = _OPTION_DOCS[option]
            value = getattr(obj, f.name)
            if f.default is not MISSING:
                default: object = f.default
            elif f.default_factory is not MISSING:
                default = f.default_factory()
            else:
                default = MISSING
            # [node] is always written: it says who this node is.
            is_default = section != "node" and value == default
            lines += ["", *_comment(doc)]
            if value is None:
                lines.append(f"# {f.name} = {_toml_value(example, f.name)}")
            else:
                prefix = "# " if is_default else ""
                rendered = _toml_value(value, f.name).replace("\n", "\n" + prefix)
                lines.append(f"{prefix}{f.name} = {rendered}")
    return "\n".join(lines) + "\n"


def _fields_to_overrides(values: Mapping[str, Any]) -> dict[str, Any]:
    """Map ``write_default_config`` keyword names to ``section.key`` options."""
    node_fields = set(_option_types("node"))
    out: dict[str, Any] = {}
    for name, value in values.items():
        if "." in name:
            out[name] = value
        elif name in node_fields:
            out[f"node.{name}"] = value
        else:
            section = next(
                (s for s in _SECTIONS if name.startswith(s + "_")),
                None,
            )
            if section is None:
                raise ConfigError(
                    f"unknown option {name!r}: use a [node] option name (name, cluster, host, "
                    "base_port) or <section>_<key>, such as workers_count"
                )
            out[f"{section}.{name[len(section) + 1 :]}"] = value
    return out


def write_default_config(home: Home, node_id: str, *, force: bool = False, **fields: Any) -> Path:
    """Write an annotated config.toml for ``node_id`` into the home and return its path.

    ``fields`` are [node] options by name (``base_port=7800``) or any option
    as ``<section>_<key>`` (``workers_count=4``, ``security_jwt_secret=...``).
    An existing file is kept (ConfigError) unless ``force`` is true.
    """
    validate_name(node_id, "node id")
    layers = _Layers()
    layers.add_overrides({"node.id": node_id, **_fields_to_overrides(fields)}, "from argument")
    text = render_config(layers.build())
    path = home.config_file
    if path.exists() and not force:
        raise ConfigError(f"{path} exists already; use --force to overwrite it")
    try:
        home.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".config.", suffix=".tmp", dir=home.path)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
            os.chmod(tmp, 0o600)  # it may hold the JWT secret
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}") from exc
    return path


def node_signing_key(home: Home) -> str:
    """The node's Ed25519 public signing key (64 hex digits), for another
    node's trust store (``TrustStore.accept(..., signing_key=...)``); the
    key is made first when the home predates signing keys."""
    from operone_zmq.protocol.signature import Signer

    return Signer.from_seed(load_signing_seed(home.node_signing)).public_hex


def init_home(
    home: Home, node_id: str | None = None, force: bool = False, **fields: Any
) -> tuple[Config, KeyPair]:
    """Create the home: directories (0700), config.toml, the node key pair, and trust in it.

    The node's own public key is trusted under its node id, so local clients
    and workers using the node key are admitted.  Returns the configuration
    as written (without environment variables) and the node's key pair.
    ``force`` replaces the config and the key pair (and revokes the old key).
    """
    if not force and (home.config_file.exists() or home.node_secret.exists()):
        raise ConfigError(f"already initialised at {home.path}; use --force")
    node_id = validate_name(node_id or default_node_id(), "node id")
    old_key: bytes | None = None
    if home.node_public.exists():
        try:
            old_key = load_keypair(home.node_public).public
        except ConfigError:
            old_key = None
    home.ensure_dirs()
    write_default_config(home, node_id, force=force, **fields)
    keypair = generate_keypair(home.keys_dir, "node", overwrite=force)
    if force:
        home.node_signing.unlink(missing_ok=True)
    signing_key = node_signing_key(home)
    store = TrustStore(home.trust_dir)
    if old_key is not None and old_key != keypair.public:
        store.reject(KeyPair(old_key).fingerprint)
    for entry in store.list():
        if entry.status == "trusted" and entry.name == node_id:
            store.reject(entry.name)  # a stale key under our own name
    store.accept(node_id, keypair.public, source="this node's own key (operone init)",
                 signing_key=signing_key)
    return load_config(home, environ={}), keypair
