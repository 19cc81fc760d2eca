"""Tests of JSON Web Token creation and verification."""

from __future__ import annotations

import time

import jwt
import pytest
import zmq

from operone_zmq.errors import AuthenticationError, ConfigError
from operone_zmq.security import generate_jwt, verify_jwt

SECRET = "s" * 32
OTHER_SECRET = b"o" * 32
NOW = 1_700_000_000.0


def test_round_trip_claims() -> None:
    """A fresh token verifies and carries sub, aud, iat, exp, jti and extra claims."""
    token = generate_jwt(SECRET, "node-a", "prod", ttl=60, now=NOW, extra={"role": "broker"})
    claims = verify_jwt(token, SECRET, "prod", expected_subject="node-a", now=NOW + 1)
    assert claims["sub"] == "node-a"
    assert claims["aud"] == "prod"
    assert claims["iat"] == int(NOW)
    assert claims["exp"] == int(NOW + 60)
    assert isinstance(claims["jti"], str)
    assert len(claims["jti"]) == 32
    assert claims["role"] == "broker"
    assert "ck" not in claims
    other = generate_jwt(SECRET, "node-a", "prod", ttl=60, now=NOW)
    assert jwt.decode(other, options={"verify_signature": False})["jti"] != claims["jti"]


def test_default_clock_is_wall_time() -> None:
    """Without now, tokens are issued and checked against the current time."""
    token = generate_jwt(SECRET.encode(), "c", "prod")
    claims = verify_jwt(token, SECRET.encode(), "prod")
    assert abs(claims["iat"] - time.time()) < 5


def test_curve_key_binding() -> None:
    """The ck claim holds the Z85 key and must match the authenticated key."""
    key, other = zmq.curve_keypair()[0], zmq.curve_keypair()[0]
    token = generate_jwt(SECRET, "node-a", "prod", curve_key=key, now=NOW)
    claims = verify_jwt(token, SECRET, "prod", expected_curve_key=key, now=NOW)
    assert claims["ck"] == key.decode()
    with pytest.raises(AuthenticationError, match="bound to another Curve key"):
        verify_jwt(token, SECRET, "prod", expected_curve_key=other, now=NOW)
    unbound = generate_jwt(SECRET, "node-a", "prod", now=NOW)
    with pytest.raises(AuthenticationError, match="not bound to a Curve key"):
        verify_jwt(unbound, SECRET, "prod", expected_curve_key=key, now=NOW)


def test_expiry_uses_the_given_clock_and_leeway() -> None:
    """A token expires at exp, give or take the leeway, by the caller's clock."""
    token = generate_jwt(SECRET, "n", "prod", ttl=100, now=NOW)
    verify_jwt(token, SECRET, "prod", now=NOW + 104)  # within the 5 s leeway
    with pytest.raises(AuthenticationError, match=r"^token expired$"):
        verify_jwt(token, SECRET, "prod", now=NOW + 105)
    with pytest.raises(AuthenticationError, match=r"^token expired$"):
        verify_jwt(token, SECRET, "prod", now=NOW + 101, leeway=0)


def test_issued_in_the_future() -> None:
    """A token whose iat is past now + leeway is refused."""
    token = generate_jwt(SECRET, "n", "prod", now=NOW + 60)
    with pytest.raises(AuthenticationError, match="issued in the future"):
        verify_jwt(token, SECRET, "prod", now=NOW)


def test_bad_signature() -> None:
    """A token signed with another secret is refused with a signature error."""
    token = generate_jwt(OTHER_SECRET, "n", "prod", now=NOW)
    with pytest.raises(AuthenticationError, match="signature is invalid") as info:
        verify_jwt(token, SECRET, "prod", now=NOW)
    assert isinstance(info.value.__cause__, jwt.InvalidSignatureError)


def test_wrong_audience() -> None:
    """A token for another cluster is refused."""
    token = generate_jwt(SECRET, "n", "staging", now=NOW)
    with pytest.raises(AuthenticationError, match="not for cluster 'prod'"):
        verify_jwt(token, SECRET, "prod", now=NOW)


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "x" * 100])
def test_malformed(token: str) -> None:
    """Garbage is a malformed token."""
    with pytest.raises(AuthenticationError, match="malformed token"):
        verify_jwt(token, SECRET, "prod", now=NOW)


def test_malformed_time_claims() -> None:
    """exp and iat must be numbers."""
    token = jwt.encode({"sub": "n", "aud": "prod", "iat": "soon", "exp": NOW + 10}, SECRET)
    with pytest.raises(AuthenticationError, match="malformed token: claim 'iat'"):
        verify_jwt(token, SECRET, "prod", now=NOW)


def test_subject_mismatch() -> None:
    """A peer cannot present a token issued to someone else."""
    token = generate_jwt(SECRET, "a", "prod", now=NOW)
    with pytest.raises(AuthenticationError) as info:
        verify_jwt(token, SECRET, "prod", expected_subject="b", now=NOW)
    assert str(info.value) == "token was issued to 'a' but the peer claims to be 'b'"


@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "aud"])
def test_missing_required_claims(missing: str) -> None:
    """Tokens lacking exp, iat, sub or aud are refused, naming the claim."""
    claims = {"sub": "n", "aud": "prod", "iat": int(NOW), "exp": int(NOW) + 60}
    del claims[missing]
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    with pytest.raises(AuthenticationError, match=f"missing the required claim '{missing}'"):
        verify_jwt(token, SECRET, "prod", now=NOW)


def test_alg_none_is_refused() -> None:
    """An unsigned token (alg none) is never accepted."""
    claims = {"sub": "n", "aud": "prod", "iat": int(NOW), "exp": int(NOW) + 60}
    token = jwt.encode(claims, "", algorithm="none")
    with pytest.raises(AuthenticationError, match="algorithm is not allowed"):
        verify_jwt(token, SECRET, "prod", now=NOW)
    with pytest.raises(ConfigError):
        verify_jwt(token, SECRET, "prod", now=NOW, algorithms=["none"])


def test_other_hmac_algorithm_only_when_allowed() -> None:
    """HS512 tokens verify only when HS512 is among the accepted algorithms."""
    long_secret = "L" * 64
    token = generate_jwt(long_secret, "n", "prod", now=NOW, algorithm="HS512")
    with pytest.raises(AuthenticationError, match="algorithm"):
        verify_jwt(token, long_secret, "prod", now=NOW)
    assert verify_jwt(token, long_secret, "prod", now=NOW, algorithms=["HS512"])["sub"] == "n"
    with pytest.raises(ConfigError, match="at least 64 bytes"):
        generate_jwt(SECRET, "n", "prod", algorithm="HS512")


def test_bad_arguments_are_config_errors() -> None:
    """Short secrets, bad ttl, empty ids and reserved extra claims are refused up front."""
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        generate_jwt("short", "n", "prod")
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        verify_jwt("a.b.c", "short", "prod")
    with pytest.raises(ConfigError, match="ttl"):
        generate_jwt(SECRET, "n", "prod", ttl=0)
    with pytest.raises(ConfigError, match="subject"):
        generate_jwt(SECRET, "", "prod")
    with pytest.raises(ConfigError, match="audience"):
        generate_jwt(SECRET, "n", "")
    with pytest.raises(ConfigError, match="may not set"):
        generate_jwt(SECRET, "n", "prod", extra={"sub": "someone-else"})
    with pytest.raises(ConfigError, match="algorithm"):
        generate_jwt(SECRET, "n", "prod", algorithm="RS256")
    with pytest.raises(ConfigError):
        generate_jwt(SECRET, "n", "prod", curve_key=b"not a key")
