"""Token verification at the gateway: RS256 against a JWKS (production), and the verified-token
cache that keeps signature checks off the hot path."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.auth import TokenVerifier, mint_token
from shared.errors import Unauthorized

SECRET = "a-test-secret-that-is-at-least-32-bytes-long"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks_of(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    public = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {"keys": [{**public, "kid": kid, "use": "sig", "alg": "RS256"}]}


def rs256_token(key: rsa.RSAPrivateKey, kid: str, **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": "https://idp.example", "sub": "clinic-app", "iat": now, "exp": now + 600}
    claims.update({"scope": "user/ServiceRequest.rs", "organization": "org-7"}, **overrides)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def test_rs256_token_signed_by_a_key_in_the_jwks_is_accepted() -> None:
    key = rsa_key()
    verifier = TokenVerifier(hs256_secret=None, jwks=jwks_of(key, "k1"), issuer="https://idp.example")
    principal = verifier.verify(f"Bearer {rs256_token(key, 'k1')}")
    assert principal.subject == "clinic-app" and principal.organization == "org-7"
    assert principal.allows("ServiceRequest", "search") and not principal.allows("ServiceRequest", "create")


def test_rs256_token_signed_by_another_key_is_refused() -> None:
    verifier = TokenVerifier(hs256_secret=None, jwks=jwks_of(rsa_key(), "k1"), issuer="https://idp.example")
    with pytest.raises(Unauthorized, match="Signature verification failed"):
        verifier.verify(f"Bearer {rs256_token(rsa_key(), 'k1')}")


def test_rs256_token_naming_an_unknown_key_is_refused() -> None:
    key = rsa_key()
    verifier = TokenVerifier(hs256_secret=None, jwks=jwks_of(key, "k1"), issuer="https://idp.example")
    with pytest.raises(Unauthorized, match="No key 'k2'"):
        verifier.verify(f"Bearer {rs256_token(key, 'k2')}")


def test_hs256_token_is_refused_where_only_rs256_is_configured() -> None:
    verifier = TokenVerifier(hs256_secret=None, jwks=jwks_of(rsa_key(), "k1"))
    with pytest.raises(Unauthorized, match="HS256"):
        verifier.verify(f"Bearer {mint_token(SECRET, 'system/*.cruds')}")


def test_a_verified_token_is_not_verified_again_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = TokenVerifier(hs256_secret=SECRET, issuer="carebridge-dev")
    token = mint_token(SECRET, "system/*.cruds")
    first = verifier.verify(f"Bearer {token}")
    calls = []
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: calls.append(a) or {})
    assert verifier.verify(f"Bearer {token}") is first
    assert calls == []


def test_a_remembered_token_is_refused_once_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = TokenVerifier(hs256_secret=SECRET, issuer="carebridge-dev")
    token = mint_token(SECRET, "system/*.cruds", ttl_seconds=60)
    verifier.verify(f"Bearer {token}")
    later = time.time() + 120
    monkeypatch.setattr(time, "time", lambda: later)

    def expired(*args: Any, **kwargs: Any) -> None:  # what PyJWT says at that time
        raise jwt.ExpiredSignatureError("Signature has expired")

    monkeypatch.setattr(jwt, "decode", expired)
    with pytest.raises(Unauthorized, match="expired"):
        verifier.verify(f"Bearer {token}")


def test_the_token_cache_is_bounded() -> None:
    verifier = TokenVerifier(hs256_secret=SECRET, issuer="carebridge-dev", cache_size=3)
    tokens = [mint_token(SECRET, "system/*.cruds", subject=f"s{i}") for i in range(5)]
    for token in tokens:
        verifier.verify(f"Bearer {token}")
    assert len(verifier._cache) == 3


def test_a_refused_token_is_not_remembered() -> None:
    verifier = TokenVerifier(hs256_secret=SECRET, issuer="carebridge-dev")
    forged = mint_token("another-secret-that-is-at-least-32-bytes", "system/*.cruds")
    for _ in range(2):
        with pytest.raises(Unauthorized):
            verifier.verify(f"Bearer {forged}")
    assert len(verifier._cache) == 0


async def test_async_verification_gives_the_same_principal() -> None:
    key = rsa_key()
    verifier = TokenVerifier(hs256_secret=SECRET, jwks=jwks_of(key, "k1"), issuer="https://idp.example")
    principal = await verifier.verify_async(f"Bearer {rs256_token(key, 'k1')}")
    assert principal.organization == "org-7"
    with pytest.raises(Unauthorized):
        await verifier.verify_async("Bearer ")
