"""JobFuture (what AsyncClient.submit returns) keeps its id and cancel hook
in slots, and stays an ordinary future otherwise: other attributes, weak
references, and a cancel before any hook was set."""

from __future__ import annotations

import asyncio
import weakref

import pytest

from operone_zmq.aio.futures import JobFuture


def test_a_job_future_cancels_through_its_hook_once() -> None:
    async def go() -> list[tuple[str, int]]:
        calls: list[tuple[str, int]] = []
        f = JobFuture()
        f.job_id, f._cls = "j1", 1
        f._on_cancel = lambda jid, cls: calls.append((jid, cls))
        assert f.cancel() and not f.cancel()
        with pytest.raises(asyncio.CancelledError):
            await f
        return calls

    assert asyncio.run(go()) == [("j1", 1)]


def test_a_job_future_without_a_hook_cancels_and_takes_other_attributes() -> None:
    async def go() -> None:
        f = JobFuture()
        f.tag = "mine"  # type: ignore[attr-defined]  # a user's own attribute
        assert f.tag == "mine"  # type: ignore[attr-defined]
        assert weakref.ref(f)() is f
        assert f.cancel() and f.cancelled()
        g = JobFuture()
        g.set_result(None)  # type: ignore[arg-type]
        assert not g.cancel()

    asyncio.run(go())
