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
  frame as :class:`SigFrame`;
* or, instead of the Ed25519 signature of a routed message, a **pairwise
  MAC** (revision 8): keyed BLAKE2b-256 over the same bytes, with a key that
  only the signing and the verifying broker can derive (X25519 between their
  Ed25519 keys, converted: :meth:`KeyRing.mac_for`).  A routed message is
  verified by one node only, so a MAC proves to it what a signature would,
  at about 2 us instead of 140 (sign + verify) on this project's machines;
  a BROADCAST, verified by every node, and an LSA stay signed.
* or (revision 10, frame version 3) a pairwise MAC over
  :func:`message_mac3_parts`: the domain tag ``OZ-MSG-3``, the msgpack array
  of the same header fields and the body's size, then the body itself when
  it is at most :data:`MAC3_INLINE_MAX` bytes, else its SHA-256.  A routed
  job's four SHA-256 runs (each end hashes each body) are its biggest cost
  on the critical path at one job in flight (~5 us each, cold); a small body
  is simply fed to the keyed BLAKE2b.
* an LSA's **features** (``["mac", "mac3"]``: "I verify pairwise MACs",
  "... of version 3 too") are signed
  by :func:`lsa_ext_signed_bytes` in the LSA's ``xsig``, beside the ``sig``
  older brokers verify; a relay can strip them (the pair then falls back to
  Ed25519) but not add them.

A relay can therefore neither forge nor alter either; it can only drop.

Signing and verifying are libsodium's (PyNaCl, already installed for
paramiko): the same RFC 8032 signatures as OpenSSL's, about twice as fast
here, and strict about non-canonical encodings.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import msgpack
import msgspec
from nacl.bindings import (
    crypto_scalarmult,
    crypto_sign,
    crypto_sign_ed25519_pk_to_curve25519,
    crypto_sign_ed25519_sk_to_curve25519,
    crypto_sign_open,
    crypto_sign_seed_keypair,
)
from nacl.exceptions import CryptoError

from ..errors import ProtocolError
from .frame import Frame
from .limits import MAX_SIGNATURE_SIZE

__all__ = [
    "FEATURE_MAC",
    "FEATURE_MAC3",
    "MAC3_INLINE_MAX",
    "MAC3_VERSION",
    "MAC_LEN",
    "MAC_VERSION",
    "SIGNATURE_LEN",
    "SIG_VERSION",
    "KeyRing",
    "SigFrame",
    "Signer",
    "lsa_ext_signed_bytes",
    "lsa_signed_bytes",
    "message_mac3_parts",
    "message_signed_bytes",
]

#: An Ed25519 signature.
SIGNATURE_LEN: Final = 64
#: An Ed25519 public key and seed (secret key).
PUBLIC_KEY_LEN: Final = 32
SEED_LEN: Final = 32
#: First element of a signature frame.
SIG_VERSION: Final = 1
#: First element of a frame carrying a pairwise MAC instead (revision 8).
MAC_VERSION: Final = 2
#: A pairwise MAC: BLAKE2b's full 256 bits, so forging one is as hard as
#: finding the key.
MAC_LEN: Final = 32
#: First element of a frame carrying a pairwise MAC of version 3 (revision
#: 10): over :func:`message_mac3_parts` instead of the bytes a signature signs.
MAC3_VERSION: Final = 3
#: The LSA feature of a broker that verifies pairwise MACs.
FEATURE_MAC: Final = "mac"
#: The LSA feature of a broker that verifies version-3 MACs too (revision 10).
FEATURE_MAC3: Final = "mac3"
#: A body of at most this many bytes is MAC'd as it is (version 3); a bigger
#: one by its SHA-256 (OpenSSL's SHA-256 runs about twice as fast as BLAKE2b
#: here on big bodies; on small ones its setup is what costs).
MAC3_INLINE_MAX: Final = 1024

