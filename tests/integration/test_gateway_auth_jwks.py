"""Production tokens: RS256, verified against the identity provider's JWKS fetched over HTTP (here a
tiny local server standing in for the provider), through a gateway configured with its URL."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import settings_factory
from tests.integration.stack import Stack, running_stack
from tests.integration.test_gateway_errors import assert_outcome

ISSUER = "https://idp.example"


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks_url(signing_key: rsa.RSAPrivateKey) -> Iterator[str]:
    public = jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key())
    body = b'{"keys":[' + public.encode()[:-1] + b',"kid":"idp-1","use":"sig","alg":"RS256"}]}'

    class JWKS(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), JWKS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
async def rs256_stack(
    broker: Any, redis_url: str, tmp_path_factory: pytest.TempPathFactory, jwks_url: str
) -> AsyncIterator[Stack]:
    make = settings_factory(broker, redis_url, tmp_path_factory.mktemp("rs256"))
    async with running_stack(make, jwt_jwks_url=jwks_url, jwt_issuer=ISSUER) as running:
        yield running


def token(key: rsa.RSAPrivateKey, kid: str = "idp-1", scope: str = "user/Patient.rs") -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "ehr-app", "iat": now, "exp": now + 300, "scope": scope}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


async def test_rs256_token_from_the_identity_provider_is_accepted(
    rs256_stack: Stack, signing_key: rsa.RSAPrivateKey
) -> None:
    headers = {"Authorization": f"Bearer {token(signing_key)}"}
    async with httpx.AsyncClient(base_url=rs256_stack.gateway.url, headers=headers) as http:
        response = await http.get("/fhir/Patient", params={"_count": "1"})
    assert response.status_code == 200, response.text


async def test_rs256_token_signed_by_an_unknown_key_gets_401(rs256_stack: Stack) -> None:
    forged = token(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    async with httpx.AsyncClient(base_url=rs256_stack.gateway.url) as http:
        response = await http.get("/fhir/Patient", headers={"Authorization": f"Bearer {forged}"})
    assert_outcome(response, 401, "login")


async def test_rs256_token_scopes_are_enforced(rs256_stack: Stack, signing_key: rsa.RSAPrivateKey) -> None:
    headers = {"Authorization": f"Bearer {token(signing_key, scope='user/Patient.rs')}"}
    async with httpx.AsyncClient(base_url=rs256_stack.gateway.url, headers=headers) as http:
        response = await http.get("/fhir/CarePlan")
    assert_outcome(response, 403, "forbidden")
