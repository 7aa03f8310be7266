"""Preparing a directory Bundle for import, and reading what the server answered. No I/O.

`carebridge directory import` accepts a transaction, batch, collection or searchset Bundle of
directory resources (Organization, Endpoint, Location, Practitioner, HealthcareService,
PractitionerRole). Every resource is sent as a conditional update by its first identifier, so an
import can be repeated; resources without an identifier are refused, since they could only be
created again on every import.

Large directories go in several transactions. References inside a transaction use the entries'
`urn:uuid:` fullUrls, which the server resolves within that transaction only, so resources that
reference each other (an Organization and its Endpoint, a service and its Location) always travel
together: the Bundle is cut along the connected groups of its reference graph, never through one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import urlencode

import orjson

from services.referral.domain.directory import (
    conditional_url,
    escape_token,
    first_identifier,
    full_url,
    transaction_bundle,
)
from shared.errors import InvalidInput, PayloadTooLarge

IMPORTABLE_TYPES: Final = (
    "Organization",
    "Endpoint",
    "Location",
    "Practitioner",
    "HealthcareService",
    "PractitionerRole",
)
#: The server's limit on the entries of one Bundle (shared/fhir/rest/bundles.py MAX_ENTRIES).
MAX_TRANSACTION_ENTRIES: Final = 1000
#: The server's largest search page (shared/fhir/search/query.py MAX_COUNT); a chunk is smaller.
MAX_COUNT: Final = 1000
_ETAG = re.compile(r'^(?:W/)?"?([^"]*)"?$')

Outcome = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True, slots=True)
class ImportEntry:
    resource_type: str
    system: str
    value: str
    entry: dict[str, Any]
    size: int

    @property
    def label(self) -> str:
        return f"{self.resource_type} {self.system}|{self.value}"


@dataclass(slots=True)
class ImportTally:
    """Counts by outcome and resource type."""

    counts: dict[Outcome, dict[str, int]] = field(
        default_factory=lambda: {"created": {}, "updated": {}, "unchanged": {}}
    )

    def add(self, outcome: Outcome, resource_type: str) -> None:
        by_type = self.counts[outcome]
        by_type[resource_type] = by_type.get(resource_type, 0) + 1

    def total(self, outcome: Outcome) -> int:
        return sum(self.counts[outcome].values())

    def summary(self) -> str:
        parts = []
        for outcome in ("created", "updated", "unchanged"):
            detail = ", ".join(f"{n} {t}" for t, n in sorted(self.counts[outcome].items()))
            parts.append(f"{self.total(outcome)} {outcome}" + (f" ({detail})" if detail else ""))
        return "; ".join(parts)


def import_entries(bundle: Any) -> list[ImportEntry]:
    """The Bundle's resources as conditional updates by identifier, references rewritten to the
    new fullUrls. Raises InvalidInput naming the entry that cannot be imported."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InvalidInput("A directory file is a FHIR Bundle (or a CSV)")
    kind = bundle.get("type")
    if kind not in ("transaction", "batch", "collection", "searchset"):
        raise InvalidInput(f"Bundle.type {kind!r}: give a transaction, batch, collection or searchset Bundle")
    raw = bundle.get("entry") or []
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("The Bundle has no entries")
    renamed: dict[str, str] = {}
    staged: list[tuple[str, str, str, dict[str, Any]]] = []
    seen: dict[tuple[str, str, str], int] = {}
    for index, item in enumerate(raw):
        where = f"Bundle.entry[{index}]"
        resource = item.get("resource") if isinstance(item, dict) else None
        if not isinstance(resource, dict):
            raise InvalidInput(f"{where} has no resource")
        rtype = resource.get("resourceType")
        if rtype not in IMPORTABLE_TYPES:
            raise InvalidInput(
                f"{where}: {rtype} is not a directory resource ({', '.join(IMPORTABLE_TYPES)})"
            )
        method = (item.get("request") or {}).get("method") if isinstance(item.get("request"), dict) else None
        if method not in (None, "POST", "PUT"):
            raise InvalidInput(f"{where}: a directory import only creates and updates, not {method}")
        ident = first_identifier(resource)
        if ident is None:
            raise InvalidInput(
                f"{where}: the {rtype} has no identifier with system and value, so it could not be "
                "imported twice without being created twice"
            )
        key = (rtype, *ident)
        if key in seen:
            raise InvalidInput(f"{where}: {rtype} {ident[0]}|{ident[1]} is also entry {seen[key]}")
        seen[key] = index
        new_url = full_url(rtype, *ident)
        for old in _names(item, resource):
            renamed[old] = new_url
        staged.append((rtype, ident[0], ident[1], resource))
    entries = []
    for rtype, system, value, resource in staged:
        body = _rewritten(_importable(resource), renamed)
        entry = {
            "fullUrl": full_url(rtype, system, value),
            "resource": body,
            "request": {"method": "PUT", "url": conditional_url(rtype, system, value)},
        }
        entries.append(ImportEntry(rtype, system, value, entry, len(orjson.dumps(entry))))
    return entries


