"""The futures of the client API (:class:`JobFuture`, :class:`ClientJobFuture`)
and its windowed submission (``map`` / ``as_completed``).

They live apart from :mod:`operone_zmq.aio.client` because the compiled build
(``OPERONE_ZMQ_COMPILE=1``, docs/operations.md) compiles that module and
cannot compile these: a native class cannot subclass asyncio's C Future, and
async generators are not implemented.  Import them from
:mod:`operone_zmq.aio.client`, which re-exports them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from ..core.client import JobResult
from ..errors import JobCancelled

__all__ = ["ClientJobFuture", "JobFuture", "windowed"]


class JobFuture(asyncio.Future[JobResult]):
    """The future of a submitted job (:meth:`AsyncClient.submit`): its id is
    known at once (``job_id``, the id ``operone cancel`` and QUERY ``job``
    take).  Cancelling it cancels the job: awaiting it then raises
    :class:`asyncio.CancelledError`, as asyncio requires; a job cancelled by
    anyone else (``operone cancel``, QUERY ``cancel``) raises
    :class:`~operone_zmq.errors.JobCancelled`."""

    # Slots for what the client sets on every job: in the instance dict
    # (which asyncio.Future still gives, for any other attribute) setting
    # them costs twice as much.
    __slots__ = ("_cls", "_on_cancel", "job_id")
    job_id: str
    #: Called with (job id, class) when the future is cancelled: the client
    #: sends CANCEL (set by AsyncClient once the job is sent).
    _on_cancel: Callable[[str, int], None] | None
    _cls: int

    def cancel(self, msg: Any | None = None) -> bool:
        """Cancel the job (CANCEL to the broker) and this future."""
        if not super().cancel(msg):
            return False
        hook = getattr(self, "_on_cancel", None)
        if hook is not None:
            self._on_cancel = None
            hook(self.job_id, self._cls)
        return True


class ClientJobFuture(concurrent.futures.Future[JobResult]):
    """The future of a job submitted through the blocking :class:`Client`:
    ``job_id`` at once; :meth:`cancel` cancels the job, and ``result()``
    then raises :class:`~operone_zmq.errors.JobCancelled`."""

    def __init__(self, job_id: str, cancel_job: Callable[[], None]) -> None:
        super().__init__()
        self.job_id = job_id
        self._cancel_job = cancel_job

    def cancel(self) -> bool:
        """Cancel the job; False when it has finished already."""
        if self.done():
            return False
        try:
            self.set_exception(JobCancelled(f"job '{self.job_id}' was cancelled by the"
                                            " client", job_id=self.job_id))
        except concurrent.futures.InvalidStateError:
            return False  # its answer arrived meanwhile
        self._cancel_job()
        return True


async def windowed(
    submit: Callable[..., JobFuture], tool: str, args_list: Iterable[Mapping[str, Any]],
    concurrency: int, kw: dict[str, Any],
) -> AsyncIterator[tuple[int, JobResult | BaseException]]:
    """``submit(tool, args, **kw)`` per argument map, at most ``concurrency``
    at a time; yields ``(index, result or error)`` as they finish, and cancels
    the jobs still running when the consumer stops early."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    it = iter(enumerate(args_list))
    running: dict[asyncio.Future[JobResult], int] = {}
    done_q: asyncio.Queue[tuple[int, JobResult | BaseException]] = asyncio.Queue()

    def on_done(f: asyncio.Future[JobResult]) -> None:
        i = running.pop(f)
        if f.cancelled():
            done_q.put_nowait((i, JobCancelled("cancelled")))
        else:
            e = f.exception()
            done_q.put_nowait((i, e if e is not None else f.result()))

    exhausted = False
    try:
        while True:
            while not exhausted and len(running) < concurrency:
                try:
                    i, a = next(it)
                except StopIteration:
                    exhausted = True
                    break
                f = submit(tool, a, **kw)
                running[f] = i
                f.add_done_callback(on_done)
            if exhausted and not running and done_q.empty():
                return
            yield await done_q.get()
    finally:
        for rf in list(running):
            rf.cancel()

