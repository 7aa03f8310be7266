"""A fuzz pass over the gateway's FHIR API: generated search queries, resource bodies and paths.

Whatever a client sends, the answer is never a 5xx, and every error is an OperationOutcome.
Bounded (a fixed number of examples, no shrinking across runs) so `make test` stays quick.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.fhir.ownership import OWNER_OF
from shared.fhir.search_params import SEARCH_PARAMETERS
from tests.integration.stack import Stack

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

TYPES = sorted(OWNER_OF)
PARAM_NAMES = sorted({p.name for params in SEARCH_PARAMETERS.values() for p in params})
MODIFIERS = ["", ":missing", ":not", ":text", ":exact", ":contains", ":Patient", ":below", ":bogus"]
PREFIXES = ["", "eq", "ne", "lt", "gt", "le", "ge", "sa", "eb", "ap", "zz"]
RESULT_PARAMS = [
    "_count",
    "_sort",
    "_include",
    "_revinclude",
    "_summary",
    "_elements",
    "_total",
    "_id",
    "_lastUpdated",
    "_cursor",
    "_format",
    "_has",
    "_query",
]

weird_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40)
values = st.one_of(
    weird_text,
    st.builds(
        lambda p, d: p + d,
        st.sampled_from(PREFIXES),
        st.sampled_from(
            [
                "2024",
                "2024-02-30",
                "1980-03-15T10:00:00Z",
                "9999-99",
                "-1",
                "1e309",
                "NaN",
                "12|x|y",
                "|",
                "a|b|c|d",
            ]
        ),
    ),
    st.sampled_from(
        ["Patient/1", "Patient/../../etc", "http://x/Patient/1", "CarePlan:subject", "*", "-_id,name"]
    ),
)
param = st.one_of(
    st.builds(lambda n, m, v: (n + m, v), st.sampled_from(PARAM_NAMES), st.sampled_from(MODIFIERS), values),
    st.tuples(st.sampled_from(RESULT_PARAMS), values),
    st.tuples(weird_text, weird_text),
    st.builds(
        lambda a, b, v: (f"{a}:{b}.{a}", v), st.sampled_from(PARAM_NAMES), st.sampled_from(TYPES), values
    ),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | weird_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(weird_text, children, max_size=4),
    max_leaves=12,
)
bodies = st.one_of(
    st.builds(
        lambda t, extra: {"resourceType": t, **extra},
        st.sampled_from(TYPES),
        st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "status",
                    "gender",
                    "subject",
                    "identifier",
                    "name",
                    "meta",
                    "birthDate",
                    "code",
                    "intent",
                    "active",
                    "entry",
                    "type",
                ]
            ),
            json_values,
            max_size=5,
        ),
    ),
    json_values,
)


def assert_sane(response: httpx.Response) -> None:
    assert response.status_code < 500, (
        f"{response.request.method} {response.request.url}: {response.text[:500]}"
    )
    if response.status_code >= 400:
        body: Any = response.json()
        assert body["resourceType"] == "OperationOutcome", response.text[:300]


@FUZZ
@given(resource_type=st.sampled_from(TYPES), params=st.lists(param, max_size=5))
async def test_generated_searches_never_fail_with_a_server_error(
    stack: Stack, resource_type: str, params: list[tuple[str, str]]
) -> None:
    async with stack.client() as http:
        assert_sane(await http.get(f"/fhir/{resource_type}", params=params))


@FUZZ
@given(resource_type=st.sampled_from(TYPES), body=bodies)
async def test_generated_resource_bodies_never_fail_with_a_server_error(
    stack: Stack, resource_type: str, body: Any
) -> None:
    headers = {"Content-Type": "application/fhir+json"}
    async with stack.client() as http:
        assert_sane(await http.post(f"/fhir/{resource_type}", content=orjson.dumps(body), headers=headers))
        assert_sane(
            await http.put(f"/fhir/{resource_type}/fuzz-1", content=orjson.dumps(body), headers=headers)
        )
        assert_sane(await http.post("/fhir", content=orjson.dumps(body), headers=headers))


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    path=st.lists(
        st.one_of(st.sampled_from([*TYPES, "_history", "_search", "$everything", "metadata"]), weird_text),
        min_size=1,
        max_size=4,
    ),
    raw=st.binary(max_size=200),
    content_type=st.sampled_from(["application/fhir+json", "application/json-patch+json", "text/plain", ""]),
)
async def test_generated_paths_methods_and_raw_bytes_never_fail_with_a_server_error(
    stack: Stack, method: str, path: list[str], raw: bytes, content_type: str
) -> None:
    url = "/fhir/" + "/".join(quote(p, safe="$_") or "x" for p in path)
    async with stack.client() as http:
        response = await http.request(method, url, content=raw, headers={"Content-Type": content_type})
    assert_sane(response)
