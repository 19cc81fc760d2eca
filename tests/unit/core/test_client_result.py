"""The JobResult a client core makes of a RESULT is the frozen dataclass the
API documents, however it was built (core/client.py builds it through the
slots' setters, not the frozen __init__)."""

from __future__ import annotations

import dataclasses

import pytest

from operone_zmq.core.client import ClientCore, JobResult
from operone_zmq.protocol import MsgType
from operone_zmq.protocol.bodies import ResultBody
from operone_zmq.protocol.codec import TAG, Header, encode_header


def _result(jid: str, value: object) -> list[bytes]:
    h = Header(int(MsgType.RESULT), jid, "n1.w1", "", 8, 0, 2, None)
    return [TAG, encode_header(h), ResultBody(value, "n1", 0.25, 2).pack()]


def test_a_result_is_a_frozen_comparable_hashable_job_result() -> None:
    c = ClientCore("c1")
    reply = c.on_message(_result("j1", {"x": [1, 2]}))
    assert reply is not None and reply.kind == "result"
    r = reply.value
    assert type(r) is JobResult
    assert r == JobResult("j1", {"x": [1, 2]}, "n1", 0.25, 2)
    assert repr(r) == ("JobResult(job_id='j1', value={'x': [1, 2]}, executed_on='n1',"
                       " duration=0.25, attempts=2)")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.value = 3  # type: ignore[misc]
    assert dataclasses.replace(r, attempts=1).attempts == 1
    assert hash(c.on_message(_result("j2", 5)).value) == hash(  # type: ignore[union-attr]
        JobResult("j2", 5, "n1", 0.25, 2))
