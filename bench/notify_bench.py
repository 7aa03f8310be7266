"""Subscription notification delivery: how many referral notifications per second reach a
clinic's rest-hook endpoint, and how long after the referral was made.

A receiver (a plain threaded HTTP server answering 200) stands in for the clinic. A Subscription
on the Task topic filtered to one clinic is created and its handshake awaited; then `count`
referrals (ServiceRequests whose Task referral makes) are POSTed through the gateway by a few
threads. Throughput = notified Tasks / (last arrival - first POST); latency = arrival - the 201
of the ServiceRequest. The baseline is the receiver itself: the same kind of POST sent straight to
it by one client, in the same run (what the endpoint can take).
"""

from __future__ import annotations

import concurrent.futures
import http.server
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from bench.fhir_bench import Endpoint
from bench.loadgen import percentile
from bench.report import Baseline, Metric
from services.referral.domain.subscriptions import FILTER_CRITERIA
from shared.devstack import free_port
from shared.fhir.subscription_topics import TASK_TOPIC

FHIR = {"Content-Type": "application/fhir+json"}


@dataclass
class Receiver:
    arrivals: list[tuple[float, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver.lock:
                    receiver.arrivals.append((time.monotonic(), body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


def _focus_ids(body: bytes) -> list[str]:
    try:
        bundle = orjson.loads(body)
        parameters = bundle["entry"][0]["resource"]["parameter"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return []
    out = []
    for parameter in parameters:
        if parameter.get("name") == "notification-event":
            for part in parameter.get("part", []):
                if part.get("name") == "focus":
                    out.append(str(part["valueReference"]["reference"]).rsplit("/", 1)[-1])
    return out


def _created(http: httpx.Client, resource: dict[str, Any]) -> dict[str, Any]:
    response = http.post(f"/{resource['resourceType']}", content=orjson.dumps(resource), headers=FHIR)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def measure_notifications(
    gateway: Endpoint, run_tag: str, count: int = 300, threads: int = 4
) -> dict[str, Any]:
    receiver = Receiver()
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), receiver.handler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        return _measure(gateway, run_tag, count, threads, receiver, f"http://127.0.0.1:{port}/hook")
    finally:
        server.shutdown()


def _measure(
    gateway: Endpoint, run_tag: str, count: int, threads: int, receiver: Receiver, url: str
) -> dict[str, Any]:
    with httpx.Client(base_url=gateway.base, headers=gateway.headers, timeout=30) as http:
        clinic = _created(http, {"resourceType": "Organization", "name": f"Bench clinic {run_tag}"})
        manager = _created(http, {"resourceType": "Practitioner", "name": [{"family": f"Bench{run_tag}"}]})
        patient = _created(http, {"resourceType": "Patient", "name": [{"family": f"Notify{run_tag}"}]})
        subscription = _created(http, {
            "resourceType": "Subscription", "status": "requested", "reason": "bench",
            "criteria": TASK_TOPIC,
            "_criteria": {"extension": [{"url": FILTER_CRITERIA,
                                         "valueString": f"Task?owner=Organization/{clinic['id']}"}]},
            "channel": {"type": "rest-hook", "endpoint": url, "payload": "application/fhir+json"},
        })  # fmt: skip
        deadline = time.monotonic() + 30
        while not receiver.arrivals and time.monotonic() < deadline:
            time.sleep(0.05)
        handshake_arrivals = len(receiver.arrivals)
        baseline_ms = _receiver_baseline(url)

    posted: dict[int, float] = {}
    task_of_request: dict[str, int] = {}

    def refer(n: int) -> None:
        body = {
            "resourceType": "ServiceRequest", "status": "active", "intent": "order", "code": {"text": "b"},
            "subject": {"reference": f"Patient/{patient['id']}"},
            "requester": {"reference": f"Practitioner/{manager['id']}"},
            "performer": [{"reference": f"Organization/{clinic['id']}"}],
        }  # fmt: skip
        with httpx.Client(base_url=gateway.base, headers=gateway.headers, timeout=30) as client:
            request = _created(client, body)
            posted[n] = time.monotonic()
            task_of_request[request["id"]] = n

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(refer, range(count)))
    # Tasks are found by their ServiceRequest: one search per referral after the fact.
    with httpx.Client(base_url=gateway.base, headers=gateway.headers, timeout=30) as http:
        task_index: dict[str, int] = {}
        for request_id, n in task_of_request.items():
            found = http.get(
                "/Task", params={"focus": f"ServiceRequest/{request_id}", "_elements": "id"}
            ).json()
            for entry in found.get("entry", []):
                task_index[entry["resource"]["id"]] = n
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen = {t for _, body in receiver.arrivals[handshake_arrivals:] for t in _focus_ids(body)}
            if len(seen & set(task_index)) >= len(task_index):
                break
            time.sleep(0.1)
        http.delete(f"/Subscription/{subscription['id']}")
    arrival_of: dict[str, float] = {}
    for at, body in receiver.arrivals[handshake_arrivals:]:
        for task_id in _focus_ids(body):
            arrival_of.setdefault(task_id, at)
    latencies = sorted(1000 * (arrival_of[t] - posted[n]) for t, n in task_index.items() if t in arrival_of)
    last = max(arrival_of.values(), default=started)
    return {
        "count": count,
        "notified": len(latencies),
        "per_s": len(latencies) / (last - started) if latencies else 0.0,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "baseline_per_s": 1000 / baseline_ms if baseline_ms else None,
        "posts": len(receiver.arrivals) - handshake_arrivals,
    }


def _receiver_baseline(url: str, n: int = 300) -> float:
    """Mean ms of one POST straight to the receiver (the endpoint's own capacity)."""
    body = b'{"resourceType":"Bundle","type":"history","entry":[]}'
    with httpx.Client(timeout=10) as http:
        started = time.monotonic()
        for _ in range(n):
            http.post(url, content=body, headers=FHIR)
        return 1000 * (time.monotonic() - started) / n


def notify_phase(b: Any) -> None:
    b.settle(20)
    figures = measure_notifications(b.gateway, b.run_tag)
    notes = (
        f"{figures['count']} referrals POSTed through the gateway by 4 threads to one clinic with a Task "
        f"Subscription (rest-hook, id-only, signed); {figures['notified']} notified in "
        f"{figures['posts']} POSTs to a local receiver; latency from the ServiceRequest's 201 to arrival "
        f"p50 {figures['p50_ms'] or 0:.0f} ms, p99 {figures['p99_ms'] or 0:.0f} ms"
    )
    base = Baseline("the receiver alone, one client, POSTs/s", figures["baseline_per_s"], "msgs/s")
    b.add(Metric("referral.notify.delivered_per_s", figures["per_s"], "msgs/s", base, notes))
    b.add(Metric("referral.notify.p99_ms", figures["p99_ms"], "ms", None, notes))
    b.log(
        f"notifications: {figures['per_s']:.1f}/s delivered ({figures['notified']}/{figures['count']}), "
        f"p50 {figures['p50_ms'] or 0:.0f} ms, p99 {figures['p99_ms'] or 0:.0f} ms"
    )
