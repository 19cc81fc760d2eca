"""Jobs this broker runs for other origins, and their result cache (no I/O).

A routed JOB whose dst is this node comes from another broker's origin table;
it runs in :class:`~.local.LocalJobs` like any job, and its answer travels
back to the origin (``src``) by the routing table.

Rules:

* Dedup: a repeated attempt of a job that finished here within
  ``result_cache_seconds`` is answered from the cache, not run again (the
  origin retried after losing our answer); the same attempt while it still
  runs is ignored (its answer is on the way); the same id from another origin
  is refused (BadRequest).
* The cache keeps at most :data:`MAX_CACHED_RESULTS` results, oldest out
  first, and drops expired ones on the timer.
* Only the job's origin may cancel it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from ..errors import BadRequest, JobCancelled, JobError, Overloaded, ProtocolError
from ..protocol.bodies import JobRequest
from ..protocol.codec import Header, decode_header
from ..protocol.frame import Frame
from ..protocol.limits import DEFAULT_TTL
from .context import _CANCEL, _ERROR, _JOB, _RESULT, BrokerContext
from .ports import Job, JobTable, Router

__all__ = ["MAX_CACHED_RESULTS", "RemoteJobs"]

#: Finished results kept per origin job id, so a repeated attempt is answered
#: from here instead of running the tool twice.
MAX_CACHED_RESULTS: Final = 10_000
#: Bytes of all cached results together (oldest out first); a result larger
#: than a sixteenth of it is not cached (a retry of that job runs again).
#: 64 MiB: the cache answers retries after a lost answer, which are rare.
MAX_CACHED_RESULT_BYTES: Final = 64 * 1024 * 1024


class RemoteJobs:
    """Routed JOB/CANCEL for this node, the answers back, the result cache."""

    def __init__(self, ctx: BrokerContext, jobs: JobTable) -> None:
        self._ctx = ctx
        self._jobs = jobs
        self._results: OrderedDict[tuple[str, str], tuple[float, list[Frame]]] = OrderedDict()
        self._cached_bytes = 0
        #: Body bytes of the jobs running here, per origin node, and per job.
        self._use: dict[str, int] = {}
        self._sizes: dict[tuple[str, str], int] = {}

    def wire(self, relay: Router) -> None:
        self._relay = relay

    def __len__(self) -> int:
        return len(self._results)

    def deliver(self, h: Header, frames: list[Frame], now: float,
                req: JobRequest | None = None) -> None:
        """A routed JOB or CANCEL whose dst is this node (``req``: the JOB's
        body, when the relay decoded it already, as an envelope)."""
        ctx = self._ctx
        if h.type == _JOB:
            ctx.counters["jobs_received"] += 1
            jid = h.id
            cached = self._results.get((h.src, jid))
            if cached is not None and cached[0] > now:
                # A repeated attempt of a job we finished: answer, do not run again.
                ctx.counters["results_from_cache"] += 1
                stub = Job(jid, b"", h.cls, "", frozenset(), [], 0.0, now, h.src, remote=True)
                self._jobs.reply(stub, cached[1], decode_header(cached[1][2]))
                return
            running = self._jobs.get(jid)
            if running is not None:
                if running.remote and running.src == h.src:
                    return  # the same attempt again: its answer is on the way
                self._relay.route_error(h.src, jid, h.cls, BadRequest(
                    f"job id '{jid}' is already in use on '{ctx.node_id}'", job_id=jid))
                return
            size = len(frames[2])
            used = self._use.get(h.src, 0)
            if used + size > ctx.limits.max_origin_bytes:
                err0 = Overloaded(
                    f"node '{ctx.node_id}' runs jobs of {used} body bytes for '{h.src}'"
                    f" (limit {ctx.limits.max_origin_bytes}; this job: {size})",
                    job_id=jid, node=ctx.node_id)
                ctx.count_error(err0.code)
                self._relay.route_error(h.src, jid, h.cls, err0)
                return
            if req is None:
                try:
                    req = JobRequest.unpack(frames[2], envelope=True)
                except ProtocolError as exc:
                    self._relay.route_error(h.src, jid, h.cls, BadRequest(str(exc),
                                                                          job_id=jid))
                    return
            err = self._jobs.accept(b"", h.cls, h.src, jid, req, frames, now, remote=True)
            if err is not None:
                ctx.count_error(err.code)
                self._relay.route_error(h.src, jid, h.cls, err)
                return
            self._use[h.src] = used + size
            self._sizes[(h.src, jid)] = size
            return
        if h.type == _CANCEL:
            victim = self._jobs.get(h.id)
            if victim is not None and victim.remote and victim.src == h.src:
                ctx.counters["jobs_cancelled"] += 1
                self._jobs.abort(victim, JobCancelled(
                    f"job '{victim.id}' was cancelled by its origin", job_id=victim.id))

    def reply(self, job: Job, frames: list[Frame], h: Header) -> None:
        """Route a RESULT/ERROR/PROGRESS of ``job`` (frames: routing id, tag,
        header, body) back to its origin; results are cached."""
        if h.type == _RESULT or h.type == _ERROR:
            self._release(job)
        if h.type == _RESULT:
            self._cache(job, frames)
        # Stamped now: a signed answer is fresh (a cached one is sent again).
        self._relay.originate((h.type, h.id, job.legacy or self._ctx.node_id, job.src,
                               DEFAULT_TTL, int(self._ctx.wall() * 1000), job.cls, h.corr),
                              frames[3:])

    def _release(self, job: Job) -> None:
        size = self._sizes.pop((job.src, job.id), None)
        if size is not None:
            left = self._use.get(job.src, 0) - size
            if left > 0:
                self._use[job.src] = left
            else:
                self._use.pop(job.src, None)

    def _cache(self, job: Job, frames: list[Frame]) -> None:
        size = _size(frames)
        if size > MAX_CACHED_RESULT_BYTES // 16:
            return
        cache = self._results
        key = (job.src, job.id)
        old = cache.pop(key, None)
        if old is not None:
            self._cached_bytes -= _size(old[1])
        cache[key] = (self._ctx.now + self._ctx.limits.result_cache_seconds, frames)
        self._cached_bytes += size
        while len(cache) > MAX_CACHED_RESULTS or self._cached_bytes > MAX_CACHED_RESULT_BYTES:
            _, (_, dropped) = cache.popitem(last=False)
            self._cached_bytes -= _size(dropped)

    def failed(self, job: Job, err: JobError) -> None:
        """Route ERROR ``err`` of ``job`` back to its origin."""
        self._release(job)
        self._ctx.count_error(err.code)
        self._relay.route_error(job.src, job.id, job.cls, err, job.legacy)

    def expire(self, now: float) -> None:
        """Drop cached results past their time."""
        cache = self._results
        while cache:
            key, (exp, _) = next(iter(cache.items()))
            if exp > now:
                break
            self._cached_bytes -= _size(cache.pop(key)[1])


def _size(frames: list[Frame]) -> int:
    return sum(len(f) for f in frames)
