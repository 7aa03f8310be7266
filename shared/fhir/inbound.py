"""Applying a translated HL7 v2 message: the gateway's transaction Bundle of conditional updates
(`services.gateway.hl7.translate.bundle`), of which each service applies the entries it owns.

All of one message's owned entries are applied in the consumer's transaction (with its inbox
claim), in Bundle order, through `FhirRest`, so every write is validated and puts its lifecycle
event in the outbox. What this adds to a plain FHIR transaction:

- Merge semantics. `PUT Type?identifier=...` finds the resource by its business identifier (under
  the criteria's key lock, as conditional update does) and lays the message's top-level elements
  over the stored ones: elements the message does not carry are kept (a `link` from a merge, a
  telecom a case manager added), `identifier` lists are unioned by system and value, a key whose
  value is null is removed (an A13 takes back a discharge). A result equal to what is stored
  (meta aside) writes nothing, so a replay or resend makes no version and no event.
- Conditional references (R4 bundle.html#references) to types this service owns become
  `Type/<id>` of this Bundle's entry or of the stored match; to types it does not own, logical
  references (`identifier` + `type`, R4 references.html#logical), except Patient: careplan and
  referral resolve it through an identifier index of intake's Patient events (see
  `index_patient_event`), and wait for intake while the Patient is not known there yet.
- Patient merges (intake): `Patient/$merge` with the shape of FHIR's merge operation; a Patient
  merged away is followed to its survivor wherever one is looked up by identifier.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn
from urllib.parse import parse_qsl

import orjson

from shared.errors import (
    BusinessRuleViolation,
    DependencyUnavailable,
    Gone,
    NotFound,
    PoisonMessage,
    PreconditionFailed,
)
from shared.events import CloudEvent, topics
from shared.fhir.patient_merge import merge_patients, replaced_by, retired
from shared.fhir.projections import read_projection, version_of
from shared.fhir.rest import FhirRest
from shared.fhir.rest.bundles import Entry, parse_entries, reference_holders
from shared.fhir.rest.conditional import Criteria, parse_criteria
from shared.fhir.search_params import SEARCH_PARAMETERS
from shared.store import StoredResource, Transaction
from shared.store.content import new_id

log = logging.getLogger(__name__)

#: How long careplan and referral wait for intake to publish a Patient a message refers to.
#: Past it the message goes to the DLQ (replayable) instead of holding its partition forever.
PATIENT_WAIT = timedelta(minutes=10)
#: Projection of intake's Patients by identifier: key `system|value`, data the Patient id.
PATIENT_IDENTIFIERS = "patient-identifiers"
#: Projection of merged Patients: key the Patient id, data its survivor's id (empty if none).
PATIENT_REPLACED_BY = "patient-replaced-by"
MERGE_URL = "Patient/$merge"
_MAX_LINK_HOPS = 16
_MAX_PATIENT_MATCHES = 10
_PROJECTION_KEY_MAX = 200  # projections.key is VARCHAR(200)
#: Intake's types that point at a Patient (those with a `patient` search parameter).
_PATIENT_COMPARTMENT = frozenset(
    t for t, ps in SEARCH_PARAMETERS.items() if any(p.name == "patient" for p in ps)
)


@dataclass(slots=True)
class Applied:
    """What applying one Bundle did, by `Type/id`."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Run:
    rest: FhirRest
    tx: Transaction
    sent_at: datetime | None
    patient_wait: timedelta
    #: Criteria key of each owned entry -> the id it writes (decided before anything is written).
    planned: dict[str, str] = field(default_factory=dict)
    #: Criteria keys of conditional creates that found their resource: left as they are.
    existing: set[str] = field(default_factory=set)
    #: Survivor id -> identifiers of the merged-away Patients a lookup was redirected from.
    merged_away: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    applied: Applied = field(default_factory=Applied)

    @property
    def owns_patients(self) -> bool:
        return "Patient" in self.rest.owned_types


# --- the consumer's entry points -------------------------------------------------------------------


