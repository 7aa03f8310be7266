"""A small keep-alive load generator for HTTP/1.1 and MLLP on raw asyncio streams.

Python HTTP clients spend more CPU per request than the servers under test, so this one sends
pre-built request bytes and reads only the status line and Content-Length (HTTP) or up to the
MLLP end block. It runs in its own process (`LoadRunner`) so it does not share the driver's
interpreter, and it is always bounded: a fixed duration, optionally a fixed request count.

Two modes:

- closed loop (`rate=None`): each of `connections` sends its next request as soon as the last
  answer arrived; gives the peak rate at that concurrency.
- open loop (`rate=R`): request *i* is due at ``start + i / R`` and goes out on the next free
  connection; its latency counts from the time it was due, so a server that falls behind
  shows up as queueing rather than as a lower send rate (no coordinated omission). uvloop
  timers have 1 ms resolution, so open-loop latencies carry up to ~1 ms of timer slack.

Requests are cycled (`requests[i % len(requests)]`). A request containing `SEQ_MARKER` gets it
replaced by a zero-padded sequence number of the same width, so every request can be unique
(distinct Patients, distinct MSH-10) while Content-Length stays right.

CLI for ad-hoc use: ``python -m bench.loadgen http://127.0.0.1:8080/healthz -c 32 -d 3``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

#: Replaced by the request's sequence number (12 digits, zero-padded) wherever it appears.
SEQ_MARKER = b"@@SEQ@@@@@@@"
SEQ_WIDTH = len(SEQ_MARKER)

_MLLP_END = b"\x1c\r"
#: How long in-flight requests may take to finish after the run's end before they are dropped.
_GRACE_S = 5.0


@dataclass(frozen=True)
class LoadSpec:
    host: str
    port: int
    requests: tuple[bytes, ...]
    protocol: str = "http"  # http | mllp (requests are then already MLLP-framed)
    connections: int = 8
    duration_s: float = 3.0
    warmup_s: float = 1.0
    #: Open loop at this many requests/s in total; None for closed loop.
    rate: float | None = None
    #: Stop after this many requests (e.g. to send each pre-built request exactly once).
    max_requests: int | None = None
    seq_start: int = 0


@dataclass
class LoadResult:
    connections: int
    rate: float | None
    #: Requests answered within the measured window (after warm-up, before the end).
    completed: int
    window_s: float
    rps: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    #: HTTP status codes, or MSA-1 codes for MLLP, of the measured requests.
    statuses: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    first_error: str | None = None
    #: Requests sent in all, warm-up included (the next run's seq_start should be past this).
    sent: int = 0
    #: True when `max_requests` ran out before the duration did.
    exhausted: bool = False

    def ok_fraction(self, ok: tuple[str, ...] = ("200", "201", "AA")) -> float:
        total = sum(self.statuses.values())
        return sum(n for code, n in self.statuses.items() if code in ok) / total if total else 0.0


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


class _Run:
    def __init__(self, spec: LoadSpec):
        self.spec = spec
        self.requests = spec.requests
        self.has_marker = tuple(SEQ_MARKER in r for r in spec.requests)
        self.next_index = 0
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}
        self.errors = 0
        self.first_error: str | None = None
        self.exhausted = False
        self.last_done = 0.0
        now = time.perf_counter()
        self.start = now
        self.warm_end = now + spec.warmup_s
        self.end = self.warm_end + spec.duration_s
        self.read_response = _read_mllp if spec.protocol == "mllp" else _read_http

    def take(self) -> tuple[int, bytes] | None:
        """The next request's index and bytes, or None when the request budget is spent."""
        i = self.next_index
        if self.spec.max_requests is not None and i >= self.spec.max_requests:
            self.exhausted = True
            return None
        self.next_index = i + 1
        n = i % len(self.requests)
        request = self.requests[n]
        if self.has_marker[n]:
            request = request.replace(SEQ_MARKER, str(self.spec.seq_start + i).zfill(SEQ_WIDTH).encode())
        return i, request

    def record(self, started: float, done: float, status: str) -> None:
        if started >= self.warm_end and done <= self.end:
            self.latencies.append(done - started)
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.last_done = done

    def error(self, exc: BaseException) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = f"{type(exc).__name__}: {exc}"[:300]

    async def connection(self) -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        interval = 1.0 / self.spec.rate if self.spec.rate else 0.0
        try:
            while True:
                if writer is None:
                    reader, writer = await asyncio.open_connection(self.spec.host, self.spec.port)
                taken = self.take()
                if taken is None:
                    return
                i, request = taken
                if interval:
                    due = self.start + i * interval
                    if due >= self.end:
                        return
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    started = due
                else:
                    started = time.perf_counter()
                    if started >= self.end:
                        return
                assert reader is not None
                try:
                    writer.write(request)
                    status, keep_alive = await self.read_response(reader)
                except (
                    OSError,
                    EOFError,
                    asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError,
                    ValueError,
                ) as exc:
                    self.error(exc)
                    writer.close()
                    reader = writer = None
                    await asyncio.sleep(0.01)  # do not spin on a server that refuses
                    continue
                self.record(started, time.perf_counter(), status)
                if not keep_alive:
                    writer.close()
                    reader = writer = None
        finally:
            if writer is not None:
                writer.close()


