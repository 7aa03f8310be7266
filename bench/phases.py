"""The benchmark phases: each measures through the load generator and records its metrics.

`Bench` carries what every phase needs (the load runner, the endpoints, the run's settings);
bench/run.py builds it around a running stack and calls the phases in order.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench import discharge_bench, fhir_bench, hl7_bench
from bench.fhir_bench import Endpoint, good_rps
from bench.loadgen import LoadResult, LoadRunner
from bench.report import Baseline, Metric

#: An idle stack uses about 18% of one core (Tansu ~8%, each consumer's fetch loop ~3.5%).
_IDLE_STACK_CPU = 0.30


@dataclass
class Config:
    search_patients: int = 10_000
    seed_max_s: float = 100.0
    duration_s: float = 3.0
    #: Open-loop latency runs: a p99 needs more samples than a throughput figure.
    latency_s: float = 5.0
    warmup_s: float = 1.0
    keep_data: bool = False


@dataclass
class Bench:
    config: Config
    runner: LoadRunner
    gateway: Endpoint
    intake: Endpoint
    bare: Endpoint
    mllp_port: int
    run_tag: str
    rng: random.Random
    stack_cpu: Callable[[float], float]
    started: float = field(default_factory=time.monotonic)
    metrics: dict[str, Metric] = field(default_factory=dict)

    def log(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", flush=True)

    def add(self, metric: Metric) -> None:
        self.metrics[metric.name] = metric

    def settle(self, max_s: float) -> str:
        """Wait (bounded) until the stack is about idle, so one phase's leftovers (event consumers
        catching up) do not bill the next. Returns what happened, for the notes."""
        started = time.monotonic()
        busy = 0.0
        while time.monotonic() - started < max_s:
            busy = self.stack_cpu(0.5)
            if busy <= _IDLE_STACK_CPU:
                waited = time.monotonic() - started
                if waited > 1:
                    self.log(f"  waited {waited:.1f} s for the stack to go idle")
                return f"stack idle after {waited:.0f} s"
        self.log(f"  the stack still uses {100 * busy:.0f}% of a core after {max_s:.0f} s; measuring anyway")
        return f"measured while the stack still used {100 * busy:.0f}% of a core (waited {max_s:.0f} s)"


def _levels(runs: list[LoadResult]) -> str:
    return ", ".join(f"{r.connections}: {good_rps(r):,.0f}" for r in runs)


def _errors(result: LoadResult) -> str:
    bad = {k: v for k, v in result.statuses.items() if k not in ("200", "201", "AA")}
    parts = [f"non-OK answers {bad}"] if bad else []
    if result.errors:
        parts.append(f"{result.errors} connection errors (first: {result.first_error})")
    return ("; " + "; ".join(parts)) if parts else ""


# --- phases ------------------------------------------------------------------------------------


def parse_phase(b: Bench, messages: list[hl7_bench.CorpusMessage]) -> None:
    floor = hl7_bench.parse_floor(messages)
    apy = hl7_bench.parse_hl7apy(messages)
    peer = hl7_bench.parse_python_hl7(messages)
    ours = hl7_bench.parse_carebridge(messages)
    n = len(messages)
    floor_base = Baseline("hl7.parse.floor.msgs_per_s", floor.msgs_per_s, "msgs/s")
    b.add(
        Metric(
            "hl7.parse.floor.msgs_per_s",
            floor.msgs_per_s,
            "msgs/s",
            None,
            f"str.split into segments and fields, {n} ADT corpus messages, one core, no stack running",
        )
    )
    b.add(
        Metric(
            "hl7.parse.hl7apy.msgs_per_s",
            apy.msgs_per_s,
            "msgs/s",
            floor_base,
            f"hl7apy.parser.parse_message(find_groups=False); {apy.failed} of {n} messages fail to parse "
            f"and are left out ({apy.first_error}); after one warm-up pass",
        )
    )
    if peer is None:
        b.add(
            Metric(
                "hl7.parse.python_hl7.msgs_per_s",
                None,
                "msgs/s",
                floor_base,
                "python-hl7 (PyPI `hl7`) is not installed: add it to the test/bench dependencies",
            )
        )
    else:
        b.add(
            Metric(
                "hl7.parse.python_hl7.msgs_per_s",
                peer.msgs_per_s,
                "msgs/s",
                floor_base,
                f"hl7.parse; {peer.failed} of {n} fail to parse ({peer.first_error})",
            )
        )
    b.add(
        Metric(
            "hl7.parse.carebridge.msgs_per_s",
            ours.msgs_per_s,
            "msgs/s",
            floor_base,
            "what the gateway does before storing: services.gateway.hl7.er7 read + translate to a FHIR "
            f"transaction Bundle with its conversion report; {ours.failed} of {n} fail ({ours.first_error})",
        )
    )
    b.log(
        f"parse: floor {floor.msgs_per_s:,.0f}/s, hl7apy {apy.msgs_per_s or 0:,.1f}/s, "
        f"python-hl7 {'n/a' if peer is None else f'{peer.msgs_per_s or 0:,.0f}/s'}, "
        f"carebridge read+translate {ours.msgs_per_s or 0:,.0f}/s"
    )


def read_phase(b: Bench, target: fhir_bench.ReadTarget) -> None:
    d, w = b.config.duration_s, b.config.warmup_s
    path = f"/fhir/Patient/{target.id}"
    peaks = {}
    for name, endpoint in (("bare", b.bare), ("direct", b.intake), ("gateway", b.gateway)):
        best, runs = fhir_bench.peak(b.runner, (endpoint.get(path),), endpoint, duration_s=d, warmup_s=w)
        peaks[name] = (best, runs)
        b.log(f"read {name}: {good_rps(best):,.0f} req/s (by connections {_levels(runs)}){_errors(best)}")
    bare_rps = good_rps(peaks["bare"][0])
    bare = Baseline("fhir.read.bare.rps", bare_rps, "req/s")
    size = f"{len(target.body)}-byte Patient"
    for name in ("gateway", "direct"):
        best, runs = peaks[name]
        how = (
            "through the gateway with a bearer token" if name == "gateway" else "straight to intake, no auth"
        )
        b.add(
            Metric(
                f"fhir.read.{name}.rps",
                good_rps(best),
                "req/s",
                bare,
                f"GET Patient/{{id}} {how}, {size}; best closed loop over connections "
                f"({_levels(runs)} req/s), {d:g} s after {w:g} s warm-up{_errors(best)}",
            )
        )
    best, runs = peaks["bare"]
    b.add(
        Metric(
            "fhir.read.bare.rps",
            bare_rps,
            "req/s",
            None,
            f"the floor: bare FastAPI route returning the same bytes, uvicorn uvloop+httptools, "
            f"1 worker (connections {_levels(runs)} req/s)",
        )
    )
    gateway_rps = good_rps(peaks["gateway"][0])
    b.add(
        Metric(
            "fhir.read.gateway.floor_ratio",
            gateway_rps / bare_rps if bare_rps else None,
            "ratio",
            None,
            "fhir.read.gateway.rps / fhir.read.bare.rps",
        )
    )
    half = max(1.0, round(gateway_rps / 2, 1))
    lat = b.config.latency_s
    gw = fhir_bench.at_rate(b.runner, b.gateway.get(path), b.gateway, half, duration_s=lat, warmup_s=w)
    floor = fhir_bench.at_rate(b.runner, b.bare.get(path), b.bare, half, duration_s=lat, warmup_s=w)
    b.add(
        Metric(
            "fhir.read.gateway.p99_ms",
            gw.p99_ms,
            "ms",
            Baseline("bare read p99 at the same rate", floor.p99_ms, "ms"),
            f"open loop at {half:,.0f} req/s (half of peak), 64 connections, {lat:g} s after {w:g} s "
            f"warm-up; p50 {gw.p50_ms or 0:.2f} ms, achieved {gw.rps:,.0f} req/s; latency from each "
            f"request's due time (includes <=1 ms timer slack){_errors(gw)}",
        )
    )
    b.log(f"read gateway at {half:,.0f} req/s: p99 {gw.p99_ms or 0:.2f} ms (bare {floor.p99_ms or 0:.2f} ms)")


def unloaded_read(b: Bench, target: fhir_bench.ReadTarget) -> LoadResult:
    """Read-by-id through the gateway on one connection: the search latency's baseline."""
    request = b.gateway.get(f"/fhir/Patient/{target.id}")
    return fhir_bench.peak(b.runner, (request,), b.gateway, levels=(1,), duration_s=2.0, warmup_s=0.5)[0]


