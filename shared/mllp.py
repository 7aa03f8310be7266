"""MLLP: the Minimal Lower Layer Protocol that carries HL7 v2 messages over TCP.

Framing follows the HL7 v2.x Implementation Guide: Transport Specification, MLLP Release 2
(section 1.4): a message is sent as ``<SB> message <EB><CR>`` with the start block SB = 0x0B
and the end block EB = 0x1C followed by a carriage return 0x0D. Neither block character may
appear inside an HL7 message (both are non-printing and would be escaped), so a receiver can
resynchronise on them:

- bytes outside a frame are discarded (the spec tells receivers to ignore them);
- a start block inside an unfinished frame means the sender abandoned that frame: the partial
  message is dropped and a new frame begins;
- a frame larger than the limit raises `FrameTooLarge`, so a server can answer and close.

For senders, `split_messages` reads the messages out of a file's bytes, and `control_id` /
`ack_code` read MSH-10 and MSA-1 without a full parse.

Nothing here logs message content: HL7 messages carry PHI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Iterable

from shared.errors import PayloadTooLarge

log = logging.getLogger(__name__)

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\r"
#: The two bytes that close a frame.
FRAME_END = END_BLOCK + CARRIAGE_RETURN

_BOM = b"\xef\xbb\xbf"
#: Batch envelope segments (HL7 v2.5 section 2.10.3): not part of any message, dropped when sending.
_BATCH_SEGMENTS = (b"FHS", b"BHS", b"BTS", b"FTS")

#: Default largest message accepted, in bytes (the gateway's `max_hl7_bytes` default).
DEFAULT_MAX_MESSAGE_BYTES = 1_048_576
_READ_CHUNK = 65_536


class FrameTooLarge(PayloadTooLarge):
    """A frame grew past the size limit before its end block arrived.

    `messages` holds the complete messages decoded from the same `feed()` call before the
    oversized frame, so a server can still answer them before it rejects and closes.
    """

    def __init__(self, limit: int, messages: list[bytes] | None = None):
        super().__init__(f"HL7 message exceeds the MLLP size limit of {limit} bytes")
        self.limit = limit
        self.messages = messages or []


class MLLPConnectionError(ConnectionError):
    """The MLLP peer could not be reached, closed the connection or did not answer in time.

    `acks` holds the acknowledgements received before the failure.
    """

    def __init__(self, message: str, acks: list[bytes] | None = None):
        super().__init__(message)
        self.acks = acks or []


def frame(message: bytes) -> bytes:
    """Wrap one HL7 message in an MLLP frame."""
    if START_BLOCK in message or END_BLOCK in message:
        raise ValueError("an HL7 message must not contain the MLLP block characters 0x0B or 0x1C")
    return START_BLOCK + message + FRAME_END


def normalize_segments(text: bytes) -> bytes:
    r"""Turn file line endings (``\r\n`` or ``\n``) into the HL7 segment terminator ``\r``.

    Files on disk usually end segments with ``\n``; on the wire HL7 v2 ends them with ``\r``
    (v2.5 chapter 2.5.1, "segment terminator"). Text that already uses ``\r`` is unchanged.
    """
    return text.replace(b"\r\n", b"\r").replace(b"\n", b"\r")


# --- message files and acknowledgements (for senders) ------------------------------------------


def split_messages(data: bytes) -> list[bytes]:
    """The messages in an HL7 v2 file, each with ``\\r``-terminated segments.

    A message starts at each MSH segment; blank lines, byte-order marks and batch envelope
    segments are dropped. Raises ValueError for text before the first MSH segment.
    """
    messages: list[list[bytes]] = []
    for segment in normalize_segments(data).split(b"\r"):
        segment = segment.removeprefix(_BOM)
        if not segment.strip() or segment[:3] in _BATCH_SEGMENTS:
            continue
        if segment.startswith(b"MSH") and len(segment) > 3 and not segment[3:4].isalnum():
            messages.append([])
        elif not messages:
            name = segment[:3].decode("ascii", "replace")
            raise ValueError(f"a {name!r} segment comes before any MSH segment")
        messages[-1].append(segment)
    return [b"\r".join(segments) + b"\r" for segments in messages]


def control_id(message: bytes) -> str:
    """MSH-10, the message control id ('' when absent)."""
    msh = message.split(b"\r", 1)[0]
    fields = msh.split(msh[3:4]) if len(msh) > 3 else []
    return fields[9].decode("utf-8", "replace") if len(fields) > 9 else ""


def ack_code(ack: bytes) -> str | None:
    """MSA-1 of an acknowledgement (AA, AE, AR, CA, CE, CR), or None without an MSA segment."""
    separator = ack[3:4] if ack.startswith(b"MSH") and len(ack) > 3 else b"|"
    for segment in normalize_segments(ack).split(b"\r"):
        if segment.startswith(b"MSA"):
            fields = segment.split(separator)
            return fields[1].decode("ascii", "replace") if len(fields) > 1 else None
    return None


# --- decoding ------------------------------------------------------------------------------------


class MLLPDecoder:
    """Incremental MLLP decoder: feed it bytes as they arrive, get complete messages back.

    Handles frames split across reads and several frames in one read. `discarded` counts bytes
    dropped outside frames and `abandoned` counts frames cut short by a new start block.
    """

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES):
        self.max_message_bytes = max_message_bytes
        self.discarded = 0
        self.abandoned = 0
        self._in_frame = False
        self._partial = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished frame held so far (non-zero at EOF means a truncated message)."""
        return len(self._partial)

    @property
    def in_frame(self) -> bool:
        return self._in_frame

    def feed(self, data: bytes) -> list[bytes]:
        """Decode `data`; return the messages whose frames it completes, in order."""
        messages: list[bytes] = []
        pos = self._finish_split_end(data, messages)
        end = len(data)
        while pos < end:
            if not self._in_frame:
                start = data.find(START_BLOCK, pos)
                if start < 0:
                    self.discarded += end - pos
                    break
                self.discarded += start - pos
                self._in_frame = True
                pos = start + 1
                continue
            pos = self._scan_frame(data, pos, messages)
        return messages

    def _finish_split_end(self, data: bytes, messages: list[bytes]) -> int:
        """Complete a frame whose 0x1C ended the previous chunk and whose 0x0D starts this one."""
        if self._in_frame and data[:1] == CARRIAGE_RETURN and self._partial.endswith(END_BLOCK):
            messages.append(bytes(self._partial[:-1]))
            self._reset()
            return 1
        return 0

    def _scan_frame(self, data: bytes, pos: int, messages: list[bytes]) -> int:
        """Consume frame content from `pos`; return where decoding continues."""
        end = data.find(FRAME_END, pos)
        restart = data.find(START_BLOCK, pos, end if end >= 0 else len(data))
        if restart >= 0:
            # A new frame began before this one ended: the sender gave up on it.
            self.abandoned += 1
            self.discarded += len(self._partial) + restart - pos
            log.warning(
                "MLLP frame abandoned by the sender after %d bytes", len(self._partial) + restart - pos
            )
            self._reset()
            return restart
        stop = end if end >= 0 else len(data)
        # A trailing 0x1C may be the first half of an end block split across reads.
        content = stop - pos - (1 if end < 0 and data.endswith(END_BLOCK) else 0)
        if len(self._partial) + content > self.max_message_bytes:
            self._reset()
            raise FrameTooLarge(self.max_message_bytes, messages)
        if end < 0:
            self._partial += data[pos:]
            return len(data)
        if self._partial:
            self._partial += data[pos:end]
            messages.append(bytes(self._partial))
        else:
            messages.append(data[pos:end])
        self._reset()
        return end + len(FRAME_END)

    def _reset(self) -> None:
        self._in_frame = False
        self._partial = bytearray()


