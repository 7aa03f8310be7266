"""The MLLP listener: HL7 v2 over TCP, one ACK per message, in order, per connection.

Each message is archived (committed) before its ACK is written (DESIGN.md, HL7 v2). A frame over
the size limit gets an AR and the connection is closed, since the rest of the stream cannot be
trusted to be framed correctly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.gateway import domain
from services.gateway.archive import MessageArchive
from shared.mllp import FrameTooLarge, frame, iter_messages

log = logging.getLogger(__name__)


class MLLPServer:
    def __init__(self, archive: MessageArchive, host: str, port: int, max_message_bytes: int):
        self._archive = archive
        self._host = host
        self._port = port
        self._max = max_message_bytes
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port, reuse_address=True)
        log.info("MLLP listening on %s:%d", self._host, self.port)

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
            async for message in iter_messages(reader, max_message_bytes=self._max):
                received = await self._archive.receive(message, "mllp")
                writer.write(frame(received.ack))
                await writer.drain()
        except FrameTooLarge as exc:
            log.warning("MLLP frame over %d bytes from %s; rejecting and closing", exc.limit, _peer(writer))
            error = (domain.ERR_APPLICATION_INTERNAL, str(exc), "")
            writer.write(frame(domain.build_ack(None, domain.REJECT, "", error=error)))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        except ConnectionError:
            pass
        except Exception:
            # Not stored, so not acknowledged: closing makes the sender resend (MLLP senders
            # retry an unanswered message), which is what "ACK only what is stored" requires.
            log.exception("could not archive an HL7 message; closing without an ACK")
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if peer else "?"
