"""Discharge to care plan: how long after the gateway ACKs a psychiatric ADT^A03 the patient's
CarePlan with its follow-up activities is readable through /fhir.

Patients are registered first (FHIR POST, not timed), so each discharge's Patient id is known.
Then A03s go out over MLLP at a steady rate (open loop: message i is due at start + i/rate, on
one of several connections); one poller asks the gateway for the CarePlans of all discharged
patients not seen yet (100 per search) every `poll_ms`. Latency = plan seen - ACK received; it
includes up to one poll interval plus a search of detection delay. The baseline is the round trip
of a search for one plan that exists (what reading takes, without waiting for anything).
"""

from __future__ import annotations

import concurrent.futures
import queue
import random
import socket
import threading
import time
from dataclasses import dataclass, field

import httpx
import orjson

from bench.fhir_bench import Endpoint, synthetic_patient
from bench.loadgen import percentile
from shared.mllp import frame

#: What the gateway makes of PID-3 "^^^BENCHMRN^MR" (no assigning-authority OID: a namespace URN).
MRN_SYSTEM = "urn:carebridge:hl7v2:authority:BENCHMRN"


@dataclass
class DischargeFigures:
    sent: int
    acked: int
    seen: int
    rate: float
    achieved_rate: float
    latencies_ms: list[float] = field(default_factory=list)
    poll_baseline_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: Plans that became readable per second, first ACK to last plan seen.
    plans_per_s: float = 0.0


def p50(values: list[float]) -> float | None:
    return percentile(sorted(values), 0.50)


def p99(values: list[float]) -> float | None:
    return percentile(sorted(values), 0.99)


@dataclass(frozen=True)
class Person:
    mrn: str
    id: str
    family: str
    given: str
    birth_date: str  # YYYY-MM-DD


def a03(run_tag: str, n: int, person: Person) -> bytes:
    """A psychiatric discharge (principal diagnosis F32.2, DG1-15 = 1) of a registered person."""
    mrn, born = person.mrn, person.birth_date.replace("-", "")
    visit = f"BV{run_tag}{n}"
    return (
        f"MSH|^~\\&|BENCH|BENCH HOSP|CB|CB|20261108140000||ADT^A03^ADT_A03|B{run_tag}{n}|P|2.5.1\r"
        f"EVN|A03|20261108140000\r"
        f"PID|1||{mrn}^^^BENCHMRN^MR||{person.family}^{person.given}||{born}|F\r"
        f"PV1|1|I|PSY^1^A||||||||||||||||{visit}^^^BENCHVISIT^VN|||||||||||||||||01||||||||"
        f"20261101083000|20261108140000\r"
        "DG1|1||F32.2^Major depressive disorder, single episode, severe^I10||20261101|F|||||||||1\r"
    ).encode()


def register_patients(gateway: Endpoint, run_tag: str, count: int, workers: int = 8) -> list[Person]:
    """`count` new synthetic people, registered through the gateway."""

    rng = random.Random(f"discharge-{run_tag}")
    bodies = []
    for n in range(count):
        body = synthetic_patient(rng, f"{run_tag}-{n}")  # varied names and birth dates, as people are
        body["identifier"][0]["system"] = MRN_SYSTEM
        bodies.append(body)

    def one(n: int) -> Person:
        body = bodies[n]
        with httpx.Client(base_url=gateway.base, headers=gateway.headers, timeout=30) as http:
            response = http.post(
                "/Patient", content=orjson.dumps(body), headers={"Content-Type": "application/fhir+json"}
            )
            response.raise_for_status()
            name = body["name"][0]
            return Person(
                f"{run_tag}-{n}",
                str(response.json()["id"]),
                name["family"],
                name["given"][0],
                body["birthDate"],
            )

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(count)))


