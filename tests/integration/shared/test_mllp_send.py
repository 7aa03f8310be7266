"""send_messages and `carebridge send-hl7` against a small MLLP server started by the test.

The server runs on its own event loop in a thread, so both async tests (send_messages) and
plain tests (the CLI, which runs its own loop) can talk to it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared import cli
from shared.devstack import free_port
from shared.mllp import FRAME_END, MLLPConnectionError, frame, iter_messages, send_messages

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus" / "hl7v2"

Responder = Callable[[bytes], "bytes | None"]


def control_id(message: bytes) -> bytes:
    msh = message.split(b"\r", 1)[0]
    return msh.split(msh[3:4])[9]


def ack(message: bytes, code: bytes = b"AA") -> bytes:
    return (
        b"MSH|^~\\&|CAREBRIDGE|CB|SENDER|FAC|20240101120000||ACK|ACK" + control_id(message) + b"|P|2.5\r"
        b"MSA|" + code + b"|" + control_id(message) + b"\r"
    )


class MLLPTestServer:
    """Answers each framed message with `responder(message)`; None closes the connection.

    `silent` receives without ever answering; `split_acks` writes each ACK in several pieces.
    """

    def __init__(self, responder: Responder, *, split_acks: bool = False, silent: bool = False):
        self.responder = responder
        self.split_acks = split_acks
        self.silent = silent
        self.received: list[bytes] = []
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MLLPTestServer:
        self._thread.start()
        assert self._ready.wait(5), "the MLLP test server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(5)

    def _run(self) -> None:
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self._ready.set()
        await self._stopping.wait()
        server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            async for message in iter_messages(reader):
                self.received.append(message)
                if self.silent:
                    continue
                reply = self.responder(message)
                if reply is None:
                    break
                await self._write(writer, frame(reply))
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if not self.split_acks:
            writer.write(data)
            await writer.drain()
            return
        # Start block with half the ACK, then the rest with the end block split again.
        for piece in (data[:7], data[7:-1], data[-1:]):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.01)


@pytest.fixture
def acking_server() -> Iterator[MLLPTestServer]:
    with MLLPTestServer(ack) as server:
        yield server


def adt(control: str) -> bytes:
    return f"MSH|^~\\&|ADT1|HOSP|CAREBRIDGE|CB|20240101120000||ADT^A01|{control}|P|2.5\rPID|1||123\r".encode()


async def test_send_messages_returns_one_ack_per_message_in_order(acking_server: MLLPTestServer) -> None:
    messages = [adt("M1"), adt("M2"), adt("M3")]
    acks = await send_messages("127.0.0.1", acking_server.port, messages)
    assert [a.split(b"\r")[1] for a in acks] == [b"MSA|AA|M1", b"MSA|AA|M2", b"MSA|AA|M3"]
    assert acking_server.received == messages


async def test_send_messages_reassembles_acks_that_arrive_in_pieces() -> None:
    with MLLPTestServer(ack, split_acks=True) as server:
        acks = await send_messages("127.0.0.1", server.port, iter([adt("S1"), adt("S2")]))
    assert [a.split(b"\r")[1] for a in acks] == [b"MSA|AA|S1", b"MSA|AA|S2"]
    assert not any(FRAME_END in a for a in acks)


async def test_send_messages_reports_the_acks_received_before_the_peer_closed() -> None:
    with MLLPTestServer(lambda m: None if control_id(m) == b"M2" else ack(m)) as server:
        expected = "closed the connection before acknowledging message 2"
        with pytest.raises(MLLPConnectionError, match=expected) as err:
            await send_messages("127.0.0.1", server.port, [adt("M1"), adt("M2"), adt("M3")])
    assert [a.split(b"\r")[1] for a in err.value.acks] == [b"MSA|AA|M1"]


async def test_send_messages_times_out_when_no_ack_comes() -> None:
    with MLLPTestServer(ack, silent=True) as server:
        with pytest.raises(MLLPConnectionError, match=r"no acknowledgement for message 1 .*timed out"):
            await send_messages("127.0.0.1", server.port, [adt("T1")], timeout=0.3)
    assert server.received == [adt("T1")]


async def test_send_messages_to_a_closed_port_raises_a_connection_error() -> None:
    port = free_port()
    with pytest.raises(MLLPConnectionError, match=f"cannot connect to MLLP listener 127.0.0.1:{port}"):
        await send_messages("127.0.0.1", port, [adt("C1")], timeout=2)


# --- carebridge send-hl7 -------------------------------------------------------------------------


def corpus_file(relative: str) -> Path:
    path = CORPUS / relative
    assert path.exists(), f"test corpus missing: {path}"
    return path


def test_send_hl7_sends_every_message_of_every_file_and_prints_each_ack(
    acking_server: MLLPTestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = tmp_path / "batch.hl7"
    batch.write_bytes(
        corpus_file("microsoft-fhir-converter/ADT_A01/ADT-A01-02.hl7").read_bytes().rstrip(b"\n")
        + b"\n"
        + corpus_file("microsoft-fhir-converter/ADT_A04/ADT04-23.hl7").read_bytes()
    )
    single = corpus_file("microsoft-fhir-converter/ADT_A40/ADT-A40-01.hl7")
    code = cli.main(["send-hl7", str(batch), str(single), "--port", str(acking_server.port)])
    out = capsys.readouterr().out
    assert code == 0
    # The last message asks for no ACK, so the client does not wait for the server to read it.
    deadline = time.monotonic() + 5
    while len(acking_server.received) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(acking_server.received) == 3
    # ADT-A40-01 asks for no acknowledgement (MSH-15 and MSH-16 NE): it is sent, not waited for.
    assert out.count("MSA|AA|") == 2
    assert "(no acknowledgement: the message asks for none, MSH-15 and MSH-16 NE)" in out
    assert f"{batch} message 1 of 2" in out and f"{single} message 1 of 1" in out
    assert all(b"\n" not in m and m.startswith(b"MSH|") for m in acking_server.received)


def test_send_hl7_exits_1_when_any_message_is_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    messages = tmp_path / "two.hl7"
    messages.write_bytes(adt("GOOD").replace(b"\r", b"\n") + adt("BAD").replace(b"\r", b"\n"))
    with MLLPTestServer(lambda m: ack(m, b"AR" if control_id(m) == b"BAD" else b"AA")) as server:
        code = cli.main(["send-hl7", str(messages), "--port", str(server.port)])
    out = capsys.readouterr().out
    assert code == 1
    assert "MSA|AA|GOOD" in out and "MSA|AR|BAD" in out


def test_send_hl7_exits_2_with_a_clear_message_when_nothing_listens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = tmp_path / "one.hl7"
    message.write_bytes(adt("X1"))
    port = free_port()
    code = cli.main(["send-hl7", str(message), "--port", str(port)])
    captured = capsys.readouterr()
    assert code == 2
    assert f"127.0.0.1:{port}" in captured.err
    assert "Traceback" not in captured.err
