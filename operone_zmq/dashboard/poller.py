"""Polls one broker over the ordinary client API and pushes what changed.

The broker has no event subscription today, so the dashboard asks it every
``interval`` seconds (QUERY stats, peers, topology, network, qos per peer,
jobs) and folds the answers into a :class:`~.model.DashboardState`.  Each
changed snapshot goes to every subscriber (the server-sent event streams of
open pages) through a one-slot queue: a slow page skips snapshots, it never
makes the dashboard buffer them.

The client is created by a factory (an AsyncClient with the node's keys,
over CurveZMQ): after a failed poll it is closed and a new one made, so that
requests queued in a dead connection are dropped rather than answered late.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import structlog

from ..aio.client import AsyncClient
from ..errors import BadRequest, OperoneError
from .model import Answers, DashboardState, normalise_jobs

__all__ = ["MAX_QOS_PEERS", "MAX_SUBSCRIBERS", "Poller", "TooManySubscribers"]

log = structlog.get_logger("operone.dashboard")

#: Peers whose QUERY qos is asked on each poll: one query each, so a huge
#: mesh does not make every poll a storm of queries.
MAX_QOS_PEERS = 64

#: Open event streams (pages) at once; more are refused (HTTP 503).
MAX_SUBSCRIBERS = 32

#: Jobs asked for on each poll (the ``limit`` of QUERY jobs).
POLL_JOBS_LIMIT = 200

#: Seconds between asks of QUERY jobs once the broker said it does not know
#: it: each unknown query counts in the broker's bad_request errors, so the
#: dashboard must not add one a second; an upgraded broker is noticed this late.
JOBS_RECHECK = 60.0


class TooManySubscribers(OperoneError):
    """MAX_SUBSCRIBERS event streams are open already."""


class Poller:
    """Polls the broker that ``make_client`` connects to."""

    def __init__(self, make_client: Callable[[], AsyncClient], broker: str, *,
                 interval: float = 1.0, timeout: float = 2.0,
                 wall: Callable[[], float] = time.time) -> None:
        self._make_client = make_client
        self.interval = interval
        self.timeout = timeout
        self._wall = wall
        self.state = DashboardState(broker)
        self._client: AsyncClient | None = None
        self._subs: set[asyncio.Queue[str]] = set()
        self._last_json = ""
        self._task: asyncio.Task[None] | None = None
        self._jobs_unknown_at: float | None = None  # monotonic time QUERY jobs was unknown

    # ---------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="dashboard-poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._drop_client()

    async def _drop_client(self) -> None:
        c, self._client = self._client, None
        if c is not None:
            with contextlib.suppress(Exception):
                await c.close()

    async def _get_client(self) -> AsyncClient:
        if self._client is None:
            self._client = await self._make_client().connect()
        return self._client

    # -------------------------------------------------------------- polls
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            try:
                await self.poll_once()
            except Exception as exc:  # a bug must not stop the polls for good
                log.exception("dashboard_poll_failed")
                self.state.poll_failed(f"internal error: {exc!r}", self._wall())
                await self._drop_client()
            await asyncio.sleep(max(0.05, self.interval - (loop.time() - t0)))

    async def poll_once(self) -> None:
        """One poll; updates the state and tells subscribers when it changed."""
        try:
            a = await self._poll()
        except (OperoneError, OSError) as exc:
            self.state.poll_failed(str(exc) or type(exc).__name__, self._wall())
            await self._drop_client()
        else:
            self.state.poll_ok(a, self._wall())
        self._publish()

    async def _poll(self) -> Answers:
        c = await self._get_client()
        t = self.timeout
        got = await asyncio.gather(
            c.query("stats", timeout=t), c.query("peers", timeout=t),
            c.query("topology", timeout=t), c.query("network", timeout=t),
            return_exceptions=True)
        for r in got:
            if isinstance(r, BaseException):
                raise r
        stats, peers, topology, network = got
        a = Answers(stats=stats if isinstance(stats, dict) else None,
                    peers=peers if isinstance(peers, list) else None,
                    topology=topology if isinstance(topology, dict) else None,
                    network=network if isinstance(network, dict) else None)
        names = [p["node"] for p in (a.peers or [])
                 if isinstance(p, dict) and isinstance(p.get("node"), str)][:MAX_QOS_PEERS]
        qos = await asyncio.gather(*(c.query("qos", {"peer": p}, timeout=t) for p in names),
                                   return_exceptions=True)
        a.qos = {p: q for p, q in zip(names, qos, strict=True) if isinstance(q, dict)}
        now = time.monotonic()
        if self._jobs_unknown_at is None or now - self._jobs_unknown_at >= JOBS_RECHECK:
            a.jobs, a.jobs_supported = await self._jobs(c, {"limit": POLL_JOBS_LIMIT})
            self._jobs_unknown_at = None if a.jobs_supported else now
        else:
            a.jobs_supported = False
        return a

    async def _jobs(self, c: AsyncClient, args: dict[str, Any]
                    ) -> tuple[list[dict[str, Any]] | None, bool]:
        """QUERY jobs: (jobs, True), or (None, False) when the broker does
        not know the query (or answers something that is not a list)."""
        try:
            answer = await c.query("jobs", args, timeout=self.timeout)
        except BadRequest as exc:
            if "unknown query" in exc.message:
                return None, False
            raise
        jobs = normalise_jobs(answer)
        return jobs, jobs is not None

    # ---------------------------------------------------- page-side calls
    async def query(self, what: str, args: dict[str, Any]) -> Any:
        """Ask the broker for the page (jobs, job, cancel); raises the
        client's typed errors."""
        c = await self._get_client()
        return await c.query(what, args, timeout=self.timeout)

    @property
    def jobs_unknown(self) -> bool:
        """The broker said lately that it does not know QUERY jobs."""
        t = self._jobs_unknown_at
        return t is not None and time.monotonic() - t < JOBS_RECHECK

    async def jobs(self, args: dict[str, Any]) -> list[dict[str, Any]] | None:
        """QUERY jobs with the page's filters; None when not supported (not
        asked again before JOBS_RECHECK once the broker said so)."""
        if self.jobs_unknown:
            return None
        c = await self._get_client()
        jobs, ok = await self._jobs(c, args)
        if not ok:
            self._jobs_unknown_at = time.monotonic()
        return jobs

    # -------------------------------------------------------- subscribers
    def snapshot(self) -> dict[str, Any]:
        return self.state.snapshot(self._wall())

    def subscribe(self) -> asyncio.Queue[str]:
        if len(self._subs) >= MAX_SUBSCRIBERS:
            raise TooManySubscribers(f"{MAX_SUBSCRIBERS} pages are open already")
        q: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        q.put_nowait(json.dumps(self.snapshot()))  # with the whole history; pushes: the news
        self._subs.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[str]) -> None:
        self._subs.discard(q)

    def _publish(self) -> None:
        # Each link's newest history point only: the page keeps the history it
        # was sent first (HISTORY_POINTS a link would be ~15 kB a second a link).
        snap = self.state.snapshot(self._wall(), full_history=False)
        snap.pop("now", None)
        body = json.dumps(snap, sort_keys=True)
        if body == self._last_json:
            return
        self._last_json = body
        for q in self._subs:
            if q.full():
                # The page has not read the last one: it gets this one instead (and
                # its history misses a point, which only thins its chart).
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
            q.put_nowait(body)
