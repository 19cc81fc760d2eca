"""Assembly: build brokers, workers and clients from a node's home and config.

The CLI, the demo and the tests all go through these functions, so a broker
started by hand and one started by a test are configured the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, Final, TypeVar

import structlog

from ..config import Config, Home, load_config, parse_ssh_host
from ..core.broker import BrokerLimits
from ..errors import ConfigError
from ..protocol.signature import Signer
from ..security.keys import (
    KeyPair,
    TrustStore,
    load_keypair,
    load_signing_seed,
    parse_public_key,
)
from ..tools import ToolRegistry, ToolsConfig, builtin_registry
from ..tools.config import unsafe_shell_entries
from .broker import Broker, PeerAddress
from .client import AsyncClient, Client
from .legacy import LegacyHost
from .sockets import CurveKeys, SocketLimits
from .worker import Worker

__all__ = [
    "broker_from_config",
    "client_keys",
    "event_loop_choice",
    "event_loop_name",
    "node_keys",
    "registry_from_config",
    "run_service",
    "run_until_signalled",
    "worker_from_config",
]

T = TypeVar("T")

#: The environment variable that picks the daemons' event loop (see run_service).
EVENT_LOOP_VAR: Final = "OPERONE_EVENT_LOOP"
EVENT_LOOPS: Final = ("auto", "uvloop", "asyncio")


def _uvloop_run() -> Callable[[Coroutine[Any, Any, Any]], Any] | None:
    """uvloop.run, or None where uvloop is not installed (Windows, PyPy)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.run


def event_loop_choice() -> str:
    """The event loop the daemons run on, by ``OPERONE_EVENT_LOOP``: ``auto``
    (the default: "uvloop" where it is installed, which it is on Linux and
    macOS, else "asyncio"), ``uvloop`` or ``asyncio``.  A ConfigError for any
    other value, and for ``uvloop`` where it is missing."""
    choice = os.environ.get(EVENT_LOOP_VAR, "auto").strip().lower() or "auto"
    if choice not in EVENT_LOOPS:
        raise ConfigError(f"{EVENT_LOOP_VAR} must be one of {', '.join(EVENT_LOOPS)},"
                          f" not {choice!r}")
    if choice == "asyncio":
        return "asyncio"
    if _uvloop_run() is not None:
        return "uvloop"
    if choice == "uvloop":
        raise ConfigError(f"{EVENT_LOOP_VAR}=uvloop, but uvloop is not installed here"
                          " (pip install uvloop; it has no Windows build)")
    return "asyncio"


def run_service(main: Coroutine[Any, Any, T]) -> T:
    """Run a daemon's ``main`` (broker, worker, node) on the loop of
    :func:`event_loop_choice`.  Measured (docs/operations.md, "The event
    loop"): uvloop takes 5-12 % less CPU per job and 5-10 % off p50.  On a
    ConfigError nothing runs (``main`` is closed)."""
    try:
        choice = event_loop_choice()
    except ConfigError:
        main.close()
        raise
    run = _uvloop_run() if choice == "uvloop" else None
    if run is None:
        return asyncio.run(main)
    result: T = run(main)
    return result


def event_loop_name() -> str:
    """Which event loop runs the calling coroutine: "uvloop" or "asyncio"."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"


def node_keys(home: Home) -> KeyPair:
    """The node's Curve key pair; a clear error when ``operone init`` was not run."""
    if not home.node_secret.exists():
        raise ConfigError(
            f"no node key at {home.node_secret}: run 'operone init' first"
            f" (home: {home.path})")
    kp = load_keypair(home.node_secret)
    if kp.secret is None:
        raise ConfigError(f"{home.node_secret} holds no secret key")
    return kp


def broker_from_config(home: Home, config: Config, extra_peers: Iterable[str] = (), *,
                       expected_workers: int = 0) -> Broker:
    """A broker for this node, as its config says; ``expected_workers``: how
    many workers the caller starts for it (jobs wait for them briefly)."""
    kp = node_keys(home)
    assert kp.secret is not None  # checked by node_keys
    limits = BrokerLimits(
        max_queued_jobs=config.limits.max_queued_jobs,
        max_client_jobs=config.limits.max_client_jobs,
        max_client_bytes=config.limits.max_client_bytes,
        max_origin_bytes=config.limits.max_origin_bytes,
        heartbeat_interval=config.workers.heartbeat_interval,
        liveness=config.workers.heartbeat_liveness,
        peer_interval=config.broker.heartbeat_interval,
        max_peers=config.mesh.max_peers,
        result_cache_seconds=config.limits.result_cache_seconds,
        down_retention=config.routing.down_retention_s,
        max_clients=config.limits.max_clients,
        expected_workers=expected_workers,
    )
    endpoint = config.broker.worker_endpoint
    if endpoint is None:  # load_config always resolves it
        raise ConfigError("broker.worker_endpoint is not set")
    return Broker(
        config.node.id,
        keys=CurveKeys(kp.public, kp.secret),
        trust=TrustStore(home.trust_dir),
        host=config.node.host,
        base_port=config.node.base_port,
        worker_endpoint=endpoint,
        limits=limits,
        socket_limits=SocketLimits(max_message_size=config.limits.max_message_size),
        name=config.node.name,
        cluster=config.node.cluster,
        peers=[PeerAddress.parse(p) for p in (*config.mesh.peers, *extra_peers)],
        jwt_secret=config.security.jwt_secret,
        require_token=config.security.require_token,
        token_ttl=config.security.token_ttl,
        discover=config.mesh.discover,
        legacy_hosts=legacy_hosts_from_config(config),
        signer=Signer.from_seed(load_signing_seed(home.node_signing)),
        signatures=config.security.signatures,
    )


