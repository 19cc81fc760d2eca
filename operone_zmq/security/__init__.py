"""Security: CurveZMQ keys and the trust store, and JSON Web Tokens."""

from __future__ import annotations

from operone_zmq.security.keys import (
    MAX_PENDING_KEYS,
    NAME_PATTERN,
    KeyPair,
    TrustedKey,
    TrustStore,
    fingerprint,
    generate_keypair,
    load_keypair,
    parse_public_key,
    validate_name,
)
from operone_zmq.security.tokens import (
    ALLOWED_ALGORITHMS,
    MIN_SECRET_BYTES,
    REQUIRED_CLAIMS,
    generate_jwt,
    verify_jwt,
)

__all__ = [
    # Curve keys (keys.py)
    "KeyPair",
    "fingerprint",
    "generate_keypair",
    "load_keypair",
    "parse_public_key",
]
__all__ += [
    # trust store (keys.py)
    "MAX_PENDING_KEYS",
    "NAME_PATTERN",
    "TrustStore",
    "TrustedKey",
    "validate_name",
]
__all__ += [
    # tokens (tokens.py)
    "ALLOWED_ALGORITHMS",
    "MIN_SECRET_BYTES",
    "REQUIRED_CLAIMS",
    "generate_jwt",
    "verify_jwt",
]
