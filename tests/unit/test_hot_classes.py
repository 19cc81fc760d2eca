"""The classes made once per job have an ``__init__`` of their own, not the one
``dataclasses`` generates: compiled by mypyc (the compiled build), a
dataclass's generated ``__init__`` stays an interpreted function, counted with
callgrind at 8,100 instructions to make an Origin against a few hundred for a
compiled one.  In pure Python both are the same code."""

from __future__ import annotations

import dataclasses
import os
import threading
import types

import pytest

from operone_zmq.aio.client import _Pending
from operone_zmq.core.client import JobResult, Reply
from operone_zmq.core.jobrecords import JobRecord
from operone_zmq.core.origin import Origin
from operone_zmq.core.ports import Job
from operone_zmq.core.worker import JobStart, _Running
from operone_zmq.protocol.bodies import JobRequest, ResultBody
from operone_zmq.protocol.signature import SigFrame
from operone_zmq.tools import ToolContext, ToolsConfig

PER_JOB = [Origin, JobRecord, Job, JobRequest, ResultBody, JobStart, _Running, JobResult,
           Reply, _Pending, ToolContext, SigFrame]


@pytest.mark.parametrize("cls", PER_JOB, ids=lambda c: c.__name__)
def test_a_per_job_class_has_its_own_init(cls: type) -> None:
    init = cls.__init__
    assert dataclasses.is_dataclass(cls)  # eq, repr, fields and replace stay
    if os.environ.get("OPERONE_TEST_EXPECT_COMPILED") == "1":
        # (Every module of these is compiled: test_build.py checks which.)
        assert not isinstance(init, types.FunctionType), (
            f"{cls.__name__}.__init__ is interpreted in the compiled build")
    else:
        assert isinstance(init, types.FunctionType)
        assert init.__code__.co_filename != "<string>", f"{cls.__name__}: generated __init__"


def test_the_written_inits_keep_the_defaults_and_replace() -> None:
    r = JobRequest("echo")
    assert (r.args, r.timeout, r.on, r.caps, r.retries, r.idempotent, r.prefer_local,
            r.stream, r.args_skipped) == ({}, None, None, (), 0, True, False, False, False)
    assert JobRequest("echo") == r and JobRequest("echo").args is not r.args
    assert dataclasses.replace(r, timeout=2.5) == JobRequest("echo", {}, 2.5)
    assert JobRequest("e", args_skipped=True) == JobRequest("e")  # (not compared)
    assert ResultBody(1) == ResultBody(1, "", 0.0, 1)
    rec = JobRecord("j", "echo", None, 1.0)
    assert (rec.state, rec.attempts, rec.history, rec.owner) == ("queued", 0, [], None)
    assert JobRecord("j", "echo", None, 1.0).history is not rec.history
    o = Origin("j", b"\x00c", 2, "", r, b"", 0, 0.0, 0)
    assert (o.attempts, o.tried, o.placement, o.path, o.record) == (0, [], "", (), None)
    assert JobStart("j", "echo", {}, 1.0, 2) == JobStart("j", "echo", {}, 1.0, 2, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        JobStart("j", "echo", {}, 1.0, 2).cls = 3  # type: ignore[misc]
    assert SigFrame(b"s") == SigFrame(b"s", None, None, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        SigFrame(b"s").sig = None  # type: ignore[misc]
    cfg = ToolsConfig()
    ctx = ToolContext("j", "n", cfg)
    assert (ctx.job_id, ctx.node, ctx.config, ctx.deadline) == ("j", "n", cfg, None)
    assert isinstance(ctx.cancelled, threading.Event) and not ctx.cancelled.is_set()
    assert ToolContext("j", "n", cfg).cancelled is not ctx.cancelled
    assert ctx.progress(0.5, "half") is None and ctx.stream("stdout", "x") is None
    later = dataclasses.replace(ctx, deadline=2.0)
    assert later.deadline == 2.0 and later.cancelled is ctx.cancelled
    event = threading.Event()
    assert ToolContext("j", "n", cfg, cancelled=event).cancelled is event