async def _read_http(reader: asyncio.StreamReader) -> tuple[str, bool]:
    """Read one response; returns (status code, whether the connection stays open)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = head[9:12].decode("ascii")
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        length = int(lower[at + 17 : lower.index(b"\r\n", at + 2)])
        if length:
            await reader.readexactly(length)
    elif b"\r\ntransfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status, b"\r\nconnection: close" not in lower


async def _read_mllp(reader: asyncio.StreamReader) -> tuple[str, bool]:
    """Read one framed ACK; the status is its MSA-1 (AA, AE, AR, ...)."""
    ack = await reader.readuntil(_MLLP_END)
    at = ack.find(b"\rMSA")
    return (ack[at + 5 : at + 7].decode("ascii", "replace") if at >= 0 else "no MSA"), True


async def _run_async(spec: LoadSpec) -> LoadResult:
    run = _Run(spec)
    workers = [asyncio.ensure_future(run.connection()) for _ in range(spec.connections)]
    _done, pending = await asyncio.wait(workers, timeout=run.end + _GRACE_S - time.perf_counter())
    for task in pending:
        task.cancel()
    for task in workers:
        with contextlib.suppress(asyncio.CancelledError):
            exc = task.exception() if task.done() else None
            if exc is not None:
                run.error(exc)
    await asyncio.gather(*pending, return_exceptions=True)
    window = spec.duration_s
    if run.exhausted and run.last_done:
        window = max(1e-9, min(run.end, run.last_done) - run.warm_end)
    latencies = sorted(run.latencies)
    ms = [v * 1000.0 for v in latencies]
    return LoadResult(
        connections=spec.connections,
        rate=spec.rate,
        completed=len(latencies),
        window_s=window,
        rps=len(latencies) / window,
        p50_ms=percentile(ms, 0.50),
        p90_ms=percentile(ms, 0.90),
        p99_ms=percentile(ms, 0.99),
        max_ms=ms[-1] if ms else None,
        statuses=run.statuses,
        errors=run.errors,
        first_error=run.first_error,
        sent=run.next_index,
        exhausted=run.exhausted,
    )


def run_load(spec: LoadSpec) -> LoadResult:
    """Run one load in this process (uvloop when available)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_run_async(spec))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_run_async(spec))


class LoadRunner:
    """Runs loads in one separate, reused process (spawned, so it shares nothing with the driver)."""

    def __init__(self) -> None:
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))

    def run(self, spec: LoadSpec) -> LoadResult:
        return self._pool.submit(run_load, spec).result(timeout=spec.warmup_s + spec.duration_s + 60)

    def close(self) -> None:
        workers = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in workers:
            process.kill()  # the worker is ours; a Ctrl-C may have left it mid-run

    def __enter__(self) -> LoadRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def http_request(
    method: str, host: str, port: int, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    """The bytes of one HTTP/1.1 keep-alive request."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="GET one URL with a closed- or open-loop load.")
    parser.add_argument("url")
    parser.add_argument("-c", "--connections", type=int, default=8)
    parser.add_argument("-d", "--duration", type=float, default=3.0)
    parser.add_argument("-w", "--warmup", type=float, default=1.0)
    parser.add_argument("-r", "--rate", type=float, default=None, help="open loop at this many requests/s")
    parser.add_argument("-H", "--header", action="append", default=[], help="'Name: value'")
    args = parser.parse_args(argv)
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    headers = dict(h.split(": ", 1) for h in args.header)
    path = url.path + (f"?{url.query}" if url.query else "")
    spec = LoadSpec(
        host,
        port,
        (http_request("GET", host, port, path, headers),),
        connections=args.connections,
        duration_s=args.duration,
        warmup_s=args.warmup,
        rate=args.rate,
    )
    print(asdict(run_load(spec)))


if __name__ == "__main__":
    main()
