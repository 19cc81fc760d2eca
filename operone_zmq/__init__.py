"""operone-zmq: a secure ZeroMQ mesh for running tools on many PCs.

The public API, grouped.  Names are imported lazily (PEP 562), so importing a
no-I/O subpackage such as ``operone_zmq.protocol`` or ``operone_zmq.routing``
never pulls in ZeroMQ or asyncio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # running a node
    "Broker": "operone_zmq.aio.broker",
    "PeerNetwork": "operone_zmq.aio.broker",  # the original's name for the broker
    "Worker": "operone_zmq.aio.worker",
    # submitting jobs
    "AsyncClient": "operone_zmq.aio.client",
    "Client": "operone_zmq.aio.client",
    "JobResult": "operone_zmq.core.client",
    "JobFuture": "operone_zmq.aio.client",
    "ClientJobFuture": "operone_zmq.aio.client",
    "CurveKeys": "operone_zmq.aio.sockets",
    "DistributedExecutor": "operone_zmq.executor",
    "ExecutionResult": "operone_zmq.executor",
    "ToolRouter": "operone_zmq.jobs.router",
    "NetworkTopology": "operone_zmq.routing.topology",
    "SSHClient": "operone_zmq.ssh",
    # writing tools
    "tool": "operone_zmq.tools",
    "ToolContext": "operone_zmq.tools",
    "ToolRegistry": "operone_zmq.tools",
    "ToolsConfig": "operone_zmq.tools",
    # QoS (no I/O)
    "QoSManager": "operone_zmq.qos",
    "QoSPolicy": "operone_zmq.qos",
    "RetryPolicy": "operone_zmq.qos",
    "Priority": "operone_zmq.qos",
    # configuration, keys, tokens
    "Config": "operone_zmq.config",
    "Home": "operone_zmq.config",
    "load_config": "operone_zmq.config",
    "init_home": "operone_zmq.config",
    "TrustStore": "operone_zmq.security",
    "generate_keypair": "operone_zmq.security",
    "load_keypair": "operone_zmq.security",
    "generate_jwt": "operone_zmq.security",
    "verify_jwt": "operone_zmq.security",
    "configure_logging": "operone_zmq.logs",
    # errors
    "OperoneError": "operone_zmq.errors",
    "ConfigError": "operone_zmq.errors",
    "ProtocolError": "operone_zmq.errors",
    "SecurityError": "operone_zmq.errors",
    "AuthenticationError": "operone_zmq.errors",
    "BrokerUnreachable": "operone_zmq.errors",
    "JobError": "operone_zmq.errors",
    "ToolNotFound": "operone_zmq.errors",
    "BadRequest": "operone_zmq.errors",
    "JobTimeout": "operone_zmq.errors",
    "ToolFailed": "operone_zmq.errors",
    "Refused": "operone_zmq.errors",
    "PathOutsideRoot": "operone_zmq.errors",
    "Overloaded": "operone_zmq.errors",
    "TooManyClients": "operone_zmq.errors",
    "NoRoute": "operone_zmq.errors",
    "WorkerLost": "operone_zmq.errors",
    "NotIdempotent": "operone_zmq.errors",
    "JobCancelled": "operone_zmq.errors",
    "MessageTooLarge": "operone_zmq.errors",
}

# Literal, so that tools can read it; a test checks it matches _EXPORTS.
__all__ = [  # noqa: RUF022 - grouped as _EXPORTS, not sorted
    "__version__",
    "compiled_modules",
    "Broker",
    "PeerNetwork",
    "Worker",
    "AsyncClient",
    "Client",
    "JobResult",
    "JobFuture",
    "ClientJobFuture",
    "CurveKeys",
    "DistributedExecutor",
    "ExecutionResult",
    "ToolRouter",
    "NetworkTopology",
    "SSHClient",
    "tool",
    "ToolContext",
    "ToolRegistry",
    "ToolsConfig",
    "QoSManager",
    "QoSPolicy",
    "RetryPolicy",
    "Priority",
    "Config",
    "Home",
    "load_config",
    "init_home",
    "TrustStore",
    "generate_keypair",
    "load_keypair",
    "generate_jwt",
    "verify_jwt",
    "configure_logging",
    "OperoneError",
    "ConfigError",
    "ProtocolError",
    "SecurityError",
    "AuthenticationError",
    "BrokerUnreachable",
    "JobError",
    "ToolNotFound",
    "BadRequest",
    "JobTimeout",
    "ToolFailed",
    "Refused",
    "PathOutsideRoot",
    "Overloaded",
    "TooManyClients",
    "NoRoute",
    "WorkerLost",
    "NotIdempotent",
    "JobCancelled",
    "MessageTooLarge",
]


def compiled_modules() -> list[str]:
    """The modules of this package that are compiled (the optional mypyc
    build, README "Install"), sorted; empty when it is pure Python.

    A module is compiled when its file is an extension module: the import
    system takes one before a ``.py`` of the same name, so this is what runs.
    Nothing is imported to find out."""
    from importlib.machinery import EXTENSION_SUFFIXES
    from pathlib import Path

    root = Path(__file__).parent
    suffixes = sorted(EXTENSION_SUFFIXES, key=len, reverse=True)  # ".abi3.so" before ".so"
    found: set[str] = set()
    for path in root.rglob("*"):
        suffix = next((x for x in suffixes if path.name.endswith(x)), None)
        if suffix is None:
            continue
        parts = [__name__, *path.relative_to(root).parent.parts]
        stem = path.name[: -len(suffix)]
        found.add(".".join(parts if stem == "__init__" else [*parts, stem]))
    return sorted(found)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'operone_zmq' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), "Broker" if name == "PeerNetwork" else name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .aio.broker import Broker
    from .aio.broker import Broker as PeerNetwork
    from .aio.client import AsyncClient, Client, ClientJobFuture, JobFuture
    from .aio.sockets import CurveKeys
    from .aio.worker import Worker
    from .config import Config, Home, init_home, load_config
    from .core.client import JobResult
    from .errors import (
        AuthenticationError,
        BadRequest,
        BrokerUnreachable,
        ConfigError,
        JobCancelled,
        JobError,
        JobTimeout,
        MessageTooLarge,
        NoRoute,
        NotIdempotent,
        OperoneError,
        Overloaded,
        PathOutsideRoot,
        ProtocolError,
        Refused,
        SecurityError,
        ToolFailed,
        ToolNotFound,
        TooManyClients,
        WorkerLost,
    )
    from .executor import DistributedExecutor, ExecutionResult
    from .jobs.router import ToolRouter
    from .logs import configure_logging
    from .qos import Priority, QoSManager, QoSPolicy, RetryPolicy
    from .routing.topology import NetworkTopology
    from .security import TrustStore, generate_jwt, generate_keypair, load_keypair, verify_jwt
    from .ssh import SSHClient
    from .tools import ToolContext, ToolRegistry, ToolsConfig, tool
