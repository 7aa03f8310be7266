"""The gateway's keep-alive client to the backing services, against a small local HTTP server whose
behaviour each test chooses: reuse, limits, a service closing connections, hanging, chunked answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from services.gateway.client import BackendPool
from shared.errors import DependencyUnavailable
from tests.integration.stack import Stack

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/fhir+json\r\ncontent-length: 2\r\n\r\n{}"
CHUNKED = (
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: application/fhir+json\r\n\r\n"
    b'5\r\n{"a":\r\n2\r\n1}\r\n0\r\n\r\n'
)


@dataclass
class Backend:
    """Answers each request with `answer(n)` (n counts requests); None closes the connection."""

    answer: Callable[[int], bytes | None] = lambda n: OK
    delay_s: float = 0.0
    requests: int = 0
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    methods: list[str] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                await reader.readexactly(length)
                self.requests += 1
                self.methods.append(head.split(b" ", 1)[0].decode())
                await asyncio.sleep(self.delay_s)
                answer = self.answer(self.requests)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            writer.close()


@pytest.fixture
async def backend() -> AsyncIterator[tuple[Backend, str]]:
    state = Backend()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield state, f"http://127.0.0.1:{port}"


async def test_requests_reuse_one_kept_alive_connection(backend: tuple[Backend, str]) -> None:
    state, url = backend
    pool = BackendPool("intake", url)
    for _ in range(20):
        response = await pool.request("GET", b"/fhir/Patient/1", [("accept", "application/fhir+json")])
        assert response.status == 200 and response.body == b"{}"
        assert response.header(b"content-type") == b"application/fhir+json"
    await pool.aclose()
    assert state.requests == 20 and state.connections == 1


async def test_concurrent_requests_stay_within_the_connection_limit(backend: tuple[Backend, str]) -> None:
    state, url = backend
    state.delay_s = 0.01
    pool = BackendPool("intake", url, max_connections=3)
    await asyncio.gather(*(pool.request("GET", b"/x", []) for _ in range(30)))
    await pool.aclose()
    assert state.requests == 30 and state.most_open <= 3


async def test_a_get_is_sent_again_when_the_service_had_closed_the_kept_connection(
    backend: tuple[Backend, str],
) -> None:
    state, url = backend
    state.answer = lambda n: None if n == 2 else OK  # the service drops the connection once
    pool = BackendPool("intake", url)
    await pool.request("GET", b"/x", [])
    response = await pool.request("GET", b"/x", [])
    await pool.aclose()
    assert response.status == 200 and state.requests == 3 and state.connections == 2


async def test_a_post_is_never_sent_twice(backend: tuple[Backend, str]) -> None:
    state, url = backend
    state.answer = lambda n: None if n == 2 else OK
    pool = BackendPool("intake", url)
    await pool.request("GET", b"/x", [])
    with pytest.raises(DependencyUnavailable, match="intake service is unavailable"):
        await pool.request("POST", b"/fhir/Patient", [], b"{}")
    await pool.aclose()
    assert state.methods == ["GET", "POST"]


async def test_a_service_that_does_not_answer_in_time_is_unavailable(backend: tuple[Backend, str]) -> None:
    state, url = backend
    state.delay_s = 1.0
    pool = BackendPool("intake", url, timeout_s=0.1)
    with pytest.raises(DependencyUnavailable, match="TimeoutError"):
        await pool.request("GET", b"/x", [])
    await pool.aclose()


async def test_a_service_that_is_not_there_is_unavailable() -> None:
    pool = BackendPool("referral", "http://127.0.0.1:1")
    with pytest.raises(DependencyUnavailable, match="referral service is unavailable"):
        await pool.request("GET", b"/x", [])


async def test_chunked_answers_are_read_whole(backend: tuple[Backend, str]) -> None:
    state, url = backend
    state.answer = lambda n: CHUNKED
    pool = BackendPool("intake", url)
    first = await pool.request("GET", b"/x", [])
    second = await pool.request("GET", b"/x", [])
    await pool.aclose()
    assert first.body == second.body == b'{"a":1}' and state.connections == 1


async def test_the_gateway_answers_503_when_the_owning_service_is_down(stack: Stack) -> None:
    pools = stack.gateway.app.state.gateway.clients.pools
    careplan = pools["careplan"]
    pools["careplan"] = BackendPool("careplan", "http://127.0.0.1:1")
    try:
        async with stack.client() as http:
            response = await http.get("/fhir/CarePlan/x")
    finally:
        pools["careplan"] = careplan
    assert response.status_code == 503
    assert response.json()["issue"][0]["code"] == "transient"


async def test_openapi_describes_the_fhir_routes(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway.url) as http:
        schema = (await http.get("/openapi.json")).json()
    assert "/fhir/CarePlan" in schema["paths"] and "/fhir/Patient/{id}/$everything" in schema["paths"]
    assert "/hl7v2" in schema["paths"]
    assert not any(p.startswith("/fhir/{") for p in schema["paths"])