class _Sender(threading.Thread):
    """One MLLP connection; sends what it is handed and records when each ACK came back."""

    def __init__(
        self, port: int, work: queue.Queue[tuple[int, bytes] | None], acked: queue.Queue[tuple[int, float]]
    ):
        super().__init__(daemon=True)
        self.port, self.work, self.acked = port, work, acked
        self.errors: list[str] = []

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            while (item := self.work.get()) is not None:
                n, message = item
                sock.sendall(frame(message))
                buffer = b""
                while not buffer.endswith(b"\x1c\r"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        self.errors.append("connection closed")
                        return
                    buffer += chunk
                if b"MSA|AA" not in buffer:
                    self.errors.append(f"message {n}: not AA")
                    continue
                self.acked.put((n, time.monotonic()))


def measure_discharges(
    gateway: Endpoint, mllp_port: int, run_tag: str, *, rate: float, duration_s: float,
    connections: int = 8, poll_ms: float = 20.0, timeout_s: float = 30.0,
) -> DischargeFigures:  # fmt: skip
    count = max(1, int(rate * duration_s))
    people = register_patients(gateway, run_tag, count)
    work: queue.Queue[tuple[int, bytes] | None] = queue.Queue()
    acked: queue.Queue[tuple[int, float]] = queue.Queue()
    senders = [_Sender(mllp_port, work, acked) for _ in range(connections)]
    for sender in senders:
        sender.start()
    figures = DischargeFigures(count, 0, 0, rate, 0.0)
    ack_at: dict[int, float] = {}
    seen: dict[int, float] = {}
    by_patient = {person.id: n for n, person in enumerate(people)}
    sending = threading.Event()
    sending.set()

    def drain_acks() -> None:
        while not acked.empty():
            i, at = acked.get_nowait()
            ack_at[i] = at

    def poller() -> None:
        """One client asks for the plans of every discharged patient not seen yet, 100 at a time,
        every `poll_ms`: what a dashboard would do, and light enough not to bill the pipeline."""
        with httpx.Client(base_url=gateway.base, headers=gateway.headers, timeout=10) as http:
            while sending.is_set() or len(seen) < len(ack_at):
                drain_acks()
                pending = [people[n].id for n in sorted(ack_at) if n not in seen]
                now = time.monotonic()
                if pending and now - ack_at[by_patient[pending[0]]] > timeout_s:
                    figures.errors.append(f"{len(pending)} discharges: no plan within {timeout_s:g} s")
                    break
                for start in range(0, len(pending), 100):
                    chunk = pending[start : start + 100]
                    query = {"patient": ",".join(chunk), "status": "active", "_count": "100"}
                    response = http.get("/CarePlan", params={**query, "_elements": "subject,activity"})
                    found = time.monotonic()
                    if response.status_code != 200:
                        figures.errors.append(f"poll: HTTP {response.status_code}")
                        continue
                    for entry in response.json().get("entry", []):
                        plan = entry.get("resource", {})
                        pid = str(plan.get("subject", {}).get("reference", "")).removeprefix("Patient/")
                        if pid in by_patient and plan.get("activity"):
                            seen.setdefault(by_patient[pid], found)
                time.sleep(poll_ms / 1000)
            # The baseline: the same search for plans that exist, on the same client.
            for n in list(seen)[:50]:
                started = time.monotonic()
                http.get(
                    "/CarePlan",
                    params={"patient": people[n].id, "status": "active", "_elements": "subject,activity"},
                )
                figures.poll_baseline_ms.append(1000 * (time.monotonic() - started))

    watcher = threading.Thread(target=poller, daemon=True)
    watcher.start()
    started = time.monotonic()
    for n, person in enumerate(people):
        due = started + n / rate
        while (wait := due - time.monotonic()) > 0:
            time.sleep(min(wait, 0.005))
        work.put((n, a03(run_tag, n, person)))
    for _ in senders:
        work.put(None)
    for sender in senders:
        sender.join(timeout_s)
    sending.clear()
    watcher.join(timeout_s + 5)
    drain_acks()
    sending_s = max(ack_at.values(), default=started) - started
    figures.acked = len(ack_at)
    figures.seen = len(seen)
    figures.achieved_rate = figures.acked / sending_s if sending_s > 0 else 0.0
    # A discharge whose plan never appeared counts at the timeout: leaving it out would flatter the p99.
    figures.latencies_ms = [1000 * (seen[n] - ack_at[n]) if n in seen else 1000 * timeout_s for n in ack_at]
    if seen:
        figures.plans_per_s = len(seen) / max(1e-9, max(seen.values()) - min(ack_at.values()))
    figures.errors.extend(e for s in senders for e in s.errors)
    return figures
