"""Merging one Patient record into another, and undoing it.

FHIR's merge (R5 patient-operation-merge.html, offered on R4; R4 patient.html#links): the source
becomes inactive with a `replaced-by` link to the target, the target gains a `replaces` link, and
what pointed at the source points at the target. Intake does this to its Patients (HL7 A40,
`Patient/$merge`, a resolved match review) and publishes PATIENT_MERGED_EVENT; careplan and
referral then re-point their own resources (`repoint_compartment`). Each service remembers what
it moved, under the merge, so `unmerge` can move exactly that back (PATIENT_UNMERGED_EVENT).

Reads of a merged-away id still answer with that record: its `replaced-by` link says where the
person went.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.errors import BusinessRuleViolation, Gone, NotFound
from shared.events import CloudEvent, topics
from shared.fhir.events import enqueue_domain_event
from shared.fhir.projections import read_projection
from shared.fhir.rest import FhirRest
from shared.fhir.rest.bundles import reference_holders
from shared.fhir.search import MAX_COUNT
from shared.fhir.search_params import SEARCH_PARAMETERS
from shared.store import Transaction

#: Projection of merges, in every service that holds Patient-linked resources: key the source
#: Patient id, data a MergeRecord (the latest merge or unmerge of that source).
MERGES = "patient-merges"
#: The types of a service that point at a Patient (those with a `patient` search parameter).
_COMPARTMENT = frozenset(t for t, ps in SEARCH_PARAMETERS.items() if any(p.name == "patient" for p in ps))


@dataclass(slots=True)
class MergeRecord:
    source: str
    target: str
    #: "merged" or "unmerged"
    status: str
    at: str
    actor: str
    #: hl7 | fhir | match-review | event
    origin: str
    reason: str | None = None
    #: Patient.active of the source before the merge (None: it had none), restored by unmerge.
    source_active: bool | None = None
    #: `Type/id` of this service's resources the merge re-pointed from source to target.
    moved: list[str] = field(default_factory=list)
    version: int = 0

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> MergeRecord:
        return cls(**orjson.loads(data))


# --- intake: the Patients themselves ----------------------------------------------------------------


async def merge_patients(
    rest: FhirRest,
    tx: Transaction,
    source: str,
    target: str,
    *,
    actor: str,
    origin: str,
    reason: str | None = None,
) -> tuple[MergeRecord, list[str]]:
    """Merge Patient `source` into `target` in `tx`; returns the record and what was written.

    Merging a source already merged into the same target changes nothing. The target must be
    an active record that is not itself merged away (R5 $merge: "the target patient must be
    active").
    """
    if source == target:
        raise BusinessRuleViolation("A Patient cannot be merged into itself")
    source_patient = await _read_patient(tx, source, "source")
    target_patient = await _read_patient(tx, target, "target")
    survivor = replaced_by(target_patient)
    if survivor is not None:
        raise BusinessRuleViolation(
            f"Patient/{target} is merged into Patient/{survivor}; merge into that one"
        )
    previous = await merge_record(rest, tx, source)
    if replaced_by(source_patient) == target and previous is not None and previous.status == "merged":
        return previous, []
    written = []
    if await rewrite(rest, tx, "Patient", source, lambda p: retired(p, target)):
        written.append(f"Patient/{source}")
    if await rewrite(rest, tx, "Patient", target, lambda p: with_link(p, source, "replaces")):
        written.append(f"Patient/{target}")
    moved = await repoint_compartment(rest, tx, source, target)
    record = MergeRecord(
        source,
        target,
        "merged",
        _now(),
        actor,
        origin,
        reason,
        source_patient.get("active") if isinstance(source_patient.get("active"), bool) else None,
        moved,
    )
    await save_merge_record(tx, record, previous)
    await _publish(tx, rest, topics.PATIENT_MERGED_EVENT, record)
    return record, [*written, *moved]


async def unmerge_patients(
    rest: FhirRest, tx: Transaction, source: str, *, actor: str, reason: str | None = None
) -> tuple[MergeRecord, list[str]]:
    """Undo the latest merge of `source`: it is active again (as it was), both links go, and
    the resources the merge moved to the target come back to it."""
    record = await merge_record(rest, tx, source)
    if record is None or record.status != "merged":
        raise BusinessRuleViolation(f"Patient/{source} is not merged into another Patient")
    target = record.target
    written = []

    def restored(patient: dict[str, Any]) -> dict[str, Any]:
        changed = without_link(patient, target, "replaced-by")
        changed.pop("active", None)
        if record.source_active is not None:
            changed["active"] = record.source_active
        return changed

    if await rewrite(rest, tx, "Patient", source, restored):
        written.append(f"Patient/{source}")
    if await rewrite(rest, tx, "Patient", target, lambda p: without_link(p, source, "replaces")):
        written.append(f"Patient/{target}")
    written += await restore_compartment(rest, tx, record.moved, source, target)
    undone = MergeRecord(
        source,
        target,
        "unmerged",
        _now(),
        actor,
        record.origin,
        reason,
        record.source_active,
        [],
    )
    await save_merge_record(tx, undone, record)
    await _publish(tx, rest, topics.PATIENT_UNMERGED_EVENT, undone)
    return undone, written


async def _read_patient(tx: Transaction, id_: str, role: str) -> dict[str, Any]:
    try:
        patient: dict[str, Any] = orjson.loads((await tx.read("Patient", id_)).content)
        return patient
    except (NotFound, Gone):
        raise BusinessRuleViolation(f"The {role} Patient/{id_} does not exist") from None


def retired(patient: dict[str, Any], target: str) -> dict[str, Any]:
    """Inactive, and `replaced-by` the target (any earlier replaced-by link is superseded)."""
    others = [link for link in patient.get("link") or [] if link.get("type") != "replaced-by"]
    link = {"other": {"reference": f"Patient/{target}"}, "type": "replaced-by"}
    return {**patient, "active": False, "link": [*others, link]}


def with_link(patient: dict[str, Any], other: str, link_type: str) -> dict[str, Any]:
    link = {"other": {"reference": f"Patient/{other}"}, "type": link_type}
    links = patient.get("link") or []
    return patient if link in links else {**patient, "link": [*links, link]}


def without_link(patient: dict[str, Any], other: str, link_type: str) -> dict[str, Any]:
    link = {"other": {"reference": f"Patient/{other}"}, "type": link_type}
    kept = [existing for existing in patient.get("link") or [] if existing != link]
    changed = {k: v for k, v in patient.items() if k != "link"}
    if kept:
        changed["link"] = kept
    return changed


def replaced_by(patient: dict[str, Any]) -> str | None:
    """The id a Patient's `replaced-by` link points to, if any."""
    for link in patient.get("link") or []:
        if not isinstance(link, dict) or link.get("type") != "replaced-by":
            continue
        reference = (link.get("other") or {}).get("reference")
        if isinstance(reference, str) and reference.startswith("Patient/"):
            return reference[len("Patient/") :]
    return None


# --- every service: its own resources that point at a Patient ---------------------------------------


async def repoint_compartment(rest: FhirRest, tx: Transaction, source: str, target: str) -> list[str]:
    """Point every resource of this service's Patient compartment at the target instead;
    returns the `Type/id`s it changed."""
    moved: list[str] = []
    connection = await tx.sql_connection()
    for rtype in rest.owned_types:
        if rtype == "Patient" or rtype not in _COMPARTMENT:
            continue
        while True:
            found = await rest.searcher.matches(
                rest.store, rtype, [("patient", f"Patient/{source}")], connection=connection, limit=MAX_COUNT
            )
            before = len(moved)
            for match in found:
                if await rewrite(rest, tx, rtype, match.id, lambda r: replace_reference(r, source, target)):
                    moved.append(f"{rtype}/{match.id}")
            if len(found) < MAX_COUNT or len(moved) == before:
                break
    return moved


async def restore_compartment(
    rest: FhirRest, tx: Transaction, moved: list[str], source: str, target: str
) -> list[str]:
    """Point what a merge moved back at the source (what was deleted since stays deleted)."""
    restored = []
    for key in moved:
        rtype, _, id_ = key.partition("/")
        try:
            if await rewrite(rest, tx, rtype, id_, lambda r: replace_reference(r, target, source)):
                restored.append(key)
        except (NotFound, Gone):
            continue
    return restored


def replace_reference(resource: dict[str, Any], source: str, target: str) -> dict[str, Any]:
    changed = copy.deepcopy(resource)
    old = f"Patient/{source}"
    for holder in reference_holders(changed):
        if holder["reference"] == old or holder["reference"].startswith(old + "/_history/"):
            holder["reference"] = f"Patient/{target}"
    return changed


async def rewrite(
    rest: FhirRest, tx: Transaction, rtype: str, id_: str, change: Callable[[dict[str, Any]], dict[str, Any]]
) -> bool:
    """Read, change, and write only if the content (meta aside) changed. NotFound if absent."""
    stored = orjson.loads((await tx.read(rtype, id_)).content)
    changed = change(stored)
    if without_meta(changed) == without_meta(stored):
        return False
    await rest.update(tx, rtype, id_, changed)
    return True


def without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


# --- records and events ------------------------------------------------------------------------------


async def merge_record(rest: FhirRest, tx: Transaction, source: str) -> MergeRecord | None:
    """The latest merge or unmerge of `source` this service recorded, read in `tx`."""
    found = await read_projection(rest.store, tx, MERGES, source)
    if found is None or not found[1]:
        return None
    record = MergeRecord.from_json(found[1])
    record.version = found[0]
    return record


async def save_merge_record(tx: Transaction, record: MergeRecord, previous: MergeRecord | None) -> None:
    record.version = (previous.version if previous is not None else 0) + 1
    await tx.put_projection(MERGES, record.source, record.version, record.to_json())


async def _publish(tx: Transaction, rest: FhirRest, event_type: str, record: MergeRecord) -> None:
    """The merge (or unmerge) for the other services, keyed by the source Patient: it follows
    the source's own update on its partition."""
    await enqueue_domain_event(
        tx,
        rest.settings,
        topic=topics.PATIENT,
        event_type=event_type,
        subject=f"Patient/{record.source}",
        key=record.source,
        data=merge_parameters(record),
    )


def merge_parameters(record: MergeRecord) -> dict[str, Any]:
    """A merge as FHIR Parameters (the R5 $merge input names)."""
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "source-patient", "valueReference": {"reference": f"Patient/{record.source}"}},
            {"name": "target-patient", "valueReference": {"reference": f"Patient/{record.target}"}},
            {"name": "status", "valueCode": record.status},
            {"name": "at", "valueDateTime": record.at},
        ],
    }