def mllp_phase(b: Bench, messages: list[hl7_bench.CorpusMessage], target: fhir_bench.ReadTarget) -> None:
    d, w = b.config.duration_s, b.config.warmup_s
    templates = hl7_bench.mllp_templates(messages, "B" + b.run_tag[:7])
    lat = b.config.latency_s
    fig = hl7_bench.measure_mllp(
        b.runner, b.gateway.host, b.mllp_port, templates, 10**11, duration_s=d, warmup_s=w, ack_duration_s=lat
    )
    peer = b.metrics["hl7.parse.python_hl7.msgs_per_s"].value
    by_conn = ", ".join(f"{c}: {r.rps:,.0f}" for c, r in fig.by_connections.items())
    if peer:
        base = Baseline("hl7.parse.python_hl7.msgs_per_s", peer, "msgs/s")
    else:
        apy = b.metrics["hl7.parse.hl7apy.msgs_per_s"]
        base = Baseline("hl7.parse.hl7apy.msgs_per_s (python-hl7 not installed)", apy.value, "msgs/s")
    b.add(
        Metric(
            "hl7.mllp.adt.msgs_per_s",
            fig.best.rps,
            "msgs/s",
            base,
            f"{len(messages)} ADT corpus messages cycled, unique MSH-10 each, every sender waits for each "
            f"ACK; best of 1 and 8 connections ({by_conn} msgs/s){_errors(fig.best)}",
        )
    )
    b.add(
        Metric(
            "hl7.mllp.adt.peer_ratio",
            fig.best.rps / peer if peer else None,
            "ratio",
            None,
            "hl7.mllp.adt.msgs_per_s / hl7.parse.python_hl7.msgs_per_s"
            + ("" if peer else "; null until python-hl7 is installed"),
        )
    )
    floor = fhir_bench.at_rate(
        b.runner,
        b.bare.get(f"/fhir/Patient/{target.id}"),
        b.bare,
        fig.ack_rate,
        connections=8,
        duration_s=lat,
        warmup_s=w,
    )
    b.add(
        Metric(
            "hl7.ack.p99_ms",
            fig.ack.p99_ms,
            "ms",
            Baseline("bare read p99 at the same rate", floor.p99_ms, "ms"),
            f"{fig.ack_rate_note}, 8 connections, {lat:g} s after {w:g} s warm-up; "
            f"p50 {fig.ack.p50_ms or 0:.2f} ms, achieved {fig.ack.rps:,.0f} msgs/s; "
            f"from each message's due time{_errors(fig.ack)}",
        )
    )
    b.log(
        f"mllp: {fig.best.rps:,.0f} msgs/s ({by_conn}); ACK p99 {fig.ack.p99_ms or 0:.2f} ms at "
        f"{fig.ack_rate:,.0f}/s{_errors(fig.ack)}"
    )


