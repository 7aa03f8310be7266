"""A small keep-alive HTTP/1.1 client for the gateway's hop to the backing services.

The gateway forwards every FHIR request to the service that owns the type, so this hop is on the
hot path of every read. General-purpose async clients cost more CPU per request than the whole
backing read: httpx (over httpcore and anyio) spent most of the gateway's time checking every
pooled connection for readability and walking anyio's stream layers, and fell apart as
concurrency grew (270 reads/s at 4 connections, 67 at 64, against 1,465/s straight to intake).

The services are ours, speak HTTP/1.1 and answer with Content-Length bodies, so this client is
an `asyncio.Protocol` per connection with httptools (the C parser uvicorn uses) reading the
answers, and a pool of idle connections per service. It still handles chunked answers and
connection-close, since the parser does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass

import httptools

from shared.errors import DependencyUnavailable

#: uvicorn closes an idle keep-alive connection after 5 s; never reuse one idle nearly that long,
#: so a request is not written into a connection the service is closing at the same moment.
IDLE_REUSE_S = 3.0
#: Methods that may be sent again when a reused connection turned out to be closed before any
#: answer arrived (R4 http.html: these are idempotent; POST and PATCH are not retried).
_RETRYABLE = frozenset({"GET", "HEAD", "PUT", "DELETE"})


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    #: Header names lower-cased, as they arrived.
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer read by httptools."""

    __slots__ = (
        "_body",
        "_headers",
        "_parser",
        "_waiter",
        "closed",
        "got_bytes",
        "idle_since",
        "keep_alive",
        "transport",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[UpstreamResponse] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self.closed = False
        self.keep_alive = True
        self.got_bytes = False
        self.idle_since = 0.0

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check here.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError("connection closed by the service"))

    # --- httptools callbacks ------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        waiter, self._waiter = self._waiter, None
        self.keep_alive = self._parser.should_keep_alive()
        response = UpstreamResponse(self._parser.get_status_code(), self._headers, b"".join(self._body))
        self._headers, self._body = [], []
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    # --- use ----------------------------------------------------------------------------------

    def send(self, data: bytes) -> asyncio.Future[UpstreamResponse]:
        assert self.transport is not None
        self.got_bytes = False
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._waiter

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class BackendPool:
    """Keep-alive connections to one service, at most `max_connections` at once."""

    def __init__(self, name: str, url: str, *, max_connections: int = 64, timeout_s: float = 30.0):
        scheme, _, rest = url.partition("://")
        if scheme != "http":
            raise ValueError(f"{name}: only http:// service URLs are supported, not {url!r}")
        hostport = rest.split("/", 1)[0]
        host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "80")
        self.name = name
        self.host = host.strip("[]")
        self.port = int(port)
        self._host_header = f"Host: {hostport}\r\n".encode("latin-1")
        self._timeout_s = timeout_s
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: deque[_Connection] = deque()
        self._all: set[_Connection] = set()

    async def request(
        self, method: str, target: bytes, headers: list[tuple[str, str]], body: bytes = b""
    ) -> UpstreamResponse:
        """Send one request and read its answer; DependencyUnavailable when the service is not there."""
        data = self._encode(method, target, headers, body)
        async with self._slots:
            connection = self._take_idle()
            reused = connection is not None
            try:
                if connection is None:
                    connection = await self._open()
                try:
                    response = await self._exchange(connection, data)
                except ConnectionError:
                    # A kept-alive connection the service had just closed: once more on a new one.
                    if not (reused and not connection.got_bytes and method in _RETRYABLE):
                        raise
                    self._discard(connection)
                    connection = None
                    connection = await self._open()
                    response = await self._exchange(connection, data)
            except BaseException as exc:
                # Timed out, cancelled (the client went away) or broken: the connection may still
                # carry a half-read answer, so it is never reused.
                if connection is not None:
                    self._discard(connection)
                if isinstance(exc, (OSError, TimeoutError)):
                    raise DependencyUnavailable(
                        f"The {self.name} service is unavailable ({type(exc).__name__})"
                    ) from None
                raise
            self._release(connection)
            return response

    async def _exchange(self, connection: _Connection, data: bytes) -> UpstreamResponse:
        async with asyncio.timeout(self._timeout_s):
            return await connection.send(data)

    def _encode(self, method: str, target: bytes, headers: list[tuple[str, str]], body: bytes) -> bytes:
        lines = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n", self._host_header]
        for name, value in headers:
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(b"Content-Length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        lines.append(body)
        return b"".join(lines)

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()  # the most recently used is the least likely to be closing
            if not connection.closed and now - connection.idle_since < IDLE_REUSE_S:
                return connection
            self._discard(connection)
        return None

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._timeout_s):
            _, connection = await loop.create_connection(_Connection, self.host, self.port)
        self._all.add(connection)
        return connection

    def _release(self, connection: _Connection) -> None:
        if connection.keep_alive and not connection.closed:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            self._discard(connection)

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self._all.discard(connection)

    async def aclose(self) -> None:
        for connection in list(self._all):
            connection.close()
        self._all.clear()
        self._idle.clear()
        with contextlib.suppress(Exception):
            await asyncio.sleep(0)  # let the transports finish closing