def merge_event_patients(event: CloudEvent) -> tuple[str, str] | None:
    """(source, target) of a PATIENT_MERGED_EVENT or PATIENT_UNMERGED_EVENT."""
    data = event.data
    if not isinstance(data, dict):
        return None
    found = {}
    for p in data.get("parameter") or []:
        reference = (p.get("valueReference") or {}).get("reference") if isinstance(p, dict) else None
        if isinstance(reference, str) and reference.startswith("Patient/"):
            found[p.get("name")] = reference[len("Patient/") :]
    if "source-patient" in found and "target-patient" in found:
        return found["source-patient"], found["target-patient"]
    return None


async def apply_merge_event(rest: FhirRest, tx: Transaction, event: CloudEvent) -> list[str]:
    """careplan and referral: re-point (or, for an unmerge, restore) their own resources."""
    patients = merge_event_patients(event)
    if patients is None:
        return []
    source, target = patients
    previous = await merge_record(rest, tx, source)
    if event.type == topics.PATIENT_MERGED_EVENT:
        moved = await repoint_compartment(rest, tx, source, target)
        if previous is not None and previous.status == "merged" and previous.target == target:
            moved = [*previous.moved, *(m for m in moved if m not in previous.moved)]
        record = MergeRecord(source, target, "merged", _now(), "intake", "event", None, None, moved)
        await save_merge_record(tx, record, previous)
        return moved
    if event.type == topics.PATIENT_UNMERGED_EVENT:
        if previous is None or previous.status != "merged":
            return []
        restored = await restore_compartment(rest, tx, previous.moved, source, target)
        record = MergeRecord(source, target, "unmerged", _now(), "intake", "event")
        await save_merge_record(tx, record, previous)
        return restored
    return []


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
