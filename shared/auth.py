"""Bearer tokens and SMART v2 scopes.

Tokens are JWTs: HS256 with a configured secret for development (`carebridge token`), RS256
verified against a JWKS in production. Claims follow SMART App Launch v2
(https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html): `scope` is a space-
separated list such as ``system/*.cruds user/CarePlan.rs patient/*.rs``; `patient` limits a
``patient/`` scope to one Patient; `organization` carries a clinic's Organization id.
"""

from __future__ import annotations

import re
import time
import uuid
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
    """Verifies bearer tokens: HS256 with the shared secret, RS256 with keys from a JWKS."""

    def __init__(
        self,
        *,
        hs256_secret: str | None,
        jwks_url: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
    ):
        self._secret = hs256_secret or None
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True) if jwks_url else None
        self._audience = audience
        self._issuer = issuer

    def verify(self, authorization: str | None) -> Principal:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized("A bearer token is required (Authorization: Bearer ...)")
        token = authorization[7:].strip()
        try:
            header = jwt.get_unverified_header(token)
            alg = header.get("alg")
            options: dict[str, Any] = {"require": ["exp", "sub"], "verify_aud": self._audience is not None}
            checks: dict[str, Any] = {"audience": self._audience, "issuer": self._issuer, "options": options}
            if alg == "HS256" and self._secret:
                claims = jwt.decode(token, self._secret, algorithms=["HS256"], **checks)
            elif alg == "RS256" and self._jwks:
                key = self._jwks.get_signing_key_from_jwt(token).key
                claims = jwt.decode(token, key, algorithms=["RS256"], **checks)
            else:
                raise Unauthorized(f"Token algorithm {alg!r} is not accepted")
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"Invalid bearer token: {exc}") from None
        scopes = tuple(s for s in (Scope.parse(t) for t in str(claims.get("scope", "")).split()) if s)
        return Principal(
            subject=str(claims["sub"]),
            scopes=scopes,
            patient=claims.get("patient"),
            organization=claims.get("organization"),
            claims=claims,
        )
