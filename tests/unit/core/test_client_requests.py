"""What a client core sends: its ids and headers are the ones the protocol
documents (core/client.py builds them without str.format and without a
Header NamedTuple, for speed; these pin the bytes)."""

from __future__ import annotations

import re

from operone_zmq.core.client import ClientCore
from operone_zmq.protocol import MsgType
from operone_zmq.protocol.codec import TAG, Header, decode, encode_header
from operone_zmq.protocol.limits import DEFAULT_TTL


def test_ids_are_the_prefix_and_a_hex_counter_unique_and_within_64_characters() -> None:
    c = ClientCore("x" * 80)  # a long client id is cut to leave room for the counter
    ids = [c.next_id() for _ in range(300)]
    assert len(set(ids)) == 300
    assert all(re.fullmatch(r"x{40}-[0-9a-f]{8}-[0-9a-f]+", i) for i in ids)
    assert ids[0].endswith("-1") and ids[9].endswith("-a") and ids[255].endswith("-100")
    c._seq = 2**56 - 2  # the counter's last value that keeps an id within 64 characters
    assert len(c.next_id()) == 64


def test_a_job_header_is_the_header_tuple_encoded() -> None:
    c = ClientCore("me", wall=lambda: 1234.5678)
    jid, frames = c.job("echo", {"a": 1}, cls=1, on="n2")
    assert frames[0] == TAG
    assert frames[1] == encode_header(Header(int(MsgType.JOB), jid, "me", "n2", DEFAULT_TTL,
                                             1234567, 1, None))
    h = decode(frames).header
    assert (h.type, h.id, h.src, h.dst, h.ttl, h.ts, h.cls, h.corr) == (
        int(MsgType.JOB), jid, "me", "n2", DEFAULT_TTL, 1234567, 1, None)


def test_an_anonymous_clients_queries_and_pings_name_no_source() -> None:
    c = ClientCore(wall=lambda: 1.0)
    qid, frames = c.query("stats", cls=0)
    assert decode(frames).header == Header(int(MsgType.QUERY), qid, "", "", DEFAULT_TTL,
                                           1000, 0, None)
    pid, frames = c.ping(3)
    assert decode(frames).header == Header(int(MsgType.PING), pid, "", "", DEFAULT_TTL,
                                           1000, 3, None)
