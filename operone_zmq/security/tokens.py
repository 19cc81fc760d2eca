"""JSON Web Tokens (pyjwt, HMAC) binding a node or client id to its Curve key.

A token says "``sub`` may join cluster ``aud`` until ``exp``"; its ``ck``
claim, when present, names the Curve public key (Z85) the holder must have
authenticated with, so a stolen token is useless on another connection.

Time checks are done here, not by pyjwt, against ``now`` when given (unix
seconds), so callers and tests can pass their own clock.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import jwt

from operone_zmq.errors import AuthenticationError, ConfigError
from operone_zmq.security.keys import parse_public_key

__all__ = [
    "ALLOWED_ALGORITHMS",
    "MIN_SECRET_BYTES",
    "REQUIRED_CLAIMS",
    "generate_jwt",
    "verify_jwt",
]

#: Shared-secret algorithms only, each with its shortest secret in bytes (RFC
#: 7518 section 3.2: an HMAC key at least as long as the hash output).  Tokens
#: are signed with the cluster's secret; ``none`` and public-key algorithms
#: are never accepted.
_MIN_SECRET_FOR = {"HS256": 32, "HS384": 48, "HS512": 64}
ALLOWED_ALGORITHMS = frozenset(_MIN_SECRET_FOR)

#: The shortest secret accepted at all (the HS256 default's minimum).
MIN_SECRET_BYTES = _MIN_SECRET_FOR["HS256"]

#: Claims every token must carry.
REQUIRED_CLAIMS = ("exp", "iat", "sub", "aud")

_RESERVED = frozenset({"sub", "aud", "iat", "exp", "jti", "ck"})


def _secret_bytes(secret: str | bytes, algorithms: list[str]) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    need = max(_MIN_SECRET_FOR[a] for a in algorithms)
    if not isinstance(key, bytes) or len(key) < need:
        raise ConfigError(
            f"the JWT secret must be at least {need} bytes long for {', '.join(algorithms)} "
            "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )
    return key


def _check_algorithms(algorithms: Sequence[str]) -> list[str]:
    algs = [algorithms] if isinstance(algorithms, str) else list(algorithms)
    bad = [a for a in algs if a not in ALLOWED_ALGORITHMS]
    if bad or not algs:
        raise ConfigError(
            f"unsupported JWT algorithm(s) {bad or algs}; use {sorted(ALLOWED_ALGORITHMS)}"
        )
    return algs


def generate_jwt(
    secret: str | bytes,
    subject: str,
    audience: str,
    *,
    ttl: float = 3600,
    curve_key: bytes | None = None,
    now: float | None = None,
    extra: Mapping[str, Any] | None = None,
    algorithm: str = "HS256",
) -> str:
    """Return a signed token for ``subject`` in cluster ``audience``, valid for ``ttl`` seconds."""
    algs = _check_algorithms([algorithm])
    key = _secret_bytes(secret, algs)
    if not subject or not isinstance(subject, str):
        raise ConfigError("a JWT needs a non-empty subject (the node or client id)")
    if not audience or not isinstance(audience, str):
        raise ConfigError("a JWT needs a non-empty audience (the cluster name)")
    if not ttl > 0 or not math.isfinite(ttl):
        raise ConfigError(f"token ttl must be a positive number of seconds, not {ttl!r}")
    issued = time.time() if now is None else now
    claims: dict[str, Any] = dict(extra or {})
    reserved = _RESERVED.intersection(claims)
    if reserved:
        raise ConfigError(f"extra claims may not set {sorted(reserved)}")
    claims.update(
        sub=subject,
        aud=audience,
        iat=int(issued),
        exp=int(issued + ttl),
        jti=uuid.uuid4().hex,
    )
    if curve_key is not None:
        claims["ck"] = parse_public_key(curve_key).decode("ascii")
    return jwt.encode(claims, key, algorithm=algs[0])


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AuthenticationError(f"malformed token: claim {name!r} is not a number")
    return float(value)


def verify_jwt(
    token: str,
    secret: str | bytes,
    audience: str,
    *,
    expected_subject: str | None = None,
    expected_curve_key: bytes | None = None,
    now: float | None = None,
    leeway: float = 5.0,
    algorithms: Sequence[str] = ("HS256",),
) -> dict[str, Any]:
    """Check a token's signature, audience, times, subject and Curve key; return its claims."""
    algs = _check_algorithms(algorithms)
    key = _secret_bytes(secret, algs)
    if not isinstance(token, str) or not token:
        raise AuthenticationError("malformed token: empty")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=algs,
            audience=audience,
            options={
                "require": list(REQUIRED_CLAIMS),
                "verify_exp": False,  # checked below against `now`
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidSignatureError as exc:
        raise AuthenticationError("token signature is invalid (wrong secret?)") from exc
    except jwt.InvalidAlgorithmError as exc:
        raise AuthenticationError(
            f"token signing algorithm is not allowed (accepted: {', '.join(algs)})"
        ) from exc
    except jwt.MissingRequiredClaimError as exc:
        raise AuthenticationError(f"token is missing the required claim {exc.claim!r}") from exc
    except jwt.InvalidAudienceError as exc:
        raise AuthenticationError(f"token is not for cluster {audience!r}: {exc}") from exc
    except jwt.InvalidTokenError as exc:  # DecodeError and the rest
        raise AuthenticationError(f"malformed token: {exc}") from exc

    t = time.time() if now is None else now
    exp, iat = _number(claims, "exp"), _number(claims, "iat")
    if exp <= t - leeway:
        raise AuthenticationError("token expired")
    if iat > t + leeway:
        raise AuthenticationError("token was issued in the future (check the clocks)")
    if "nbf" in claims and _number(claims, "nbf") > t + leeway:
        raise AuthenticationError("token is not valid yet (nbf)")

    subject = claims["sub"]
    if not isinstance(subject, str):
        raise AuthenticationError("malformed token: claim 'sub' is not a string")
    if expected_subject is not None and subject != expected_subject:
        raise AuthenticationError(
            f"token was issued to {subject!r} but the peer claims to be {expected_subject!r}"
        )
    if expected_curve_key is not None:
        expected = parse_public_key(expected_curve_key).decode("ascii")
        bound = claims.get("ck")
        if bound is None:
            raise AuthenticationError("token is not bound to a Curve key (no 'ck' claim)")
        if bound != expected:
            raise AuthenticationError(
                "token is bound to another Curve key than the one the peer authenticated with"
            )
    return claims
