"""The four services in this test process, each behind a real uvicorn server on a free port.

In-process (rather than subprocesses) so a test can inspect each service's store and the spans
they record; the HTTP, the broker, Redis and the databases are all real.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from services.careplan.app import create_app as careplan_app
from services.gateway.app import create_app as gateway_app
from services.intake.app import create_app as intake_app
from services.referral.app import create_app as referral_app
from shared.auth import mint_token
from shared.devstack import free_port
from shared.service import ServiceRuntime
from shared.settings import CareplanSettings, GatewaySettings, IntakeSettings, ReferralSettings


class InProcessServer:
    def __init__(self, app: FastAPI, port: int):
        self.app = app
        self.port = port
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            lifespan="on",
            log_level="warning",
            access_log=False,
            loop="none",
        )
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self._task.done():
                self._task.result()  # raises the startup error
                raise RuntimeError("server stopped during startup")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task:
            await self._task

    @property
    def runtime(self) -> ServiceRuntime:
        runtime: ServiceRuntime = self.app.state.runtime
        return runtime

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Stack:
    gateway: InProcessServer
    intake: InProcessServer
    careplan: InProcessServer
    referral: InProcessServer
    settings: GatewaySettings
    token: str

    @property
    def fhir(self) -> str:
        return f"{self.gateway.url}/fhir"

    @property
    def mllp_port(self) -> int:
        return int(self.gateway.app.state.mllp.port)

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/fhir+json"}
        return httpx.AsyncClient(base_url=self.gateway.url, headers=headers, timeout=20, **kwargs)


@contextlib.asynccontextmanager
async def running_stack(make_settings: Callable[..., Any], **gateway_overrides: Any) -> AsyncIterator[Stack]:
    ports = {name: free_port() for name in ("gateway", "intake", "careplan", "referral")}
    intake = make_settings(IntakeSettings, port=ports["intake"])
    careplan = make_settings(CareplanSettings, port=ports["careplan"])
    referral = make_settings(ReferralSettings, port=ports["referral"])
    gateway = make_settings(
        GatewaySettings,
        port=ports["gateway"],
        mllp_port=0,
        intake_url=f"http://127.0.0.1:{ports['intake']}",
        careplan_url=f"http://127.0.0.1:{ports['careplan']}",
        referral_url=f"http://127.0.0.1:{ports['referral']}",
        **gateway_overrides,
    )
    servers = [
        InProcessServer(intake_app(intake), ports["intake"]),
        InProcessServer(careplan_app(careplan), ports["careplan"]),
        InProcessServer(referral_app(referral), ports["referral"]),
        InProcessServer(gateway_app(gateway), ports["gateway"]),
    ]
    started: list[InProcessServer] = []
    try:
        for server in servers:
            await server.start()
            started.append(server)
        # Services start without the broker and connect in the background: tests begin once
        # every one is connected, so a readiness check does not race the connection.
        await eventually(lambda: _connected(started), timeout=30)
        token = mint_token(gateway.jwt_hs256_secret, "system/*.cruds")
        yield Stack(servers[3], servers[0], servers[1], servers[2], gateway, token)
    finally:
        for server in reversed(started):
            await server.stop()


async def _connected(servers: list[InProcessServer]) -> bool:
    return all(server.runtime.producer is not None for server in servers)


async def eventually(probe: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:  # noqa: ASYNC109
    """Poll an async probe until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
