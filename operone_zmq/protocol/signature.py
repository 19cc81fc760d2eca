"""End-to-end signatures: Ed25519 over what a message or an LSA says (no I/O).

Every broker has an Ed25519 signing key beside its Curve key
(``keys/node.sign_secret``); the trust store binds its public half (64 hex
digits) to the node id (``operone keys accept NODE KEY --signing-key HEX``).
What is signed:

* an LSA: :func:`lsa_signed_bytes`, the domain tag ``OZ-LSA-1`` and the
  msgpack array of the LSA's eleven fields in wire order (links as
  4-element lists), carried in the LSA's ``sig`` key (64 bytes);
* a routed message (JOB, RESULT, ERROR, CANCEL, PROGRESS) or a BROADCAST:
  :func:`message_signed_bytes`, the domain tag ``OZ-MSG-1`` and the msgpack
  array ``[type, id, src, dst, ts, cls, corr, client, sha256(body)]`` --
  every header field but ``ttl`` (relays lower it) -- carried in the fourth
  frame as :class:`SigFrame`.

A relay can therefore neither forge nor alter either; it can only drop.

Signing and verifying are libsodium's (PyNaCl, already installed for
paramiko): the same RFC 8032 signatures as OpenSSL's, about twice as fast
here, and strict about non-canonical encodings.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
from nacl.exceptions import CryptoError

from ..errors import ProtocolError
from .limits import MAX_SIGNATURE_SIZE

__all__ = [
    "SIGNATURE_LEN",
    "SIG_VERSION",
    "KeyRing",
    "SigFrame",
    "Signer",
    "lsa_signed_bytes",
    "message_signed_bytes",
]

#: An Ed25519 signature.
SIGNATURE_LEN = 64
#: An Ed25519 public key and seed (secret key).
PUBLIC_KEY_LEN = 32
SEED_LEN = 32
#: First element of a signature frame.
SIG_VERSION = 1

_LSA_TAG = b"OZ-LSA-1\x00"
_MSG_TAG = b"OZ-MSG-1\x00"

#: Node ids whose public keys a :class:`KeyRing` keeps parsed (bounded:
#: a node id not in the trust store is never cached).
MAX_CACHED_KEYS = 10_000


def lsa_signed_bytes(wire: dict[str, Any]) -> bytes:
    """The bytes an LSA's origin signs: its known fields in wire order."""
    fields = [wire.get(k) for k in ("origin", "seq", "links", "tools", "capabilities", "load",
                                    "workers", "public_key", "kind", "name", "max_age")]
    if wire.get("incarnation"):
        # Signed too (when there is one): a relay must not fake a restart.
        fields.append(wire["incarnation"])
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return _LSA_TAG + packed


def message_signed_bytes(t: int, mid: str, src: str, dst: str, ts: int, cls: int,
                         corr: str | None, client: tuple[str, str] | None,
                         body: bytes) -> bytes:
    """The bytes the origin of a routed message signs (every header field
    but the ttl, the client it acts for, and the body's SHA-256)."""
    digest = hashlib.sha256(body).digest()
    packed: bytes = msgpack.packb(
        [t, mid, src, dst, ts, cls, corr, None if client is None else list(client), digest],
        use_bin_type=True)
    return _MSG_TAG + packed


@dataclass(frozen=True, slots=True)
class SigFrame:
    """The fourth frame of a signed message: ``[1, signature, client, signer]``.

    ``client`` is ``[fingerprint, role]`` of the client key a JOB was
    submitted with (nil otherwise); ``signer`` is the node whose key signed,
    nil when it is the header's ``src`` (an SSH host's messages are signed by
    the broker serving it).  ``sig`` is None (nil) on a client's JOB sent
    unsigned straight from its origin to its destination (revision 5): the
    frame then only carries ``client``, and ``signer`` is nil.
    """

    sig: bytes | None
    client: tuple[str, str] | None = None
    signer: str | None = None

    def pack(self) -> bytes:
        packed: bytes = msgpack.packb([SIG_VERSION, self.sig,
                                       None if self.client is None else list(self.client),
                                       self.signer], use_bin_type=True)
        return packed

    @classmethod
    def unpack(cls, frame: bytes) -> SigFrame:
        if len(frame) > MAX_SIGNATURE_SIZE:
            raise ProtocolError("signature frame is too large")
        try:
            v = msgpack.unpackb(frame, raw=False, use_list=False)
        except Exception as exc:  # msgpack raises several unrelated types
            raise ProtocolError("signature frame is not valid msgpack") from exc
        if type(v) is not tuple or len(v) != 4 or v[0] != SIG_VERSION:
            raise ProtocolError("signature frame must be [1, signature, client, signer]")
        _, sig, client, signer = v
        if sig is None:
            if signer is not None:
                raise ProtocolError("an unsigned frame names no signer")
        elif type(sig) is not bytes or len(sig) != SIGNATURE_LEN:
            raise ProtocolError("signature must be 64 bytes or nil")
        if client is not None and not (
                type(client) is tuple and len(client) == 2
                and all(type(c) is str and len(c) <= 64 for c in client)):
            raise ProtocolError("signature client must be nil or [fingerprint, role]")
        if signer is not None and (type(signer) is not str or not 0 < len(signer) <= 64):
            raise ProtocolError("signature signer must be nil or a node id")
        return cls(sig, client, signer)


class Signer:
    """A node's Ed25519 signing key."""

    __slots__ = ("_sk", "public_hex")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_LEN:
            raise ValueError("an Ed25519 seed is 32 bytes")
        pk, self._sk = crypto_sign_seed_keypair(seed)
        self.public_hex = pk.hex()

    @classmethod
    def generate(cls) -> Signer:
        return cls(os.urandom(SEED_LEN))

    @classmethod
    def from_seed(cls, seed: bytes) -> Signer:
        return cls(seed)

    def sign(self, data: bytes) -> bytes:
        signed: bytes = crypto_sign(data, self._sk)
        return signed[:SIGNATURE_LEN]


class KeyRing:
    """Who may sign as which node: node id -> Ed25519 public key (hex), from
    a lookup (the trust store), decoded once per key."""

    def __init__(self, lookup: Callable[[str], str | None]) -> None:
        self._lookup = lookup
        self._parsed: dict[str, tuple[str, bytes]] = {}

    def knows(self, node: str) -> bool:
        return bool(self._lookup(node))

    def verify(self, node: str, sig: bytes, data: bytes) -> bool:
        """Did ``node``'s key sign ``data``?  False also when its key is unknown."""
        hex_key = self._lookup(node)
        if not hex_key:
            return False
        cached = self._parsed.get(node)
        if cached is None or cached[0] != hex_key:
            try:
                pub = bytes.fromhex(hex_key)
            except ValueError:
                return False
            if len(pub) != PUBLIC_KEY_LEN:
                return False
            if len(self._parsed) >= MAX_CACHED_KEYS:
                self._parsed.clear()
            self._parsed[node] = cached = (hex_key, pub)
        if len(sig) != SIGNATURE_LEN:
            return False
        try:
            crypto_sign_open(sig + data, cached[1])
        except (CryptoError, ValueError):
            return False
        return True
