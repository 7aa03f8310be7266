"""FHIR benchmarks: read-by-id (gateway, owning service, bare floor), create, and Patient search.

All load goes through the load generator process (`bench.loadgen`); this module builds the
request bytes and picks the figures. Every Patient is synthetic: made-up names, dates and
identifiers under a benchmark-only identifier system.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from bench.loadgen import SEQ_MARKER, LoadResult, LoadRunner, LoadSpec, http_request

IDENTIFIER_SYSTEM = "urn:carebridge:bench:patient"
FHIR_JSON = "application/fhir+json"
#: Closed-loop concurrency levels for a peak. Low levels matter: write throughput and the gateway's
#: proxy fall as concurrency grows, so the peak of a slow path is often at 4 connections.
PEAK_LEVELS = (4, 16, 64)

_SYLLABLES = (
    "Al",
    "Bar",
    "Cor",
    "Dal",
    "Ev",
    "Fen",
    "Gar",
    "Hol",
    "Is",
    "Jor",
    "Kel",
    "Lin",
    "Mor",
    "Nor",
    "Os",
    "Pel",
    "Quin",
    "Ros",
    "Sal",
    "Tor",
    "Ul",
    "Val",
    "Wes",
    "Yar",
    "Zan",
    "Brin",
    "Cal",
    "Dun",
    "Har",
    "Mel",
)
_ENDINGS = (
    "son",
    "ley",
    "ton",
    "ford",
    "man",
    "well",
    "wood",
    "berg",
    "dale",
    "ridge",
    "field",
    "brook",
    "more",
    "stead",
    "worth",
    "ham",
    "ling",
    "ard",
    "by",
    "combe",
)
_GIVEN = (
    "Alex",
    "Sam",
    "Jordan",
    "Taylor",
    "Morgan",
    "Casey",
    "Riley",
    "Jamie",
    "Avery",
    "Quinn",
    "Robin",
    "Drew",
    "Kim",
    "Lee",
    "Noa",
    "Ari",
    "Rowan",
    "Sage",
    "Eli",
    "Remy",
    "Dana",
    "Jesse",
    "Kai",
    "Reese",
)
_STREETS = ("Maple", "Oak", "Cedar", "Elm", "Pine", "Birch", "Willow", "Aspen", "Spruce", "Juniper")
#: Distinct family names: 600, so a search by family matches about n/600 of n patients.
FAMILIES = tuple(s + e for s in _SYLLABLES for e in _ENDINGS)


def synthetic_patient(rng: random.Random, identifier: str) -> dict[str, Any]:
    """A made-up adult Patient of about 900 bytes, shaped like a registration from an ADT feed."""
    birth = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(25_000))
    return {
        "resourceType": "Patient",
        "identifier": [
            {
                "use": "usual",
                "type": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]
                },
                "system": IDENTIFIER_SYSTEM,
                "value": identifier,
            }
        ],
        "active": True,
        "name": [
            {
                "use": "official",
                "family": rng.choice(FAMILIES),
                "given": [rng.choice(_GIVEN), rng.choice(_GIVEN)],
            }
        ],
        "telecom": [
            {"system": "phone", "value": f"555-01{rng.randrange(100):02d}", "use": "home"},
            {"system": "email", "value": f"patient{rng.randrange(10**6)}@example.org", "use": "home"},
        ],
        "gender": rng.choice(("female", "male", "other", "unknown")),
        "birthDate": birth.isoformat(),
        "address": [
            {
                "use": "home",
                "line": [f"{rng.randrange(1, 999)} {rng.choice(_STREETS)} Street"],
                "city": "Springfield",
                "state": "IL",
                "postalCode": f"627{rng.randrange(100):02d}",
                "country": "US",
            }
        ],
        "communication": [
            {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en-US"}]}, "preferred": True}
        ],
    }


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    #: Headers every request carries (the bearer token for the gateway).
    headers: dict[str, str]

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}/fhir"

    def get(self, path: str) -> bytes:
        return http_request("GET", self.host, self.port, path, {**self.headers, "Accept": FHIR_JSON})

    def post(self, path: str, resource: dict[str, Any]) -> bytes:
        headers = {**self.headers, "Accept": FHIR_JSON, "Content-Type": FHIR_JSON}
        return http_request("POST", self.host, self.port, path, headers, orjson.dumps(resource))


@dataclass(frozen=True)
class ReadTarget:
    """The Patient every read benchmark reads, and the gateway's exact answer for it."""

    id: str
    body: bytes
    content_type: str
    etag: str
    last_modified: str


