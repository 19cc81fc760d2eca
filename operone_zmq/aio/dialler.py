"""Dialler: the broker's outgoing peer links as sockets (the shell side of core/links.py).

One dial of a neighbour is four DEALERs (one per priority class) to its
class ports, each watched by a monitor, under a routing id that is a new
*dial incarnation* ``NODE#EPOCH.SEQ`` (core/peers.py): no connection of ours
can collide with one the neighbour still holds from an earlier dial.

Rules:

* A dial replaces the neighbour's previous sockets (closed first) and any
  re-dial still pending.
* Any lost connection (a monitor's DISCONNECTED, on any class) means a fresh
  dial, at most every :data:`REDIAL_MIN_INTERVAL` s: libzmq would reconnect
  the old socket under the old routing id, which the neighbour may still
  hold (a black hole after a partition).  A link the core took down
  (``peer:disconnected``) is re-dialled too, unless it came back meanwhile.
* A neighbour whose CurveZMQ handshake refused our key is not re-dialled by
  itself: its operator must accept our key (an event says so).
* A neighbour that refuses the ``NODE#...`` routing id the way a broker that
  predates dial incarnations does is dialled again with the plain node id.
* Monitors belong to the pump (:meth:`Pump.add_monitor`), which stops each
  before its socket or reader closes (libzmq #3575).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol, cast

import zmq
from zmq.utils.monitor import parse_monitor_message

from ..core.broker import BrokerCore
from ..core.peers import UP, incarnation_id
from ..errors import ConfigError, OperoneError
from ..protocol.frame import Frame
from ..protocol.limits import peer_address_problem
from .pump import Pump
from .sockets import CurveKeys, SocketLimits, make_socket

__all__ = ["DIAL_CONNECT_TIMEOUT_MS", "REDIAL_MIN_INTERVAL", "Dialler"]

#: A dialled TCP connect that has not completed in this many ms is abandoned
#: and tried again (libzmq's reconnect interval later).  Without it a SYN
#: lost in a partition is retried by the kernel with doubling waits, and the
#: link comes back up to about as long after the heal as the cut lasted.
DIAL_CONNECT_TIMEOUT_MS = 1500
#: A link is re-dialled (new sockets, new incarnation) at most this often (s):
#: a neighbour that drops every connection at once costs four sockets a second.
REDIAL_MIN_INTERVAL = 1.0

#: What a dialled socket's monitor reports.
_MONITORED = (zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
              | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class KeyOf(Protocol):
    """The trust store as the dialler uses it."""

    def key_of(self, name: str) -> bytes | None: ...


class Dialler:
    """The sockets of this broker's dialled links, their monitors and re-dials."""

    def __init__(self, node_id: str, keys: CurveKeys, trust: KeyOf,
                 socket_limits: SocketLimits, *, changed: Callable[[], None],
                 emit: Callable[[], None], log: Any) -> None:
        """``changed``: called after each dial, for the broker to send what the
        core queued (HELLO) and schedule its timer; ``emit``: after a re-dial
        (from a timer), for the broker to emit the core's events."""
        self.node_id = node_id
        self._keys = keys
        self._trust = trust
        self._socket_limits = socket_limits
        self._changed = changed
        self._emit = emit
        self._log = log
        self._pump: Pump | None = None
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._core: BrokerCore | None = None
        #: node -> the pump indices of its dialled sockets, then their monitors.
        self._dialled: dict[str, list[int]] = {}
        #: How each dialled neighbour was dialled (host, port, token, key), to
        #: dial it again with fresh sockets when its connection is lost.
        self._args: dict[str, tuple[str, int, str | None, bytes | None]] = {}
        self._redials: dict[str, asyncio.TimerHandle] = {}
        self._last_dial: dict[str, float] = {}
        #: This run's (random, unguessable) epoch and dial counter: each dial
        #: is a new incarnation (core/peers.py).
        self._epoch = secrets.randbits(64)
        self._seq = 0
        #: Neighbours whose broker predates dial incarnations (it refused our
        #: NODE#... routing id): dialled with the plain node id.
        self._plain_rid: set[str] = set()
        #: Neighbours whose CurveZMQ handshake refused our key on the current
        #: dial: not dialled again by themselves (their operator must act).
        self._key_refused: set[str] = set()
        #: monitor socket index -> the neighbour it watches.
        self._monitors: dict[int, str] = {}

    def start(self, pump: Pump, ctx: zmq.Context[zmq.Socket[bytes]], core: BrokerCore) -> None:
        self._pump, self._ctx, self._core = pump, ctx, core

    def stop(self) -> None:
        """Cancel pending re-dials (the pump closes the sockets)."""
        for h in self._redials.values():
            h.cancel()
        self._redials.clear()
        self._pump = None

    # --------------------------------------------------------------- dials
    def dial(self, node: str, host: str, port: int, token: str | None,
             public_key: bytes | None) -> None:
        """Link to ``node`` at ``host``:``port`` (its base port) with fresh
        sockets; raises ConfigError (our own id, no trusted key for it, an
        address that cannot be dialled, max_peers other neighbours dialled
        already: then the link as it was stays) or RuntimeError (not
        started)."""
        pump, ctx, core = self._pump, self._ctx, self._core
        if pump is None or ctx is None or core is None:
            raise RuntimeError("the broker is not started")
        if node == self.node_id:
            raise ConfigError(f"'{node}' is this broker's own node id")
        problem = peer_address_problem(host, port)
        if problem is not None:
            raise ConfigError(f"cannot dial '{node}': {problem}")
        most = core.limits.max_peers
        if node not in self._dialled and len(self._dialled) >= most:
            # Each dialled link holds 8 sockets and 4 connections: the
            # descriptor budget (fdlimit.py) is sized by max_peers.
            raise ConfigError(
                f"cannot dial '{node}': this broker already dials {len(self._dialled)}"
                f" neighbours (mesh.max_peers = {most}); disconnect one first")
        key = public_key or self._trust.key_of(node)
        if key is None:
            raise ConfigError(
                f"no trusted key for node '{node}': accept it first (operone keys accept"
                f" {node} KEYFILE)")
        curve = CurveKeys(self._keys.public, self._keys.secret, key)
        # A new incarnation: no connection of ours can collide with one the
        # neighbour still holds from before (see core/peers.py).
        self._seq += 1
        rid = (self.node_id.encode() if node in self._plain_rid
               else incarnation_id(self.node_id, self._epoch, self._seq))
        idxs, mons = self._open(node, host, port, curve, rid)
        old = self._dialled.pop(node, None)
        if old is not None:
            self._close(old)
        pending = self._redials.pop(node, None)
        if pending is not None:
            pending.cancel()
        self._args[node] = (host, port, token, public_key)
        self._last_dial[node] = time.monotonic()
        self._key_refused.discard(node)
        self._dialled[node] = [*idxs, *mons]
        core.add_dialled_link(node, idxs, time.monotonic(), address=f"{host}:{port}",
                              token=token)
        self._changed()

    def _open(self, node: str, host: str, port: int, curve: CurveKeys,
              rid: bytes) -> tuple[list[int], list[int]]:
        """The four class sockets to ``node`` and their monitors, connected
        (pump indexes); ConfigError, with nothing left open, when libzmq
        refuses the address."""
        pump, ctx = self._pump, self._ctx
        assert pump is not None and ctx is not None
        h = f"[{host}]" if ":" in host else host
        idxs: list[int] = []
        mons: list[int] = []
        try:
            for cls in range(4):
                s = make_socket(ctx, zmq.DEALER, limits=self._socket_limits, curve=curve,
                                identity=rid)
                s.setsockopt(zmq.CONNECT_TIMEOUT, DIAL_CONNECT_TIMEOUT_MS)
                if ":" in host:
                    s.setsockopt(zmq.IPV6, 1)
                idx = pump.add(s)
                idxs.append(idx)
                # Every class's connection is watched: one lost while the others
                # (and the heartbeats on critical) carry on would be a black hole.
                mon = pump.add_monitor(idx, _MONITORED)
                self._monitors[mon] = node
                mons.append(mon)
                s.connect(f"tcp://{h}:{port + cls}")
        except zmq.ZMQError as exc:
            self._close([*idxs, *mons])
            raise ConfigError(f"cannot dial '{node}' at {host}:{port}: {exc}") from exc
        return idxs, mons

    def forget(self, node: str) -> bool:
        """Close ``node``'s sockets and never dial it again; False when it
        was not dialled."""
        idxs = self._dialled.pop(node, None)
        self._args.pop(node, None)
        pending = self._redials.pop(node, None)
        if pending is not None:
            pending.cancel()
        if idxs is not None:
            self._close(idxs)
        return idxs is not None

    def _close(self, idxs: list[int]) -> None:
        pump = self._pump
        if pump is None:
            return
        for i in idxs:
            pump.remove(i)
            self._monitors.pop(i, None)

    def predates_incarnations(self, node: str, reason: str) -> bool:
        """Dial ``node`` again with the plain node id as routing id when its
        refusal is the one a broker that predates incarnations gives ours."""
        me = self.node_id
        args = self._args.get(node)
        if args is None or node in self._plain_rid or not reason.startswith(
                f"HELLO claims to be '{me}' on a connection whose routing id is '{me}#"):
            return False
        self._log.info("peer_predates_incarnations", peer=node)
        self._plain_rid.add(node)
        self.dial(node, *args)
        return True

    def redial_soon(self, node: str, *, lost: bool = False) -> None:
        """Dial ``node`` again with new sockets (a new incarnation), at once or
        REDIAL_MIN_INTERVAL after the last dial.  ``lost``: one of its
        connections is gone, so dial even if the link is up again by then
        (libzmq would reconnect that socket under the old routing id)."""
        if node not in self._args or self._pump is None:
            return
        if node in self._redials:
            if not lost:
                return
            self._redials.pop(node).cancel()
        wait = self._last_dial.get(node, 0.0) + REDIAL_MIN_INTERVAL - time.monotonic()
        loop = asyncio.get_running_loop()
        self._redials[node] = loop.call_later(max(0.0, wait), self._redial, node, lost)

    def _redial(self, node: str, lost: bool) -> None:
        self._redials.pop(node, None)
        args = self._args.get(node)
        core = self._core
        link = None if core is None else core.links.get(node)
        if args is None or self._pump is None or link is None or link.dial is None:
            return
        if link.dial_state == UP and not lost:
            return  # it came back by itself meanwhile
        try:
            self.dial(node, *args)
        except (OperoneError, RuntimeError) as exc:
            self._log.error("redial_failed", peer=node, error=str(exc))
        self._emit()

    # ------------------------------------------------------------ monitors
    def is_monitor(self, idx: int) -> bool:
        return idx in self._monitors

    def on_monitor(self, idx: int, frames: list[Frame], now: float) -> None:
        """A monitor event of one of a neighbour's dialled sockets."""
        node = self._monitors.get(idx)
        core = self._core
        if node is None or core is None:
            return
        try:
            ev = parse_monitor_message(cast(list[bytes], frames))["event"]  # (small: bytes)
        except Exception:
            return
        link = core.links.get(node)
        if ev == zmq.EVENT_DISCONNECTED:
            core.transport_lost(node, now)
            if node not in self._key_refused:
                self.redial_soon(node, lost=True)
        elif ev == zmq.EVENT_HANDSHAKE_FAILED_AUTH and link is not None:
            self._key_refused.add(node)
            link.last_error = (f"'{node}' refused this node's key in the CurveZMQ handshake"
                               " (its operator must accept it)")
            core.events.append(("peer:refused", {"node": node, "reason": link.last_error}))
        elif link is not None:
            link.last_error = (f"CurveZMQ handshake with '{node}' failed: wrong server key for"
                               " that address?")