async def apply_translated_event(
    rest: FhirRest, event: CloudEvent, tx: Transaction, *, patient_wait: timedelta = PATIENT_WAIT
) -> Applied | None:
    """Apply an HL7_TRANSLATED_EVENT's Bundle (other event types on the topic are ignored)."""
    if event.type != topics.HL7_TRANSLATED_EVENT:
        return None
    applied = await apply_translated_bundle(
        rest, tx, event.data, sent_at=_event_time(event.time), patient_wait=patient_wait
    )
    log.info(
        "%s: applied %s: %d written, %d unchanged, %d entries not ours",
        rest.settings.service_name,
        event.subject or event.id,
        len(applied.written),
        len(applied.unchanged),
        applied.skipped,
    )
    return applied


async def apply_translated_bundle(
    rest: FhirRest,
    tx: Transaction,
    bundle: Any,
    *,
    sent_at: datetime | None,
    patient_wait: timedelta = PATIENT_WAIT,
) -> Applied:
    """Apply the entries of `bundle` whose types `rest` owns, in Bundle order, in `tx`.

    `sent_at` is when the message was published: a Patient reference that cannot be resolved
    yet is retried (DependencyUnavailable) until it is `patient_wait` old, then dead-lettered.
    """
    if (
        not isinstance(bundle, dict)
        or bundle.get("resourceType") != "Bundle"
        or bundle.get("type") != "transaction"
    ):
        raise PoisonMessage("A translated HL7 v2 message must carry a transaction Bundle")
    run = _Run(rest, tx, sent_at, patient_wait)
    entries = []
    for entry in parse_entries(bundle, ""):
        if _is_merge(entry):
            if run.owns_patients:
                entries.append(entry)
            else:
                run.applied.skipped += 1
        elif entry.path[0] not in rest.owned_types:
            run.applied.skipped += 1
        elif entry.method == "PUT" and len(entry.path) == 1 and isinstance(entry.resource, dict):
            entries.append(entry)
        elif _is_conditional_create(entry):
            entries.append(entry)
        else:
            raise PoisonMessage(
                f"Entry {entry.index}: expected a conditional update (PUT Type?identifier=...)"
            )
    for entry in entries:  # decide every entry's id first: references may point forward
        if not _is_merge(entry):
            await _plan(run, entry)
    for entry in entries:
        if _is_merge(entry):
            await _merge(run, entry.resource)
        else:
            await _upsert(run, entry)
    return run.applied


def _is_conditional_create(entry: Entry) -> bool:
    """`POST Type` with `ifNoneExist`: what a message only refers to (the visit of a lab result),
    created when unknown and otherwise left as it is."""
    return (
        entry.method == "POST"
        and len(entry.path) == 1
        and "if-none-exist" in entry.headers
        and isinstance(entry.resource, dict)
    )


def _criteria_of(entry: Entry) -> Criteria:
    if _is_conditional_create(entry):
        return parse_criteria(entry.path[0], entry.headers["if-none-exist"])
    return parse_criteria(entry.path[0], entry.params)


def _is_merge(entry: Entry) -> bool:
    return entry.method == "POST" and "/".join(entry.path) == MERGE_URL


def _event_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- conditional updates with merge semantics --------------------------------------------------------


async def _plan(run: _Run, entry: Entry) -> None:
    rtype = entry.path[0]
    if entry.resource.get("resourceType") != rtype:
        raise PoisonMessage(f"Entry {entry.index}: the resource is not a {rtype}")
    criteria = _criteria_of(entry)
    found = await _lock_and_find(run, criteria)
    hooks = run.rest.hooks.get(rtype)
    if found is None and hooks is not None and criteria.key not in run.planned:
        # Not known by identifier; maybe known as a person (intake's matching).
        found = await hooks.existing_match(run.rest, run.tx, entry.resource)
    if found is not None and _is_conditional_create(entry):
        run.existing.add(criteria.key)
    run.planned.setdefault(criteria.key, found or new_id())


async def _lock_and_find(run: _Run, criteria: Criteria) -> str | None:
    """The id the criteria select (a merged-away Patient's survivor), under the criteria's lock."""
    if criteria.resource_type != "Patient":
        match = await run.rest.lock_and_match(run.tx, criteria, "update")
        return match.id if match is not None else None
    await run.tx.lock_conditional_key("Patient", criteria.key, criteria.canonical)
    return await _find_patient(run, criteria)