def create_read_target(gateway: Endpoint, rng: random.Random) -> ReadTarget:
    resource = synthetic_patient(rng, "BENCH-READ-TARGET")
    with httpx.Client(headers=gateway.headers, timeout=10.0, trust_env=False) as client:
        created = client.post(
            f"{gateway.base}/Patient", content=orjson.dumps(resource), headers={"Content-Type": FHIR_JSON}
        )
        created.raise_for_status()
        id_ = created.json()["id"]
        read = client.get(f"{gateway.base}/Patient/{id_}")
        read.raise_for_status()
    return ReadTarget(
        id_,
        read.content,
        read.headers["content-type"],
        read.headers.get("etag", ""),
        read.headers.get("last-modified", ""),
    )


def good_rps(result: LoadResult) -> float:
    """Requests/s that got a 2xx answer (a fast stream of errors is not throughput)."""
    return result.rps * result.ok_fraction()


def peak(
    runner: LoadRunner,
    requests: tuple[bytes, ...],
    endpoint: Endpoint,
    *,
    levels: tuple[int, ...] = PEAK_LEVELS,
    duration_s: float = 3.0,
    warmup_s: float = 1.0,
    seq_base: int = 0,
) -> tuple[LoadResult, list[LoadResult]]:
    """The best closed-loop run over the concurrency levels, and all of them."""
    runs = [
        runner.run(
            LoadSpec(
                endpoint.host,
                endpoint.port,
                requests,
                "http",
                c,
                duration_s,
                warmup_s,
                seq_start=seq_base + n * 10**8,
            )
        )
        for n, c in enumerate(levels)
    ]
    return max(runs, key=good_rps), runs


def at_rate(
    runner: LoadRunner,
    request: bytes,
    endpoint: Endpoint,
    rate: float,
    *,
    connections: int = 64,
    duration_s: float = 3.0,
    warmup_s: float = 1.0,
) -> LoadResult:
    """Open-loop latency at a fixed request rate."""
    return runner.run(
        LoadSpec(
            endpoint.host, endpoint.port, (request,), "http", connections, duration_s, warmup_s, rate=rate
        )
    )


def create_requests(
    endpoint: Endpoint, rng: random.Random, run_tag: str, variety: int = 20_000
) -> tuple[bytes, ...]:
    """POST /fhir/Patient requests; the load generator makes each identifier unique. Intake
    matches every Patient, so a request reused with another identifier would be the same person
    again (an update of an ever larger record): `variety` distinct people, more than a run sends."""
    marker = SEQ_MARKER.decode()
    return tuple(
        endpoint.post("/fhir/Patient", synthetic_patient(rng, f"BENCH-{run_tag}-{marker}"))
        for _ in range(variety)
    )


# --- search ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeededPatients:
    requested: int
    created: int
    seconds: float
    #: (family, birthDate) of a sample of the patients created, for the queries.
    sample: list[tuple[str, str]]
    first_error: str | None


def seed_patients(
    runner: LoadRunner,
    service: Endpoint,
    n: int,
    rng: random.Random,
    run_tag: str,
    *,
    max_seconds: float,
    connections: int = 4,
) -> SeededPatients:
    """Create `n` synthetic Patients straight at the owning service, each request once."""
    sample: list[tuple[str, str]] = []
    requests = []
    for i in range(n):
        patient = synthetic_patient(rng, f"BENCH-{run_tag}-S{i}")
        if len(sample) < 1000 and rng.random() < 2000 / n:
            sample.append((patient["name"][0]["family"], patient["birthDate"]))
        requests.append(service.post("/fhir/Patient", patient))
    result = runner.run(
        LoadSpec(
            service.host,
            service.port,
            tuple(requests),
            "http",
            connections,
            duration_s=max_seconds,
            warmup_s=0.0,
            max_requests=n,
        )
    )
    created = result.statuses.get("201", 0)
    return SeededPatients(n, created, result.window_s, sample, result.first_error)


def search_supports_birthdate(gateway: Endpoint, family: str, birth_date: str) -> bool:
    """Whether the server accepts `name` together with `birthdate` (a 400 means it does not, yet)."""
    with httpx.Client(headers=gateway.headers, timeout=10.0, trust_env=False) as client:
        response = client.get(f"{gateway.base}/Patient", params={"name": family, "birthdate": birth_date})
    return response.status_code == 200


def search_paths(sample: list[tuple[str, str]], with_birthdate: bool) -> list[str]:
    paths = []
    for family, birth_date in sample:
        query = f"name={quote(family)}" + (f"&birthdate={birth_date}" if with_birthdate else "")
        paths.append(f"/fhir/Patient?{query}")
    return paths


def mean_matches(gateway: Endpoint, paths: list[str]) -> float:
    """Average entries per search page over a few of the queries."""
    counts = []
    with httpx.Client(headers=gateway.headers, timeout=10.0, trust_env=False) as client:
        for path in paths[:20]:
            response = client.get(f"http://{gateway.host}:{gateway.port}{path}")
            response.raise_for_status()
            counts.append(len(response.json().get("entry", [])))
    return sum(counts) / len(counts) if counts else 0.0