class NotMLLP(Exception):
    """The peer sends something other than a start block between frames (an HTTP client, a
    sender without framing). Line ends between frames are tolerated, as MLLP Release 2 asks."""


async def iter_messages(
    reader: asyncio.StreamReader,
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    idle_timeout_s: float | None = None,
    require_frames: bool = False,
) -> AsyncGenerator[bytes, None]:
    """Yield each complete message read from `reader` until EOF (or `idle_timeout_s` of silence).

    Raises `FrameTooLarge` for an oversized frame (after yielding the messages before it), and,
    with `require_frames`, `NotMLLP` when something other than a frame starts between frames.
    """
    decoder = MLLPDecoder(max_message_bytes)
    while True:
        try:
            async with asyncio.timeout(idle_timeout_s):
                chunk = await reader.read(_READ_CHUNK)
        except TimeoutError:
            return
        if not chunk:
            if decoder.buffered:
                log.warning("MLLP connection closed inside a frame; %d bytes dropped", decoder.buffered)
            return
        if require_frames and not decoder.in_frame and chunk.lstrip(b"\r\n\t ")[:1] not in (b"", START_BLOCK):
            raise NotMLLP()
        try:
            messages = decoder.feed(chunk)
        except FrameTooLarge as exc:
            for message in exc.messages:
                yield message
            exc.messages = []
            raise
        for message in messages:
            yield message