async def _upsert(run: _Run, entry: Entry) -> None:
    rtype = entry.path[0]
    criteria = _criteria_of(entry)
    target = run.planned[criteria.key]
    if criteria.key in run.existing:
        run.applied.unchanged.append(f"{rtype}/{target}")
        return
    incoming = await _resolve_references(run, copy.deepcopy(entry.resource))
    if target in run.merged_away:
        incoming = _without_identifiers(incoming, run.merged_away[target])
    try:
        await _rewrite(run, rtype, target, lambda stored: merge_resource(stored, incoming))
    except NotFound:
        body = {k: v for k, v in incoming.items() if v is not None and k != "id"}
        written = await run.rest.create(run.tx, rtype, body, assigned_id=target)
        await run.tx.set_conditional_key(rtype, criteria.key, target)
        run.applied.written.append(f"{rtype}/{written.stored.id}")


async def _rewrite(
    run: _Run, rtype: str, id_: str, change: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    """Read, change, and write only if the content (meta aside) changed. NotFound if absent."""
    stored = orjson.loads((await run.tx.read(rtype, id_)).content)
    changed = change(stored)
    if _without_meta(changed) == _without_meta(stored):
        run.applied.unchanged.append(f"{rtype}/{id_}")
        return
    await run.rest.update(run.tx, rtype, id_, changed)
    run.applied.written.append(f"{rtype}/{id_}")


def merge_resource(stored: dict[str, Any], incoming: dict[str, Any]) -> dict[str, Any]:
    """The stored resource with the message's top-level elements laid over it: null removes an
    element, `identifier` is unioned by system and value, `meta.source` is the message's."""
    merged = {k: v for k, v in stored.items() if k != "meta"}
    for key, value in incoming.items():
        if key in ("resourceType", "id", "meta"):
            continue
        if value is None:
            merged.pop(key, None)
        elif key == "identifier" and isinstance(value, list):
            merged[key] = union_identifiers(stored.get("identifier") or [], value)
        else:
            merged[key] = value
    meta = {k: v for k, v in (stored.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    meta.update(incoming.get("meta") or {})
    if meta:
        merged["meta"] = meta
    return merged


def union_identifiers(stored: list[Any], incoming: list[Any]) -> list[Any]:
    """Stored identifiers, each updated by the incoming one with its system and value, then
    the incoming ones not there yet."""
    result = list(stored)
    position = {_identifier_key(i): n for n, i in enumerate(result) if _identifier_key(i) is not None}
    for identifier in incoming:
        key = _identifier_key(identifier)
        if key is not None and key in position:
            result[position[key]] = {**result[position[key]], **identifier}
        elif identifier not in result:
            if key is not None:
                position[key] = len(result)
            result.append(identifier)
    return result


def _identifier_key(identifier: Any) -> tuple[str, str] | None:
    if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
        return str(identifier.get("system") or ""), identifier["value"]
    return None


def _without_identifiers(resource: dict[str, Any], keys: set[tuple[str, str]]) -> dict[str, Any]:
    """A message about a merged-away record lands on the survivor, but that record's identifiers
    stay with it: the survivor `replaces` it, and one identifier keeps selecting one Patient."""
    if not isinstance(resource.get("identifier"), list):
        return resource
    kept = [i for i in resource["identifier"] if _identifier_key(i) not in keys]
    return (
        {**resource, "identifier": kept} if kept else {k: v for k, v in resource.items() if k != "identifier"}
    )


def _without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


# --- references -------------------------------------------------------------------------------------


async def _resolve_references(run: _Run, resource: dict[str, Any]) -> dict[str, Any]:
    """Conditional references become literal ones to what this service holds, or logical ones."""
    for holder in reference_holders(resource):
        value = holder["reference"]
        rtype, _, query = value.partition("?")
        if not query or "/" in rtype:
            continue  # already literal (Type/id) or absolute
        if rtype == "Patient" and not run.owns_patients:
            holder["reference"] = f"Patient/{await _indexed_patient(run, query)}"
        elif rtype in run.rest.owned_types:
            holder["reference"] = f"{rtype}/{await _owned_target(run, parse_criteria(rtype, query))}"
        else:
            _make_logical(holder, rtype, query)
    return resource


async def _owned_target(run: _Run, criteria: Criteria) -> str:
    planned = run.planned.get(criteria.key)
    if planned is not None:
        return planned
    if criteria.resource_type == "Patient":
        found = await _find_patient(run, criteria)
    else:
        matches = await _search(run, criteria.resource_type, list(criteria.params), limit=2)
        if len(matches) > 1:
            raise PreconditionFailed(
                f"A conditional {criteria.resource_type} reference matches several resources"
            )
        found = matches[0].id if matches else None
    if found is None:
        # The message produces what it refers to, or an earlier message did: a contract breach.
        raise PoisonMessage(f"A conditional {criteria.resource_type} reference matches nothing stored here")
    return found


def _make_logical(holder: dict[str, Any], rtype: str, query: str) -> None:
    """`{"identifier": {system, value}, "type": T}` (R4 references.html#logical), display kept."""
    del holder["reference"]
    holder["type"] = rtype
    token = next((v for k, v in parse_qsl(query) if k == "identifier"), None)
    if token:
        system, bar, value = _unescape(token).partition("|")
        holder["identifier"] = (
            {"system": system, "value": value} if bar and system else {"value": value or system}
        )


def _unescape(token: str) -> str:
    """A search token's escapes (search.html#escaping) undone: `\\,` `\\$` `\\\\`."""
    return token.replace("\\,", ",").replace("\\$", "$").replace("\\\\", "\\")


async def _search(
    run: _Run, rtype: str, params: list[tuple[str, str]], *, limit: int
) -> list[StoredResource]:
    connection = await run.tx.sql_connection()
    return await run.rest.searcher.matches(run.rest.store, rtype, params, connection=connection, limit=limit)


# --- Patients in intake: the store, following Patient.link ----------------------------------------


async def _find_patient(run: _Run, criteria: Criteria) -> str | None:
    """The one surviving Patient the criteria select. Several matches that merge into one
    survivor are one Patient (a survivor may carry a merged-away record's identifier)."""
    matches = await _search(run, "Patient", list(criteria.params), limit=_MAX_PATIENT_MATCHES)
    survivors = set()
    for match in matches:
        survivor = await _survivor(run.tx, match)
        survivors.add(survivor)
        if survivor != match.id:
            identifiers = orjson.loads(match.content).get("identifier") or []
            keys = {k for k in map(_identifier_key, identifiers) if k is not None}
            run.merged_away.setdefault(survivor, set()).update(keys)
    if len(survivors) > 1:
        raise PreconditionFailed("A Patient identifier in the message matches several surviving Patients")
    return next(iter(survivors), None)


async def _survivor(tx: Transaction, patient: StoredResource) -> str:
    """Follow `replaced-by` links (R4 patient.html#links: "the link points forward to another
    patient resource that must be used in lieu of the patient resource that contains this link")."""
    current = patient
    for _ in range(_MAX_LINK_HOPS):
        successor = replaced_by(orjson.loads(current.content))
        if successor is None or successor == current.id:
            return current.id
        try:
            current = await tx.read("Patient", successor)
        except (NotFound, Gone):
            return current.id
    raise PoisonMessage("Patient.link replaced-by chain is cyclic or too long")


# --- Patients in careplan and referral: the identifier index -------------------------------------


async def index_patient_event(event: CloudEvent, tx: Transaction) -> None:
    """Keep PATIENT_IDENTIFIERS and PATIENT_REPLACED_BY from intake's Patient events.

    Rows move forward by the Patient's version only (events come at least once, maybe out of
    order). A deletion carries no identifiers: its rows stay, so references still resolve to
    the (deleted) Patient's id rather than wait for one that will not come.
    """
    parsed = topics.parse_resource_event_type(event.type)
    if parsed not in (("Patient", "created"), ("Patient", "updated")):
        return
    data = event.data
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise PoisonMessage(f"{event.type} event carries no Patient with an id")
    version, patient_id = version_of(data), data["id"]
    for identifier in data.get("identifier") or []:
        key = _identifier_key(identifier)
        if key is not None:
            await tx.put_projection(
                PATIENT_IDENTIFIERS, _index_key("|".join(key)), version, patient_id.encode()
            )
    survivor = replaced_by(data) or ""
    await tx.put_projection(PATIENT_REPLACED_BY, patient_id, version, survivor.encode())


def _index_key(token: str) -> str:
    if len(token) <= _PROJECTION_KEY_MAX:
        return token
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


async def _indexed_patient(run: _Run, query: str) -> str:
    tokens = [v for k, v in parse_qsl(query) if k == "identifier"]
    if len(tokens) != 1:
        raise PoisonMessage("A conditional Patient reference must name one identifier")
    patient_id = await _projection(run, PATIENT_IDENTIFIERS, _index_key(_unescape(tokens[0])))
    for _ in range(_MAX_LINK_HOPS):
        if not patient_id:
            _patient_not_known_yet(run)
        successor = await _projection(run, PATIENT_REPLACED_BY, patient_id)
        if not successor:
            return patient_id
        patient_id = successor
    raise PoisonMessage("Patient replaced-by chain is cyclic or too long")


def _patient_not_known_yet(run: _Run) -> NoReturn:
    """Intake applies the same message concurrently: wait for its Patient event, up to a point."""
    age = None if run.sent_at is None else datetime.now(UTC) - run.sent_at
    if age is None or age > run.patient_wait:
        raise PoisonMessage(
            f"The message's Patient is still unknown here after {run.patient_wait}; dead-lettered for replay"
        )
    raise DependencyUnavailable("The message's Patient is not known here yet (intake has not published it)")


async def _projection(run: _Run, name: str, key: str) -> str | None:
    found = await read_projection(run.rest.store, run.tx, name, key)
    return found[1].decode() if found is not None and found[1] else None


# --- Patient/$merge (intake) ------------------------------------------------------------------------


async def _merge(run: _Run, parameters: Any) -> None:
    """Merge the source Patient into the target (shared/fhir/patient_merge.py). Applying it
    again changes nothing.

    A source not known here is recorded as a merged-away placeholder (identifier, inactive,
    `replaced-by`): the source's own messages are keyed by its identifier, so they may travel
    on another partition and arrive after the merge; the placeholder sends them to the target.
    """
    source_identifier, target_identifier = _merge_identifiers(parameters)
    target = await _find_patient(run, _identifier_criteria(target_identifier))
    if target is None:
        raise PoisonMessage(
            "Patient/$merge: the target Patient does not exist (the Bundle must create it first)"
        )
    source_criteria = _identifier_criteria(source_identifier)
    await run.tx.lock_conditional_key("Patient", source_criteria.key, source_criteria.canonical)
    sources = await _search(run, "Patient", list(source_criteria.params), limit=3)
    source_ids = [s.id for s in sources if s.id != target]
    if len(source_ids) > 1:
        raise PreconditionFailed("Patient/$merge: the source identifier matches several Patients")
    if not source_ids:
        source = await _merged_away_placeholder(run, source_criteria, source_identifier, target)
    else:
        source = source_ids[0]
    try:
        _record, written = await merge_patients(run.rest, run.tx, source, target, actor="hl7v2", origin="hl7")
    except BusinessRuleViolation as exc:
        raise PoisonMessage(f"Patient/$merge: {exc.diagnostics}") from None
    run.applied.written.extend(written)


async def _merged_away_placeholder(
    run: _Run, criteria: Criteria, identifier: dict[str, Any], target: str
) -> str:
    body = retired({"resourceType": "Patient", "identifier": [identifier]}, target)
    written = await run.rest.create(run.tx, "Patient", body)
    await run.tx.set_conditional_key("Patient", criteria.key, written.stored.id)
    run.applied.written.append(f"Patient/{written.stored.id}")
    run.applied.notes.append("Patient/$merge: source not known here; recorded as merged away")
    log.info("%s: merge source not known; placeholder created", run.rest.settings.service_name)
    return written.stored.id


def _merge_identifiers(parameters: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    if isinstance(parameters, dict) and parameters.get("resourceType") == "Parameters":
        for p in parameters.get("parameter") or []:
            if isinstance(p, dict) and isinstance(p.get("valueIdentifier"), dict):
                found[str(p.get("name"))] = p["valueIdentifier"]
    source, target = found.get("source-patient-identifier"), found.get("target-patient-identifier")
    if source is None or target is None or _identifier_key(source) is None or _identifier_key(target) is None:
        raise PoisonMessage("Patient/$merge needs source-patient-identifier and target-patient-identifier")
    return source, target


def _identifier_criteria(identifier: dict[str, Any]) -> Criteria:
    system, value = _identifier_key(identifier) or ("", "")
    token = f"{system}|{value}" if system else value
    return parse_criteria("Patient", [("identifier", token.replace(",", "\\,"))])
