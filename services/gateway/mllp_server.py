"""The MLLP listener: HL7 v2 over TCP (optionally TLS), ACKs in order, per connection.

Each message is committed before its ACKs are written (DESIGN.md, HL7 v2); messages on one
connection are handled one after the other, so their ACKs come back in the order sent, while
connections run concurrently. What is not MLLP, or too large, is answered with an AR and the
connection is closed, since the rest of the stream cannot be trusted to be framed; a connection
that stays silent past the idle timeout is closed. Nothing a client sends stops the listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

from services.gateway import domain
from services.gateway.hl7.pipeline import Hl7Pipeline
from shared.mllp import FrameTooLarge, NotMLLP, frame, iter_messages
from shared.settings import GatewaySettings

log = logging.getLogger(__name__)


def tls_context(settings: GatewaySettings) -> ssl.SSLContext | None:
    if not (settings.mllp_tls_certfile and settings.mllp_tls_keyfile):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.mllp_tls_certfile, settings.mllp_tls_keyfile)
    if settings.mllp_tls_cafile:
        context.load_verify_locations(settings.mllp_tls_cafile)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class MLLPServer:
    def __init__(self, pipeline: Hl7Pipeline, settings: GatewaySettings):
        self._pipeline = pipeline
        self._host = settings.mllp_host
        self._port = settings.mllp_port
        self._max = settings.max_hl7_bytes
        self._idle_s = settings.mllp_idle_timeout_s
        self._tls = tls_context(settings)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self._host, self._port, reuse_address=True, ssl=self._tls
        )
        log.info("MLLP listening on %s:%d%s", self._host, self.port, " (TLS)" if self._tls else "")

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            messages = iter_messages(
                reader, max_message_bytes=self._max, idle_timeout_s=self._idle_s, require_frames=True
            )
            async for message in messages:
                received = await self._pipeline.receive(message, "mllp")
                for ack in received.acks:
                    writer.write(frame(ack))
                await writer.drain()
        except FrameTooLarge as exc:
            log.warning("MLLP frame over %d bytes from %s; rejecting and closing", exc.limit, _peer(writer))
            await _refuse(writer, str(exc))
        except NotMLLP:
            log.warning("%s sends bytes that are not MLLP frames; closing", _peer(writer))
            await _refuse(writer, "Not MLLP: frame each message as <0x0B> message <0x1C><0x0D>")
        except (ConnectionError, ssl.SSLError):
            pass
        except Exception:
            # Not stored, so not acknowledged: closing makes the sender resend (MLLP senders
            # retry an unanswered message), which is what "ACK only what is stored" requires.
            log.exception("could not store an HL7 message; closing without an ACK")
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _refuse(writer: asyncio.StreamWriter, detail: str) -> None:
    error = (domain.ERR_APPLICATION_INTERNAL, detail, "")
    writer.write(frame(domain.build_ack(None, domain.REJECT, "", error=error)))
    with contextlib.suppress(ConnectionError):
        await writer.drain()


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if peer else "?"