def create_phase(b: Bench) -> None:
    d, w = b.config.duration_s, b.config.warmup_s
    requests = fhir_bench.create_requests(b.gateway, b.rng, b.run_tag)
    best, runs = fhir_bench.peak(b.runner, requests, b.gateway, duration_s=d, warmup_s=w, seq_base=2 * 10**11)
    bare = b.metrics["fhir.read.bare.rps"]
    body_bytes = len(requests[0].partition(b"\r\n\r\n")[2])
    b.add(
        Metric(
            "fhir.create.rps",
            good_rps(best),
            "req/s",
            Baseline(bare.name, bare.value, "req/s"),
            f"POST Patient through the gateway (validation, indexes, outbox), distinct synthetic patients of "
            f"{body_bytes} bytes; best closed loop over connections ({_levels(runs)} req/s), "
            f"{d:g} s after {w:g} s warm-up{_errors(best)}",
        )
    )
    b.log(f"create: {good_rps(best):,.0f} req/s (by connections {_levels(runs)}){_errors(best)}")


def search_phase(b: Bench, read_baseline: LoadResult) -> None:
    n = b.config.search_patients
    b.settle(10)  # the consumers of the create phase's events
    seeded = fhir_bench.seed_patients(
        b.runner, b.intake, n, b.rng, b.run_tag, max_seconds=b.config.seed_max_s
    )
    b.log(
        f"search: created {seeded.created:,} of {n:,} patients in {seeded.seconds:.1f} s "
        f"({seeded.created / seeded.seconds:,.0f}/s straight to intake)"
    )
    if not seeded.created:
        for q in ("p50", "p99"):
            b.add(
                Metric(
                    f"fhir.search.{q}_ms",
                    None,
                    "ms",
                    None,
                    f"no patients could be created ({seeded.first_error})",
                )
            )
        return
    family, birth = seeded.sample[0]
    with_birthdate = fhir_bench.search_supports_birthdate(b.gateway, family, birth)
    paths = fhir_bench.search_paths(seeded.sample, with_birthdate)
    matches = fhir_bench.mean_matches(b.gateway, paths)
    settled = b.settle(20)  # the consumers of the seeded patients' events
    requests = tuple(b.gateway.get(p) for p in paths)
    result = fhir_bench.peak(
        b.runner, requests, b.gateway, levels=(1,), duration_s=b.config.duration_s, warmup_s=0.5
    )[0]
    query = (
        "name + birthdate"
        if with_birthdate
        else "name only (birthdate is not a supported search parameter yet)"
    )
    size = f"{seeded.created:,} synthetic Patients created for it" + (
        f" (asked for {n:,}; stopped after {b.config.seed_max_s:g} s)" if seeded.created < n else ""
    )
    notes = (
        f"GET Patient?{query} through the gateway, one connection, {len(paths)} distinct queries cycled, "
        f"{b.config.duration_s:g} s; data: {size}, plus those of earlier phases; {matches:.1f} matches "
        f"per query on average (page size 50); {settled}{_errors(result)}"
    )
    for q, value, base in (
        ("p50", result.p50_ms, read_baseline.p50_ms),
        ("p99", result.p99_ms, read_baseline.p99_ms),
    ):
        b.add(
            Metric(
                f"fhir.search.{q}_ms",
                value,
                "ms",
                Baseline(f"gateway read-by-id {q} on one connection", base, "ms"),
                notes,
            )
        )
    b.log(f"search ({query}): p50 {result.p50_ms or 0:.2f} ms, p99 {result.p99_ms or 0:.2f} ms")


