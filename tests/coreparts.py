"""Helpers for the unit tests of the broker core's parts (tests/unit/core).

Each part is tested through its own methods, on a real :class:`BrokerCore`
that builds and wires every part as a running broker does (no fakes).
"""

from __future__ import annotations

from typing import Any

from operone_zmq.core.broker import BrokerCore, BrokerLimits
from operone_zmq.protocol import TAG, Header, MsgType, ToolInfo, decode, encode_header
from operone_zmq.protocol.bodies import JobRequest, Ready
from operone_zmq.testing import FakeClock

WALL = 1_700_000_000.0


class Parts:
    """One broker core and helpers to feed its parts."""

    def __init__(self, limits: BrokerLimits | None = None, **kw: Any) -> None:
        self.clock = FakeClock()
        self.core = BrokerCore("n1", limits=limits or BrokerLimits(), now=self.clock(),
                               wall=lambda: WALL + self.clock(), **kw)
        self.ctx = self.core._ctx
        self.local = self.core._local
        self.origin = self.core._origin
        self.remote = self.core._remote
        self.legacy = self.core._legacy
        self.links = self.core._links
        self.linkstate = self.core._linkstate
        self.relay = self.core._relay
        self.queries = self.core._queries

    def take(self) -> list[tuple[int, list[bytes]]]:
        out = self.core.urgent + self.core.out
        self.core.urgent, self.core.out = [], []
        return out

    def ready(self, rid: bytes, tools: list[str], slots: int = 1,
              caps: tuple[str, ...] = ()) -> None:
        body = Ready(rid.decode(), tuple(ToolInfo(t) for t in tools), caps, slots, 7).pack()
        h = Header(int(MsgType.READY), "r1", rid.decode(), "", 8, 0, 0, None)
        self.local.on_worker([rid, TAG, encode_header(h), body], self.clock())

    def job_frames(self, jid: str, tool: str, src: str = "cli", dst: str = "n1",
                   **kw: Any) -> list[bytes]:
        h = Header(int(MsgType.JOB), jid, src, dst, 8, 0, 2, None)
        return [TAG, encode_header(h), JobRequest(tool, {}, **kw).pack()]

    def types(self, out: list[tuple[int, list[bytes]]],
              sock: int | None = None) -> list[MsgType]:
        """Message types in ``out`` (frames with a routing id first)."""
        found = []
        for s, frames in out:
            if sock is not None and s != sock:
                continue
            start = 1 if frames[0] != TAG else 0
            found.append(MsgType(decode(frames, start).header.type))
        return found