_LSA_TAG: Final = b"OZ-LSA-1\x00"
_LSA_EXT_TAG: Final = b"OZ-LSA-2\x00"
_MSG_TAG: Final = b"OZ-MSG-1\x00"
_MSG3_TAG: Final = b"OZ-MSG-3\x00"
_PAIR_TAG: Final = b"OZ-PAIR-1\x00"

#: Node ids whose public keys a :class:`KeyRing` keeps parsed (bounded:
#: a node id not in the trust store is never cached).
MAX_CACHED_KEYS: Final = 10_000


# The bytes signed and the signature frame are encoded by msgspec: a list
# of ints, strs, bytes and nil is the same msgpack either way (the smallest
# forms; tests/unit/protocol/test_fast_decode.py checks it against
# msgpack.packb), without a Packer built per call (msgpack.packb: ~5k
# instructions of the ~15k each signed message cost).  A frame is decoded,
# typed, in one C call; what that refuses goes through the checks in
# SigFrame.unpack, which name the first violation, so both accept and
# refuse exactly the same frames.
_encode: Final = msgspec.msgpack.Encoder().encode
_Str64 = Annotated[str, msgspec.Meta(max_length=64)]
_fast_sig_frame: Final = msgspec.msgpack.Decoder(
    tuple[Literal[1, 2, 3], bytes | None, tuple[_Str64, _Str64] | None,
          Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None]).decode


def _packed(value: list[Any]) -> bytes:
    try:
        return _encode(value)
    except (TypeError, ValueError, OverflowError):  # not ours: msgpack says why
        packed: bytes = msgpack.packb(value, use_bin_type=True)
        return packed


def lsa_signed_bytes(wire: dict[str, Any]) -> bytes:
    """The bytes an LSA's origin signs: its known fields in wire order."""
    fields = [wire.get(k) for k in ("origin", "seq", "links", "tools", "capabilities", "load",
                                    "workers", "public_key", "kind", "name", "max_age")]
    if wire.get("incarnation"):
        # Signed too (when there is one): a relay must not fake a restart.
        fields.append(wire["incarnation"])
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return _LSA_TAG + packed


def lsa_ext_signed_bytes(wire: dict[str, Any]) -> bytes:
    """The bytes of an LSA's ``xsig``: the eleven fields, its incarnation
    (0 included) and its features, so a relay can neither add a feature nor
    change anything else."""
    fields = [wire.get(k) for k in ("origin", "seq", "links", "tools", "capabilities", "load",
                                    "workers", "public_key", "kind", "name", "max_age")]
    fields.append(wire.get("incarnation", 0))
    fields.append(list(wire.get("features", ())))
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return _LSA_EXT_TAG + packed


def message_signed_bytes(t: int, mid: str, src: str, dst: str, ts: int, cls: int,
                         corr: str | None, client: tuple[str, str] | None,
                         body: Frame) -> bytes:
    """The bytes the origin of a routed message signs (every header field
    but the ttl, the client it acts for, and the body's SHA-256)."""
    digest = hashlib.sha256(body).digest()
    # (A tuple is a msgpack array too: ``client`` goes as it is.)
    return _MSG_TAG + _packed([t, mid, src, dst, ts, cls, corr, client, digest])


def message_mac3_parts(t: int, mid: str, src: str, dst: str, ts: int, cls: int,
                       corr: str | None, client: tuple[str, str] | None,
                       body: Frame) -> tuple[bytes, Frame]:
    """What a version-3 MAC covers, in two parts fed to it one after the
    other: ``OZ-MSG-3\\0`` + the msgpack array of the signed header fields
    and the body's size, then the body itself when it is at most
    :data:`MAC3_INLINE_MAX` bytes, else its SHA-256.  The size comes first,
    so a body that *is* some big body's digest is not that big body."""
    size = len(body)
    head = _MSG3_TAG + _packed([t, mid, src, dst, ts, cls, corr, client, size])
    return head, body if size <= MAC3_INLINE_MAX else hashlib.sha256(body).digest()


