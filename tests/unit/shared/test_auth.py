from __future__ import annotations

import pytest

from shared.auth import Scope, TokenVerifier, mint_token
from shared.errors import Forbidden, Unauthorized
from shared.settings import DEVELOPMENT_JWT_SECRET, GatewaySettings

SECRET = "a-test-secret-that-is-at-least-32-bytes-long"


def verifier(**kw: str) -> TokenVerifier:
    return TokenVerifier(hs256_secret=SECRET, issuer="carebridge-dev", **kw)


@pytest.mark.parametrize(
    ("text", "context", "rtype", "perms"),
    [
        ("system/*.cruds", "system", "*", "cruds"),
        ("user/CarePlan.rs", "user", "CarePlan", "rs"),
        ("patient/*.read", "patient", "*", "rs"),  # SMART v1 spelling, translated
        ("user/Task.write", "user", "Task", "cud"),
    ],
)
def test_smart_scopes_are_parsed(text: str, context: str, rtype: str, perms: str) -> None:
    scope = Scope.parse(text)
    assert scope == Scope(context, rtype, frozenset(perms))


def test_non_resource_scopes_are_ignored() -> None:
    assert Scope.parse("openid") is None and Scope.parse("launch/patient") is None


def test_token_claims_reach_the_principal_and_scopes_are_enforced_per_interaction() -> None:
    token = mint_token(SECRET, "user/CarePlan.rs openid", patient="p1", organization="org-9")
    principal = verifier().verify(f"Bearer {token}")
    assert principal.patient == "p1" and principal.organization == "org-9"
    assert principal.allows("CarePlan", "read") and principal.allows("CarePlan", "search")
    assert not principal.allows("CarePlan", "create") and not principal.allows("Patient", "read")
    with pytest.raises(Forbidden):
        principal.require("CarePlan", "delete")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Basic dXNlcjpwYXNz",
        "Bearer not-a-jwt",
        f"Bearer {mint_token('another-secret-that-is-at-least-32-bytes', 'system/*.cruds')}",
        f"Bearer {mint_token(SECRET, 'system/*.cruds', ttl_seconds=-10)}",
        f"Bearer {mint_token(SECRET, 'system/*.cruds', issuer='someone-else')}",
    ],
    ids=["missing", "empty", "basic", "garbage", "wrong-secret", "expired", "wrong-issuer"],
)
def test_bad_credentials_are_unauthorized(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        verifier().verify(header)


def test_audience_is_checked_when_configured() -> None:
    good = mint_token(SECRET, "system/*.cruds", audience="https://carebridge.example/fhir")
    bad = mint_token(SECRET, "system/*.cruds")
    v = verifier(audience="https://carebridge.example/fhir")
    assert v.verify(f"Bearer {good}").subject == "carebridge-dev"
    with pytest.raises(Unauthorized):
        v.verify(f"Bearer {bad}")


def test_gateway_refuses_the_public_development_secret_off_loopback() -> None:
    GatewaySettings(host="127.0.0.1").check_safe_to_serve()
    GatewaySettings(host="0.0.0.0", jwt_hs256_secret="").check_safe_to_serve()
    with pytest.raises(ValueError, match="public development secret"):
        GatewaySettings(host="0.0.0.0", jwt_hs256_secret=DEVELOPMENT_JWT_SECRET).check_safe_to_serve()