def _names(item: dict[str, Any], resource: dict[str, Any]) -> list[str]:
    """What other entries may call this one: its fullUrl, and Type/id (relative or at the end
    of an absolute fullUrl)."""
    names = []
    url = item.get("fullUrl")
    if isinstance(url, str) and url:
        names.append(url)
        match = re.search(r"([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})$", url)
        if match and not url.startswith("urn:"):
            names.append(match[1])
    if isinstance(resource.get("id"), str):
        names.append(f"{resource['resourceType']}/{resource['id']}")
    return names


def _importable(resource: dict[str, Any]) -> dict[str, Any]:
    """Without the sender's id and server meta: the receiving server names and versions it."""
    body = {k: v for k, v in resource.items() if k != "id"}
    meta = body.pop("meta", None)
    if isinstance(meta, dict):
        kept = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated", "source")}
        if kept:
            body["meta"] = kept
    return body


def _rewritten(node: Any, renamed: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {k: _rewritten(v, renamed) for k, v in node.items()}
        reference = node.get("reference")
        if isinstance(reference, str) and reference in renamed:
            out["reference"] = renamed[reference]
        return out
    if isinstance(node, list):
        return [_rewritten(v, renamed) for v in node]
    return node


# --- cutting into transactions -------------------------------------------------------------------


def chunks(
    entries: Sequence[ImportEntry], *, max_entries: int = 200, max_bytes: int = 768 * 1024
) -> list[list[ImportEntry]]:
    """Transactions of at most `max_entries` entries and about `max_bytes`, never separating
    resources that reference each other. A group larger than the limits travels alone (up to
    the server's entry limit)."""
    groups = _reference_groups(entries)
    result: list[list[ImportEntry]] = []
    current: list[ImportEntry] = []
    size = 0
    for group in groups:
        group_size = sum(e.size for e in group)
        if len(group) > MAX_TRANSACTION_ENTRIES:
            raise PayloadTooLarge(
                f"{len(group)} resources reference each other ({group[0].label} ...): more than one "
                f"transaction may carry ({MAX_TRANSACTION_ENTRIES})"
            )
        if current and (len(current) + len(group) > max_entries or size + group_size > max_bytes):
            result.append(current)
            current, size = [], 0
        current.extend(group)
        size += group_size
    if current:
        result.append(current)
    return result


def _reference_groups(entries: Sequence[ImportEntry]) -> list[list[ImportEntry]]:
    """Connected groups of the reference graph (union-find), in the order of their first entry."""
    parent = list(range(len(entries)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_url = {e.entry["fullUrl"]: i for i, e in enumerate(entries)}
    for i, entry in enumerate(entries):
        for target in _references(entry.entry["resource"]):
            j = by_url.get(target)
            if j is not None:
                parent[root(i)] = root(j)
    grouped: dict[int, list[ImportEntry]] = {}  # a group is first met at its first entry
    for i, entry in enumerate(entries):
        grouped.setdefault(root(i), []).append(entry)
    return list(grouped.values())


def _references(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node["reference"]
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _references(value)


def transaction_of(chunk: Sequence[ImportEntry]) -> dict[str, Any]:
    return transaction_bundle([e.entry for e in chunk])


# --- asking what is there, and reading the answer -------------------------------------------------


def version_queries(chunk: Sequence[ImportEntry]) -> dict[str, str]:
    """Per resource type, the form body of a `POST [type]/_search` that finds the chunk's
    resources by identifier (one search, the identifiers OR-ed), so the answer to the
    transaction can say which were unchanged (same version as before) and which updated."""
    tokens: dict[str, list[str]] = {}
    for e in chunk:
        tokens.setdefault(e.resource_type, []).append(f"{escape_token(e.system)}|{escape_token(e.value)}")
    return {
        rtype: urlencode({"identifier": ",".join(found), "_elements": "identifier", "_count": str(MAX_COUNT)})
        for rtype, found in tokens.items()
    }


def versions_before(answers: Mapping[str, Any], chunk: Sequence[ImportEntry]) -> list[str | None]:
    """Each entry's current versionId from the searchsets of `version_queries` (by type), None
    when there is none (or several: the conditional update will say so)."""
    found: dict[tuple[str, str, str], list[str]] = {}
    for rtype, bundle in answers.items():
        entries = bundle.get("entry") if isinstance(bundle, dict) else None
        for item in entries or []:
            stored = item.get("resource") or {} if isinstance(item, dict) else {}
            version = (stored.get("meta") or {}).get("versionId")
            for ident in stored.get("identifier") or []:
                if isinstance(ident, dict) and version is not None:
                    key = (rtype, str(ident.get("system")), str(ident.get("value")))
                    found.setdefault(key, []).append(str(version))
    result: list[str | None] = []
    for e in chunk:
        versions = found.get((e.resource_type, e.system, e.value), [])
        result.append(versions[0] if len(versions) == 1 else None)
    return result


def outcomes(answer: Any, chunk: Sequence[ImportEntry], before: Sequence[str | None]) -> list[Outcome]:
    """created (201), unchanged (the version found before the import), or updated."""
    entries = answer.get("entry") if isinstance(answer, dict) else None
    if not isinstance(entries, list) or len(entries) != len(chunk):
        raise InvalidInput("The server's transaction-response does not answer every entry")
    result: list[Outcome] = []
    for item, previous in zip(entries, before, strict=True):
        response = item.get("response") or {}
        status = str(response.get("status", ""))
        version = _etag_version(response.get("etag"))
        if status.startswith("201") or previous is None:
            result.append("created")
        elif version is not None and version == previous:
            result.append("unchanged")
        else:
            result.append("updated")
    return result


def _etag_version(etag: Any) -> str | None:
    if not isinstance(etag, str):
        return None
    match = _ETAG.match(etag.strip())
    return match[1] if match and match[1] else None


def diagnostics(body: Any) -> str:
    """The diagnostics of an OperationOutcome (a response body, or a Bundle entry's outcome)."""
    if not isinstance(body, dict):
        return ""
    outcome = body
    if body.get("resourceType") != "OperationOutcome":
        outcome = (body.get("response") or {}).get("outcome") or body.get("resource") or {}
    issues = outcome.get("issue") if isinstance(outcome, dict) else None
    if not isinstance(issues, list):
        return ""
    return "; ".join(str(i.get("diagnostics") or i.get("code") or "") for i in issues if isinstance(i, dict))


# --- what a server stores ----------------------------------------------------------------------------


def stored_form(bundle: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """A transaction of `urn:uuid:` entries as a server would store it, by type and id: each id
    is its fullUrl's uuid and references to entries point at `Type/id` (for in-process matching
    in tests and `make bench`, without a server)."""
    entries = bundle.get("entry") or []
    prefix = "urn:uuid:"
    names = {
        e["fullUrl"]: f"{e['resource']['resourceType']}/{e['fullUrl'][len(prefix) :]}"
        for e in entries
        if str(e.get("fullUrl", "")).startswith(prefix)
    }
    stored: dict[str, dict[str, dict[str, Any]]] = {}
    for entry in entries:
        if entry.get("fullUrl") not in names:
            continue
        resource = {**_rewritten(entry["resource"], names), "id": entry["fullUrl"][len(prefix) :]}
        stored.setdefault(resource["resourceType"], {})[resource["id"]] = resource
    return stored
