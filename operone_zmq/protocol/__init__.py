"""Wire protocol v1 (no I/O): message types, header codec and bodies.

See docs/protocol.md for the specification this package implements.
"""

from __future__ import annotations

from .bodies import (
    Cancel,
    Disconnect,
    ErrorBody,
    Heartbeat,
    JobRequest,
    Progress,
    Query,
    Ready,
    ResultBody,
    ToolInfo,
    pack_value,
    unpack_value,
)
from .codec import TAG, Header, Message, MsgType, decode, decode_header, encode, encode_header
from .limits import DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_TTL, MAX_ID_LEN, VERSION

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_TTL",
    "MAX_ID_LEN",
    "TAG",
    "VERSION",
    "Cancel",
    "Disconnect",
    "ErrorBody",
    "Header",
    "Heartbeat",
    "JobRequest",
    "Message",
    "MsgType",
    "Progress",
    "Query",
    "Ready",
    "ResultBody",
    "ToolInfo",
    "decode",
    "decode_header",
    "encode",
    "encode_header",
    "pack_value",
    "unpack_value",
]
