"""The broker's file-descriptor budget: enough for ``max_clients``, or no start.

Every client connection, peer transport and worker is a descriptor.  A
broker that runs out of them does not fail cleanly: libzmq's listener spins
on ``accept`` (seen: 97 % CPU at ``ulimit -n 256`` with 400 clients) and
other code fails in odd places (the trust store's directory scan).  So at
start the broker raises its soft ``RLIMIT_NOFILE`` to the hard limit, and
refuses to start when even that cannot hold ``max_clients`` clients, its
peers' transports and :data:`FD_RESERVE` more.
"""

from __future__ import annotations

import sys

from ..errors import ConfigError

__all__ = ["FD_PER_PEER", "FD_RESERVE", "ensure_fd_budget", "fds_needed"]

#: Descriptors one neighbour may take: four accepted and four dialled
#: class connections.
FD_PER_PEER = 8

#: Descriptors for everything else: the class ROUTERs and the worker socket,
#: workers, libzmq's internal pipes and pollers (a few per socket and I/O
#: thread), the ZAP handler, the trust directory scan, logs, SSH sessions.
FD_RESERVE = 256


def fds_needed(max_clients: int, max_peers: int) -> int:
    """Descriptors a broker needs for its limits."""
    return max_clients + max_peers * FD_PER_PEER + FD_RESERVE


def ensure_fd_budget(max_clients: int, max_peers: int) -> int:
    """Raise the soft descriptor limit to the hard one; raise ConfigError
    if it is below :func:`fds_needed`.  Returns the limit now in force
    (-1 where the platform has no such limit)."""
    if sys.platform == "win32":  # pragma: no cover - no RLIMIT_NOFILE there
        return -1
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # e.g. macOS refuses an "unlimited" soft limit: keep what we have
    need = fds_needed(max_clients, max_peers)
    if soft != resource.RLIM_INFINITY and soft < need:
        raise ConfigError(
            f"limits.max_clients = {max_clients} (with mesh.max_peers = {max_peers}) needs"
            f" about {need} file descriptors, but this process may open only {soft}"
            f" (ulimit -n; hard limit {'unlimited' if hard == resource.RLIM_INFINITY else hard})."
            " Lower limits.max_clients or raise the limit")
    return int(soft)