def legacy_hosts_from_config(config: Config) -> list[LegacyHost]:
    """The [ssh] section's legacy hosts."""
    out = []
    for entry in config.ssh.hosts:
        name, user, host, port = parse_ssh_host(entry)
        out.append(LegacyHost(name, user, host, port, config.ssh.key_file,
                              config.ssh.known_hosts, config.ssh.accept_unknown_host,
                              config.ssh.max_concurrency, config.ssh.command_timeout))
    return out


def tools_config(config: Config) -> ToolsConfig:
    """The built-in tools' policy from the [tools] section."""
    root = config.tools.fs_root
    tc = ToolsConfig(shell_allow=frozenset(config.tools.shell_allow),
                     fs_root=Path(root).expanduser() if root else None,
                     shell_allow_unsafe=config.tools.shell_allow_unsafe,
                     shell_user=config.tools.shell_user)
    unsafe = unsafe_shell_entries(tc.shell_allow)
    if unsafe:
        structlog.get_logger("operone.tools").warning(
            "shell_allow_unsafe", entries=unsafe,
            warning="these shell_allow entries let every trusted client run ANY program"
                    " on this node (tools.shell_allow_unsafe is set)")
    return tc


def registry_from_config(config: Config, extra_modules: Iterable[str] = ()) -> ToolRegistry:
    """Built-in tools plus the tool modules named in the config and ``extra_modules``."""
    reg = builtin_registry(tools_config(config))
    for ref in (*config.tools.modules, *extra_modules):
        reg.load_module(ref)
    return reg


def worker_from_config(
    home: Home, config: Config, *, name: str | None = None, modules: Iterable[str] = (),
    caps: Iterable[str] | None = None, parent_pid: int | None = None,
) -> Worker:
    """A worker process's engine for this node."""
    endpoint = config.broker.worker_endpoint
    if endpoint is None:
        raise ConfigError("broker.worker_endpoint is not set")
    curve = None
    if endpoint.startswith("tcp"):
        kp = node_keys(home)
        assert kp.secret is not None
        curve = CurveKeys(kp.public, kp.secret, kp.public)
    wname = (name or f"{config.node.id[:50]}.w{os.getpid()}")[:64]
    return Worker(
        wname,
        endpoint,
        registry_from_config(config, modules),
        tools_config=tools_config(config),
        caps=tuple(config.workers.capabilities if caps is None else caps),
        slots=config.workers.concurrency,
        threads=config.workers.threads,
        heartbeat_interval=config.workers.heartbeat_interval,
        liveness=config.workers.heartbeat_liveness,
        curve=curve,
        parent_pid=parent_pid,
    )


def client_keys(home: Home, server_key: str | None = None) -> CurveKeys:
    """This home's key pair as a client, and the broker's public key
    (default: this node's own, for talking to the local broker)."""
    kp = node_keys(home)
    assert kp.secret is not None
    server = parse_public_key(server_key) if server_key else kp.public
    return CurveKeys(kp.public, kp.secret, server)


def _target(config: Config, broker: str | None) -> tuple[str, int]:
    if broker:
        host, _, port = broker.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"--broker must be HOST:PORT, not {broker!r}")
        return host.strip("[]"), int(port)
    host = config.node.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return host, config.node.base_port


def async_client_for(home: Home, config: Config, broker: str | None = None,
                     server_key: str | None = None, **kw: Any) -> AsyncClient:
    """An AsyncClient of this node's broker (or of ``broker`` = HOST:PORT)."""
    host, port = _target(config, broker)
    return AsyncClient(host, port, keys=client_keys(home, server_key),
                       client_id=f"{config.node.id}.{socket.gethostname()[:16]}", **kw)


def client_for(home: Home, config: Config, broker: str | None = None,
               server_key: str | None = None, **kw: Any) -> Client:
    """A blocking Client of this node's broker (or of ``broker`` = HOST:PORT)."""
    host, port = _target(config, broker)
    return Client(host, port, keys=client_keys(home, server_key),
                  client_id=f"{config.node.id}.{socket.gethostname()[:16]}", **kw)


def load(home_path: str | Path | None = None, overrides: dict[str, Any] | None = None,
         ) -> tuple[Home, Config]:
    """The home (default: $OPERONE_HOME or the platform default) and its config."""
    home = Home(Path(home_path).expanduser()) if home_path else Home.default()
    return home, load_config(home, overrides)


async def run_until_signalled(
    start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]],
    wait: Callable[[], Awaitable[None]], on_started: Callable[[], None] | None = None,
) -> None:
    """Start a service, run until SIGINT/SIGTERM (or until it stops), stop it."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    if sys.platform != "win32":
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
    await start()
    if on_started is not None:
        on_started()
    waiter = asyncio.ensure_future(wait())
    sig_wait = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({waiter, sig_wait}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for f in (waiter, sig_wait):
            f.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await f
        await stop()
        if sys.platform != "win32":
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
