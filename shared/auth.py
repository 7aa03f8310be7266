"""Bearer tokens and SMART v2 scopes.

Tokens are JWTs: HS256 with a configured secret for development (`carebridge token`), RS256
verified against a JWKS in production. Claims follow SMART App Launch v2
(https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html): `scope` is a space-
separated list such as ``system/*.cruds user/CarePlan.rs patient/*.rs``; `patient` limits a
``patient/`` scope to one Patient; `organization` carries a clinic's Organization id.

A verified token is remembered (by its SHA-256, never the token itself) until it expires, in a
bounded LRU: verifying an HS256 signature costs about as much CPU as the gateway's whole proxy
hop, an RS256 one several times that, and a client sends the same token with every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import jwt

from shared.errors import Forbidden, Unauthorized

#: SMART v2 scope: context/resourceType.permissions, e.g. user/CarePlan.rs (v1 .read/.write/.*
#: are accepted and translated, as SMART v2 servers commonly do).
_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.(\*|read|write|[cruds]+)$")
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}

#: FHIR interaction → SMART v2 permission letter.
INTERACTION_PERMISSION = {
    "create": "c",
    "read": "r",
    "vread": "r",
    "history": "r",
    "update": "u",
    "patch": "u",
    "delete": "d",
    "search": "s",
}


@dataclass(frozen=True, slots=True)
class Scope:
    context: str  # patient | user | system
    resource_type: str  # "*" or a FHIR type
    permissions: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        match = _SCOPE.match(text)
        if not match:
            return None  # not a resource scope (openid, launch, ...): ignored
        context, rtype, perms = match.groups()
        perms = _V1.get(perms, perms)
        return cls(context, rtype, frozenset(perms))


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    scopes: tuple[Scope, ...]
    patient: str | None = None
    organization: str | None = None
    claims: dict[str, Any] = field(default_factory=dict, compare=False)

    def allows(self, resource_type: str, interaction: str) -> bool:
        letter = INTERACTION_PERMISSION[interaction]
        return any(s.resource_type in ("*", resource_type) and letter in s.permissions for s in self.scopes)

    def require(self, resource_type: str, interaction: str) -> None:
        if not self.allows(resource_type, interaction):
            raise Forbidden(f"Token scopes do not permit {interaction} on {resource_type}")


def mint_token(
    secret: str,
    scope: str,
    *,
    subject: str = "carebridge-dev",
    patient: str | None = None,
    organization: str | None = None,
    issuer: str = "carebridge-dev",
    audience: str | None = None,
    ttl_seconds: int = 12 * 3600,
) -> str:
    """An HS256 development token carrying SMART claims."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
        "scope": scope,
    }
    if audience:
        claims["aud"] = audience
    if patient:
        claims["patient"] = patient
    if organization:
        claims["organization"] = organization
    return jwt.encode(claims, secret, algorithm="HS256")


class TokenVerifier:
    """Verifies bearer tokens: HS256 with the shared secret, RS256 with keys from a JWKS.

    The JWKS comes from `jwks_url` (fetched, cached and refreshed by PyJWT) or, for a deployment
    that pins its keys, from a JWKS document given as `jwks`.
    """

    def __init__(
        self,
        *,
        hs256_secret: str | None,
        jwks_url: str | None = None,
        jwks: dict[str, Any] | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        cache_size: int = 10_000,
    ):
        self._secret = hs256_secret or None
        self._jwks_client = jwt.PyJWKClient(jwks_url, cache_keys=True) if jwks_url else None
        self._jwks = jwt.PyJWKSet.from_dict(jwks) if jwks else None
        self._audience = audience
        self._issuer = issuer
        self._cache: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()
        self._cache_size = cache_size

    def verify(self, authorization: str | None) -> Principal:
        """The principal of a verified bearer token; Unauthorized otherwise."""
        token = _bearer(authorization)
        return self._remembered(token) or self._remember(token, self._verify(token))

    async def verify_async(self, authorization: str | None) -> Principal:
        """As `verify`, but a JWKS fetch (the first RS256 token, key rotation) runs in a thread
        instead of blocking the event loop."""
        token = _bearer(authorization)
        known = self._remembered(token)
        if known is not None:
            return known
        if self._jwks_client is not None and not token.startswith(_HS256_HEADER_PREFIXES):
            return self._remember(token, await asyncio.to_thread(self._verify, token))
        return self._remember(token, self._verify(token))

    def _remembered(self, token: str) -> Principal | None:
        key = hashlib.sha256(token.encode()).digest()
        hit = self._cache.get(key)
        if hit is None:
            return None
        principal, expires = hit
        if expires <= time.time():
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return principal

    def _remember(self, token: str, principal: Principal) -> Principal:
        expires = principal.claims.get("exp")
        if isinstance(expires, int | float) and self._cache_size > 0:
            self._cache[hashlib.sha256(token.encode()).digest()] = (principal, float(expires))
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return principal

    def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            alg = header.get("alg")
            options: dict[str, Any] = {"require": ["exp", "sub"], "verify_aud": self._audience is not None}
            checks: dict[str, Any] = {"audience": self._audience, "issuer": self._issuer, "options": options}
            if alg == "HS256" and self._secret:
                claims = jwt.decode(token, self._secret, algorithms=["HS256"], **checks)
            elif alg == "RS256" and (self._jwks is not None or self._jwks_client is not None):
                claims = jwt.decode(token, self._rs256_key(token, header), algorithms=["RS256"], **checks)
            else:
                raise Unauthorized(f"Token algorithm {alg!r} is not accepted")
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"Invalid bearer token: {exc}") from None
        scopes = tuple(s for s in (Scope.parse(t) for t in str(claims.get("scope", "")).split()) if s)
        return Principal(
            subject=str(claims["sub"]),
            scopes=scopes,
            patient=_optional_str(claims.get("patient")),
            organization=_optional_str(claims.get("organization")),
            claims=claims,
        )

    def _rs256_key(self, token: str, header: dict[str, Any]) -> Any:
        if self._jwks is not None:
            kid = header.get("kid")
            keys = [k for k in self._jwks.keys if kid is None or k.key_id == kid]
            if not keys:
                raise Unauthorized(f"No key {kid!r} in the configured JWKS")
            return keys[0].key
        assert self._jwks_client is not None
        return self._jwks_client.get_signing_key_from_jwt(token).key


#: base64url of '{"alg":"HS256"' as PyJWT writes it, so HS256 tokens skip the thread hop.
_HS256_HEADER_PREFIXES = ("eyJhbGciOiJIUzI1NiIs",)


def _bearer(authorization: str | None) -> str:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("A bearer token is required (Authorization: Bearer ...)")
    token = authorization[7:].strip()
    if not token:
        raise Unauthorized("A bearer token is required (Authorization: Bearer ...)")
    return token


def _optional_str(value: Any) -> str | None:
    """A SMART context claim as a plain id (a patient claim is an id, not a reference)."""
    if value is None or value == "":
        return None
    return str(value)
