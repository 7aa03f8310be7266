"""Directory matching latency over the shipped synthetic directory (DESIGN.md, Benchmarks:
`referral.match.*`).

- `referral.match.pure.p50_ms` / `.p99_ms`: the pure ranking (services/referral/domain/matching.py)
  in this process, over the index built once, for a cycle of needs, positions and languages.
- `referral.match.p50_ms` / `.p99_ms`: `POST /fhir/HealthcareService/$match` through the
  gateway on one connection (parameters parsed, the index's freshness checked against the store,
  ranking, the searchset written from stored bytes), against the bare endpoint's p50/p99 on one
  connection in the same run (the floor of any HTTP answer on this machine).
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from bench.fhir_bench import Endpoint, peak
from bench.loadgen import percentile
from bench.report import Baseline, Metric
from services.referral.directory_data.build import DIRECTORY_FILE
from services.referral.domain import directory_codes as codes
from services.referral.domain.directory_import import stored_form
from services.referral.domain.directory_index import DirectoryIndex, Position
from services.referral.domain.matching import MatchOptions, Need, Seeker, rank

#: Wednesday 09:00 in the synthetic city: most services are open, some open soon.
NOW = "2026-11-18T15:00:00Z"
LANGUAGES = ("en", "es", "vi", "zh")
#: Behavioural-health needs asked for as codings: psychiatry, SUD, crisis response.
BEHAVIOURAL = ((codes.SNOMED, "394587001"), (codes.SERVICE_CATEGORY, "12"), (codes.SERVICE_TYPE, "135"))


def _needs() -> list[tuple[str, str]]:
    return [(codes.SDOHCC, code) for code in codes.GRAVITY_CATEGORIES] + list(BEHAVIOURAL)


def _position(rng: random.Random) -> tuple[float, float]:
    return round(40.0 + rng.uniform(-0.12, 0.12), 4), round(-100.0 + rng.uniform(-0.12, 0.12), 4)


def pure_latency(rng: random.Random, samples: int = 3000) -> tuple[float | None, float | None, int]:
    """(p50 ms, p99 ms, services) of rank() over the shipped directory, index built once."""
    stored = stored_form(orjson.loads(DIRECTORY_FILE.read_bytes()))
    index = DirectoryIndex.build(
        stored["HealthcareService"].values(), stored["Location"], stored["Organization"]
    )
    needs = _needs()
    now = datetime.fromisoformat(NOW.replace("Z", "+00:00")).astimezone(UTC)
    options = MatchOptions(now=now, default_zone=index.zone or "UTC")
    timings = []
    for n in range(samples):
        system, code = needs[n % len(needs)]
        seeker = Seeker(languages=(LANGUAGES[n % len(LANGUAGES)],), position=Position(*_position(rng)))
        started = time.perf_counter()
        rank(index, [Need(system, code)], seeker, options)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return percentile(timings, 0.50), percentile(timings, 0.99), len(index)


def match_requests(gateway: Endpoint, rng: random.Random, variety: int = 200) -> tuple[bytes, ...]:
    needs = _needs()
    requests = []
    for n in range(variety):
        system, code = needs[n % len(needs)]
        lat, lon = _position(rng)
        parameters: list[dict[str, Any]] = [
            {"name": "need", "valueCoding": {"system": system, "code": code}},
            {"name": "language", "valueCode": LANGUAGES[n % len(LANGUAGES)]},
            {"name": "latitude", "valueDecimal": lat},
            {"name": "longitude", "valueDecimal": lon},
            {"name": "now", "valueDateTime": NOW},
        ]
        requests.append(
            gateway.post(
                "/fhir/HealthcareService/$match", {"resourceType": "Parameters", "parameter": parameters}
            )
        )
    return tuple(requests)


def import_directory(gateway: Endpoint) -> str:
    """Load the shipped directory into the stack with `carebridge directory import`."""
    from shared import cli

    token = gateway.headers["Authorization"].removeprefix("Bearer ")
    url = f"http://{gateway.host}:{gateway.port}"
    started = time.monotonic()
    code = cli.main(["directory", "import", str(DIRECTORY_FILE), "--gateway", url, "--token", token])
    if code != 0:
        raise RuntimeError(f"carebridge directory import exited {code}")
    return f"imported in {time.monotonic() - started:.1f} s"


def match_phase(b: Any) -> None:
    """Adds the four referral.match metrics to `b` (bench.phases.Bench)."""
    b.log("match: importing the shipped directory")
    imported = import_directory(b.gateway)
    b.log(f"match: {imported}; measuring the pure matcher")
    pure_p50, pure_p99, services = pure_latency(b.rng)
    settled = b.settle(20)  # the consumers of the import's events
    requests = match_requests(b.gateway, b.rng)
    duration, warmup = max(b.config.latency_s, 3.0), b.config.warmup_s
    bare, _ = peak(
        b.runner,
        (b.bare.get("/fhir/Patient/bare"),),
        b.bare,
        levels=(1,),
        duration_s=duration,
        warmup_s=warmup,
    )
    result, _ = peak(b.runner, requests, b.gateway, levels=(1,), duration_s=duration, warmup_s=warmup)
    bad = {k: v for k, v in result.statuses.items() if k != "200"}
    notes = (
        f"POST HealthcareService/$match through the gateway, one connection, {len(requests)} distinct "
        f"requests cycled ({len(_needs())} needs: every Gravity category and psychiatry/SUD/crisis; "
        f"positions around the city; 4 languages; top 10 of {services} services), {duration:g} s; "
        f"directory {imported}; {settled}" + (f"; non-OK answers {bad}" if bad else "")
    )
    pure_notes = (
        f"services/referral/domain/matching.rank in-process over the shipped directory ({services} "
        "HealthcareServices, index built once), one need per call cycling as above, 3000 calls"
    )
    for q, value, floor, pure in (
        ("p50", result.p50_ms, bare.p50_ms, pure_p50),
        ("p99", result.p99_ms, bare.p99_ms, pure_p99),
    ):
        b.add(Metric(f"referral.match.pure.{q}_ms", pure, "ms", None, pure_notes))
        baseline = Baseline(f"bare FastAPI endpoint {q} on one connection (same run)", floor, "ms")
        b.add(Metric(f"referral.match.{q}_ms", value, "ms", baseline, notes))
    b.log(
        f"match: $match p50 {result.p50_ms or 0:.2f} ms, p99 {result.p99_ms or 0:.2f} ms "
        f"(bare p50 {bare.p50_ms or 0:.2f}, p99 {bare.p99_ms or 0:.2f}); pure p50 {pure_p50 or 0:.2f}, "
        f"p99 {pure_p99 or 0:.2f} ms"
    )