# (init=False and an __init__ of its own: made twice per signed job, and
# compiled by mypyc a dataclass's generated __init__ stays interpreted, 6k
# instructions; tests/unit/test_hot_classes.py.)
@dataclass(frozen=True, slots=True, init=False)
class SigFrame:
    """The fourth frame of a signed message: ``[1, signature, client, signer]``,
    or ``[2, mac, client, signer]`` with a pairwise MAC (``version`` 2; 3:
    the same, over :func:`message_mac3_parts`).

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
    version: int = SIG_VERSION

    def __init__(self, sig: bytes | None, client: tuple[str, str] | None = None,
                 signer: str | None = None, version: int = SIG_VERSION) -> None:
        object.__setattr__(self, "sig", sig)
        object.__setattr__(self, "client", client)
        object.__setattr__(self, "signer", signer)
        object.__setattr__(self, "version", version)

    def pack(self) -> bytes:
        return _packed([self.version, self.sig, self.client, self.signer])

    @classmethod
    def unpack(cls, frame: Frame) -> SigFrame:
        if len(frame) > MAX_SIGNATURE_SIZE:
            raise ProtocolError("signature frame is too large")
        fast = _fast_unpack(frame)
        if fast is not None:
            return fast
        try:
            v = msgpack.unpackb(frame, raw=False, use_list=False)
        except Exception as exc:  # msgpack raises several unrelated types
            raise ProtocolError("signature frame is not valid msgpack") from exc
        if (type(v) is not tuple or len(v) != 4 or type(v[0]) is not int
                or v[0] not in (SIG_VERSION, MAC_VERSION, MAC3_VERSION)):
            raise ProtocolError("signature frame must be [1, signature, client, signer],"
                                " [2, mac, client, signer] or [3, mac, client, signer]")
        version, sig, client, signer = v
        if version != SIG_VERSION:
            if type(sig) is not bytes or len(sig) != MAC_LEN:
                raise ProtocolError("a MAC must be 32 bytes")
        elif sig is None:
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
        return cls(sig, client, signer, version)


def _fast_unpack(frame: Frame) -> SigFrame | None:
    """A well-formed signature frame decoded in one typed call; None for
    anything else (SigFrame.unpack's checks then say what is wrong).  A
    function of its own: compiled, its typed locals would refuse the other
    types the checks must see."""
    try:
        version, sig, client, signer = _fast_sig_frame(frame)
    except Exception:  # refused: the checks say why
        return None
    if sig is None:
        ok = version == SIG_VERSION and signer is None
    else:
        ok = len(sig) == (SIGNATURE_LEN if version == SIG_VERSION else MAC_LEN)
    return SigFrame(sig, client, signer, version) if ok else None


class Signer:
    """A node's Ed25519 signing key."""

    __slots__ = ("_sk", "_x_sk", "public", "public_hex")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_LEN:
            raise ValueError("an Ed25519 seed is 32 bytes")
        self.public, self._sk = crypto_sign_seed_keypair(seed)
        self.public_hex = self.public.hex()
        #: The same key as an X25519 secret, for pairwise MAC keys.
        self._x_sk = crypto_sign_ed25519_sk_to_curve25519(self._sk)

    @classmethod
    def generate(cls) -> Signer:
        return cls(os.urandom(SEED_LEN))

    @classmethod
    def from_seed(cls, seed: bytes) -> Signer:
        return cls(seed)

    def sign(self, data: bytes) -> bytes:
        signed: bytes = crypto_sign(data, self._sk)
        return signed[:SIGNATURE_LEN]

    def pair_keys(self, their_public: bytes) -> tuple[bytes, bytes]:
        """The MAC keys (from us to them, from them to us) shared with the
        holder of Ed25519 key ``their_public``: X25519 between the two keys
        converted to Curve25519, hashed with both public keys in the
        direction's order.  ValueError for a key that is no valid point or
        of small order (libsodium refuses an all-zero shared secret)."""
        try:
            shared = crypto_scalarmult(self._x_sk, crypto_sign_ed25519_pk_to_curve25519(
                their_public))
        except (CryptoError, RuntimeError, TypeError) as exc:
            raise ValueError("not a usable Ed25519 public key") from exc
        mine = self.public
        out = hashlib.blake2b(_PAIR_TAG + mine + their_public, key=shared,
                             digest_size=32).digest()
        back = hashlib.blake2b(_PAIR_TAG + their_public + mine, key=shared,
                              digest_size=32).digest()
        return out, back


class KeyRing:
    """Who may sign as which node: node id -> Ed25519 public key (hex), from
    a lookup (the trust store), decoded once per key; with our own
    ``signer``, also the pairwise MAC keys shared with each such node
    (derived once per key: an X25519 costs about as much as a verify)."""

    def __init__(self, lookup: Callable[[str], str | None],
                 signer: Signer | None = None) -> None:
        self._lookup = lookup
        self._signer = signer
        self._parsed: dict[str, tuple[str, bytes]] = {}
        #: node -> (its key's hex, MAC to it, MAC from it): each a keyed
        #: BLAKE2b that has hashed nothing yet, copied per message (half the
        #: cost of keying one anew).
        self._pairs: dict[str, tuple[str, Any, Any]] = {}

    def knows(self, node: str) -> bool:
        return bool(self._lookup(node))

    def _public(self, node: str) -> bytes | None:
        hex_key = self._lookup(node)
        if not hex_key:
            return None
        cached = self._parsed.get(node)
        if cached is None or cached[0] != hex_key:
            try:
                pub = bytes.fromhex(hex_key)
            except ValueError:
                return None
            if len(pub) != PUBLIC_KEY_LEN:
                return None
            if len(self._parsed) >= MAX_CACHED_KEYS:
                self._parsed.clear()
            self._parsed[node] = cached = (hex_key, pub)
        return cached[1]

    def verify(self, node: str, sig: bytes, data: bytes) -> bool:
        """Did ``node``'s key sign ``data``?  False also when its key is unknown."""
        pub = self._public(node)
        if pub is None or len(sig) != SIGNATURE_LEN:
            return False
        try:
            crypto_sign_open(sig + data, pub)
        except (CryptoError, ValueError):
            return False
        return True

    def _pair(self, node: str) -> tuple[str, Any, Any] | None:
        """The MAC keys shared with ``node`` under its current trusted key
        (None: no signer, key unknown or unusable)."""
        signer = self._signer
        if signer is None:
            return None
        hex_key = self._lookup(node)
        if not hex_key:
            return None
        pair = self._pairs.get(node)
        if pair is not None and pair[0] == hex_key:
            return pair
        pub = self._public(node)
        if pub is None:
            return None
        try:
            out, back = signer.pair_keys(pub)
        except ValueError:
            return None
        if len(self._pairs) >= MAX_CACHED_KEYS:
            self._pairs.clear()
        self._pairs[node] = pair = (hex_key, hashlib.blake2b(key=out, digest_size=MAC_LEN),
                                    hashlib.blake2b(key=back, digest_size=MAC_LEN))
        return pair

    def mac_for(self, node: str, data: bytes, more: Frame = b"") -> bytes | None:
        """Our pairwise MAC of ``data`` (followed by ``more``: the MAC of
        their concatenation, without making it) for ``node`` to verify
        (None: no key)."""
        pair = self._pair(node)
        if pair is None:
            return None
        h = pair[1].copy()
        h.update(data)
        if more:
            h.update(more)
        mac: bytes = h.digest()
        return mac

    def mac_ok(self, node: str, mac: bytes, data: bytes, more: Frame = b"") -> bool:
        """Is ``mac`` the pairwise MAC of ``data`` + ``more`` from ``node`` to us?"""
        pair = self._pair(node)
        if pair is None or len(mac) != MAC_LEN:
            return False
        h = pair[2].copy()
        h.update(data)
        if more:
            h.update(more)
        return hmac.compare_digest(h.digest(), mac)