def discharge_phase(b: Bench, rates: tuple[float, ...] = (100.0, 10.0)) -> None:
    """Psychiatric A03s at a steady rate -> the CarePlan readable. Issue 6's goal is a p99 under
    500 ms at 100 discharges/s; the lower rate shows the latency when the pipeline keeps up."""
    d = max(b.config.latency_s, 5.0)
    for rate in rates:
        b.settle(60)
        figures = discharge_bench.measure_discharges(
            b.gateway, b.mllp_port, f"{b.run_tag}r{rate:g}", rate=rate, duration_s=d
        )
        poll = Baseline(
            "a search for one plan that exists, p50", discharge_bench.p50(figures.poll_baseline_ms), "ms"
        )
        notes = (
            f"ADT^A03 over MLLP (8 connections) at {rate:g}/s open loop for {d:g} s "
            f"({figures.sent} discharges, "
            f"{figures.acked} ACKed AA, achieved {figures.achieved_rate:.0f}/s; {figures.seen} plans seen, "
            f"plans completed at {figures.plans_per_s:.1f}/s); latency = plan readable via "
            f"GET /fhir/CarePlan?patient=<up to 100 ids> minus ACK received, one poller every 20 ms "
            f"(detection delay up to 20 ms plus a search included); a discharge never seen counts as the "
            f"30 s timeout" + (f"; {'; '.join(figures.errors[:3])}" if figures.errors else "")
        )
        prefix = "careplan.discharge_to_plan" + ("" if rate == rates[0] else f".at_{rate:g}_per_s")
        for q in ("p50", "p99"):
            value = (
                discharge_bench.p50(figures.latencies_ms)
                if q == "p50"
                else discharge_bench.p99(figures.latencies_ms)
            )
            b.add(Metric(f"{prefix}.{q}_ms", value, "ms", poll, notes))
        p50, p99 = (
            discharge_bench.p50(figures.latencies_ms) or 0,
            discharge_bench.p99(figures.latencies_ms) or 0,
        )
        b.log(
            f"discharge->plan at {rate:g}/s: p50 {p50:.0f} ms, p99 {p99:.0f} ms "
            f"({figures.seen}/{figures.sent} seen, plans at {figures.plans_per_s:.1f}/s)"
        )