async def send_messages(
    host: str,
    port: int,
    messages: Iterable[bytes],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 - bounds each round trip, not the whole call
    max_ack_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> list[bytes]:
    """Send each message over one MLLP connection, waiting for its ACK before the next.

    `timeout` bounds the connect and each message's send-and-acknowledge round trip. Returns
    the ACK messages (unframed) in order, one per message: in enhanced acknowledgment mode the
    application ACK (or the commit ACK if only that is asked for), and b"" for a message that
    asks for no ACK at all (MSH-15 and MSH-16 NE). Raises `MLLPConnectionError` (with the ACKs received
    so far) when the peer cannot be reached, closes early or does not answer in time.
    """
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as exc:
        raise MLLPConnectionError(f"cannot connect to MLLP listener {host}:{port}: {_reason(exc)}") from exc
    acks: list[bytes] = []
    incoming = iter_messages(reader, max_message_bytes=max_ack_bytes)
    try:
        for number, message in enumerate(messages, start=1):
            try:
                async with asyncio.timeout(timeout):
                    writer.write(frame(message))
                    await writer.drain()
                    acks.append(await _answer(incoming, message))
            except StopAsyncIteration:
                raise MLLPConnectionError(
                    f"{host}:{port} closed the connection before acknowledging message {number}", acks
                ) from None
            except (OSError, TimeoutError) as exc:
                raise MLLPConnectionError(
                    f"no acknowledgement for message {number} from {host}:{port}: {_reason(exc)}", acks
                ) from exc
            log.debug("message %d acknowledged (%d bytes sent)", number, len(message))
    finally:
        await incoming.aclose()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return acks


#: Application-level acknowledgment codes (HL7 table 0008); CA, CE, CR are commit-level.
_APPLICATION_CODES = frozenset({"AA", "AE", "AR"})


def acks_wanted(message: bytes) -> tuple[bool, bool]:
    """(commit ACK wanted, application ACK wanted) on success, from MSH-15 and MSH-16 (table
    0155; both empty is original mode: one application ACK). ER means "only on error"."""
    msh = normalize_segments(message).split(b"\r", 1)[0]
    fields = msh.split(msh[3:4]) if len(msh) > 3 else []
    accept = fields[14].decode("ascii", "replace").upper() if len(fields) > 14 else ""
    application = fields[15].decode("ascii", "replace").upper() if len(fields) > 15 else ""
    if not accept and not application:
        return False, True
    return accept in ("", "AL", "SU"), application in ("", "AL", "SU")


async def _answer(incoming: AsyncGenerator[bytes, None], message: bytes) -> bytes:
    """The acknowledgement that answers `message` as its acknowledgment mode asks (v2.5.1 2.9):
    the application ACK (after a commit ACK in enhanced mode), the commit ACK when only that is
    asked for, or b"" when the message asks for none (MSH-15 and MSH-16 NE)."""
    commit, application = acks_wanted(message)
    if not commit and not application:
        return b""
    while True:
        ack = await anext(incoming)
        if not application or ack_code(ack) in _APPLICATION_CODES:
            return ack


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
