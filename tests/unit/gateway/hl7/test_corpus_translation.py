"""The translator against the shared corpus of public HL7 v2 messages (../shared/corpus/hl7v2).

1. Every message either translates into a transaction Bundle of conditional updates, with a
   conversion report that lists each of its segments, or is refused with a TranslationError,
   and only for the reasons CareBridge refuses: a message type it does not take, or no patient.
2. Where another engine's output exists (Microsoft FHIR-Converter, CDC ReportStream), the facts
   that matter agree with it (see expected_facts for how they are read and normalised). What is
   compared, and every exception, is written down with its reason:
   - _MADE_FROM: the resource types CareBridge makes from each message type;
   - _scoped / _patient_facts_from_pid: expected resources and Patient values the other engine
     made from segments CareBridge does not map to that type (PDA, ACC, GT1, IN1/IN2, DB1);
   - ENGINE_RULES: where an engine departs from the V2-to-FHIR IG in every message;
   - KNOWN_DIFFERENCES: one message, one fact and the values that differ, on purpose or because
     the other engine is wrong.
   An exception that no longer applies fails the test, so none can go stale.

Tests are parametrised by the message's path in the corpus, so a failure names the message.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest

from services.gateway.hl7.context import LOCAL_SYSTEM_PREFIX, TranslationError
from services.gateway.hl7.er7 import Message
from services.gateway.hl7.translate import (
    ADT_REGISTRATION,
    ERR_REQUIRED_SEGMENT_MISSING,
    ERR_UNSUPPORTED_EVENT_CODE,
    ERR_UNSUPPORTED_MESSAGE_TYPE,
    SUPPORTED,
    Translation,
    translate,
)
from shared.mllp import split_messages
from tests.corpus import HL7V2, CorpusMessage, hl7_messages
from tests.unit.gateway.hl7.expected_facts import (
    FACT_NAMES,
    Difference,
    codes,
    compare,
    extract,
    identifier_values,
)

#: The zone messages without an offset are read in; expected_facts reads offset-less times of
#: the other engines as UTC too.
TIMEZONE = "UTC"

MESSAGES = hl7_messages()

#: The message types of the corpus CareBridge does not take (translate.SUPPORTED): documents
#: (MDM), immunisations (VXU), problem messages (PPR), and the ADT events that are neither a
#: visit, a registration nor a patient merge (A29 delete person, A41 merge account, A47 change
#: identifier list, A60 update allergy).
NOT_TAKEN = frozenset(
    {
        "ADT^A29",
        "ADT^A41",
        "ADT^A47",
        "ADT^A60",
        "MDM^T01",
        "MDM^T02",
        "PPR^PC1",
        "PPR^PC2",
        "PPR^PC3",
        "VXU^V04",
    }
)


def _message_type(raw: bytes) -> tuple[str, str]:
    msh9 = Message.parse(raw).msh.field(9)
    return msh9.get(1), msh9.get(2)


def _is_supported(message_type: str, trigger: str) -> bool:
    return trigger in SUPPORTED.get(message_type, frozenset())


def _has_patient_identifier(raw: bytes) -> bool:
    """A PID segment with a PID-3 identifier (CX-1) in some repetition."""
    for segment in Message.parse(raw):
        if segment.name == "PID" and any(rep.get(1) for rep in segment.repetitions(3)):
            return True
    return False


@cache
def _raw_messages(path: str) -> tuple[bytes, ...]:
    return tuple(split_messages((HL7V2 / path).read_bytes()))


@cache
def _translation(path: str, index: int) -> Translation | TranslationError:
    try:
        return translate(Message.parse(_raw_messages(path)[index]), timezone=TIMEZONE)
    except TranslationError as exc:
        return exc


def _segment_names(raw: bytes) -> list[str]:
    """Segment names read straight from the bytes, independently of the ER7 reader."""
    return [s[:3].decode("ascii", "replace") for s in raw.split(b"\r") if s.strip()]


def _references(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return found + [r for v in value.values() for r in _references(v)]
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    return []


# --- 1. every message: a Bundle of conditional updates, or a refusal for a stated reason ------


def test_the_types_refused_are_the_types_not_taken():
    corpus_types = {m.msg_type for m in MESSAGES}
    refused = {t for t in corpus_types if not _is_supported(*t.split("^")[:2])}
    assert refused == NOT_TAKEN


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: m.id)
def test_translates_or_is_refused_for_a_stated_reason(msg: CorpusMessage):
    raws = _raw_messages(msg.id)
    assert raws, "no message in the file"
    for index, raw in enumerate(raws):
        result = _translation(msg.id, index)  # any exception but TranslationError fails here
        message_type, trigger = _message_type(raw)
        if not _is_supported(message_type, trigger):
            assert isinstance(result, TranslationError), f"{message_type}^{trigger} is not taken"
            assert result.condition in (ERR_UNSUPPORTED_MESSAGE_TYPE, ERR_UNSUPPORTED_EVENT_CODE)
            continue
        if not _has_patient_identifier(raw):
            assert isinstance(result, TranslationError), "a message without a patient identifier"
            assert result.condition == ERR_REQUIRED_SEGMENT_MISSING
            continue
        assert isinstance(result, Translation), f"refused: {result}"
        _assert_bundle_of_conditional_updates(result.bundle)
        _assert_report_lists_every_segment(result.report, raw)
        assert result.patient_key and "|" in result.patient_key


def _assert_bundle_of_conditional_updates(bundle: dict[str, Any]) -> None:
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "transaction"
    assert bundle["entry"], "an empty Bundle"
    assert any(e["resource"].get("resourceType") == "Patient" for e in bundle["entry"])
    for entry in bundle["entry"]:
        resource, request = entry["resource"], entry["request"]
        rtype = resource.get("resourceType")
        assert rtype, f"an entry without a resourceType: {entry}"
        if rtype == "Parameters":  # an A40 merge
            assert request == {"method": "POST", "url": "Patient/$merge"}
            continue
        if request["method"] == "POST":
            # Only the visit a result, referral or appointment names: created if unknown, never
            # changed (only ADT says what a visit is now).
            assert rtype == "Encounter" and request["url"] == "Encounter", request
            criteria = f"Encounter?{request['ifNoneExist']}"
        else:
            assert request["method"] == "PUT"
            criteria = request["url"]
        assert criteria.startswith(f"{rtype}?identifier="), criteria
        assert "|" in criteria and not criteria.endswith("|"), criteria
        for ref in _references(resource):
            kind, _, rest = ref.partition("?identifier=") if "?" in ref else ref.partition("/")
            assert kind.isalpha() and kind[0].isupper() and rest, f"{rtype}: odd reference {ref!r}"


def _assert_report_lists_every_segment(report: dict[str, Any], raw: bytes) -> None:
    listed = [(s["segment"], s["position"]) for s in report["segments"]]
    names = _segment_names(raw)
    assert listed == list(zip(names, range(1, len(names) + 1), strict=True))
    for s in report["segments"]:
        assert set(s["mapped"]).isdisjoint(s["unmapped"])


# --- 2. facts against the other engines' output ------------------------------------------------


def _expected_outputs() -> dict[str, str]:
    with open(HL7V2 / "manifest.csv", newline="") as fh:
        return {row["file"]: row["expected_output"] for row in csv.DictReader(fh) if row["expected_output"]}


EXPECTED_OUTPUT = _expected_outputs()

#: Messages with an expected output and a type CareBridge takes.
COMPARED = [m for m in MESSAGES if m.id in EXPECTED_OUTPUT and _is_supported(*m.msg_type.split("^")[:2])]


def _ours(identifier: dict[str, Any]) -> bool:
    """Identifiers from the message, not the keys CareBridge builds where HL7 gives none
    (`Context.local_identity`: system `urn:carebridge:hl7v2:<kind>`, value made of parts)."""
    system = identifier.get("system") or ""
    return not (system.startswith(LOCAL_SYSTEM_PREFIX) and ":" not in system[len(LOCAL_SYSTEM_PREFIX) :])


#: What CareBridge makes from each message type (translate._adt, _ref, _orders, _siu): the facts
#: of an expected resource type outside this are not compared, as CareBridge does not make that
#: type from that message on purpose:
#: - ADT and SIU make no ServiceRequest: CareBridge's referrals come as REF (RF1 + PRD), its orders
#:   as ORM/OML/ORU; FHIR-Converter also makes ServiceRequests of the RF1 in an ADT and of the
#:   SCH/AIS service of a SIU.
#: - ORU/ORM/OML make no Condition: translate._orders maps no DG1 (an order's reason for study).
#: - SIU makes the Patient, its Encounter and the Appointment: translate._siu maps no OBX or DG1.
#: - A28/A31 add or update a person (translate.ADT_REGISTRATION) and make no Encounter, though the
#:   ADT_A05 structure carries a PV1, which FHIR-Converter converts.
#: The test checks that CareBridge makes nothing outside this table, so it cannot go stale.
_MADE_FROM: dict[str, frozenset[str]] = {
    "ADT": frozenset({"Patient", "Encounter", "Condition", "Observation", "Merge"}),
    "REF": frozenset({"Patient", "Encounter", "Condition", "ServiceRequest", "Observation"}),
    "ORU": frozenset({"Patient", "Encounter", "ServiceRequest", "Observation"}),
    "ORM": frozenset({"Patient", "Encounter", "ServiceRequest", "Observation"}),
    "OML": frozenset({"Patient", "Encounter", "ServiceRequest", "Observation"}),
    "SIU": frozenset({"Patient", "Encounter", "Appointment"}),
}


def _compared_types(message_type: str, trigger: str) -> frozenset[str]:
    made = _MADE_FROM[message_type]
    if message_type == "ADT" and trigger in ADT_REGISTRATION:
        made = made - {"Encounter"}
    return made


def _codes_in(message: Message, segment_name: str, field: int) -> set[str]:
    """The codes (CWE-1 and CWE-4) of a coded field in every segment of a kind."""
    found: set[str] = set()
    for segment in message.all(segment_name):
        for rep in segment.repetitions(field):
            found.update(c for c in (rep.get(1), rep.get(4)) if c)
    return found


def _scoped(bundle: dict[str, Any], message: Message) -> dict[str, Any]:
    """The expected Bundle without the resources the other engine made from segments CareBridge
    does not map to that type:
    - FHIR-Converter also makes Conditions from PDA-1 (cause of death) and Observations from PDA
      (death certificate, autopsy, coroner) and ACC (accident); CareBridge's Conditions come from
      DG1 and its Observations from OBX. A Condition or Observation is kept when one of its codes
      is a DG1-3 or OBX-3 code of the message.
    - In a REF message the OBR/OBX are the results that come with the referral (v2.5.1 11.3.1),
      which CareBridge keeps as Observations; FHIR-Converter also makes a ServiceRequest of each
      OBR. There a ServiceRequest is kept when it carries a referral identifier (RF1-6, RF1-11)."""
    sources = {"Condition": _codes_in(message, "DG1", 3), "Observation": _codes_in(message, "OBX", 3)}
    referral_ids = {rf1.get(n) for rf1 in message.all("RF1") for n in (6, 11)} - {""}
    is_referral = message.msh.get(9, 1) == "REF"

    def keep(resource: dict[str, Any]) -> bool:
        rtype = resource.get("resourceType")
        if rtype in sources:
            return bool(codes(resource.get("code")) & sources[rtype])
        if rtype == "ServiceRequest" and is_referral:
            return bool(set(identifier_values(resource)) & referral_ids)
        return True

    entries = [e for e in bundle.get("entry") or [] if keep(e.get("resource") or {})]
    return {**bundle, "entry": entries}


_DELIMITERS = re.compile(r"[|^~&\\]")


def _tokens(message: Message, names: set[str]) -> set[str]:
    """Every leaf value (component, subcomponent) of the segments named."""
    out: set[str] = set()
    for segment in message:
        if segment.name in names:
            for n in range(1, segment.field_count + 1):
                out.update(t.strip() for t in _DELIMITERS.split(segment.raw(n)) if t.strip())
    return out


def _patient_facts_from_pid(facts: dict[str, frozenset[Any]], message: Message) -> dict[str, frozenset[Any]]:
    """The expected Patient facts that come from PID/PD1. FHIR-Converter folds the guarantor
    (GT1), the insured (IN1/IN2) and disability (DB1) records into the Patient when they are
    the patient's own (their identifiers, names, addresses and phones); CareBridge's Patient is
    PID and PD1 (V2-to-FHIR IG, PID[Patient], PD1[Patient]). A value is kept when it occurs in
    the message's PID or PD1 segments."""
    tokens = _tokens(message, {"PID", "PD1"})
    # A phone number may be spread over components (XTN-5..8): look for it in each field's digits.
    digits = [
        "".join(ch for ch in segment.raw(n) if ch.isdigit())
        for segment in message
        if segment.name in ("PID", "PD1")
        for n in range(1, segment.field_count + 1)
    ]
    keep = {
        "Patient.identifier": lambda v: v in tokens,
        "Patient.identifier.type": lambda v: v[0] in tokens,
        "Patient.name": lambda v: v[0] in tokens or (not v[0] and v[1] in tokens),
        "Patient.address": lambda v: any(line in tokens for line in v[0]) or v[1] in tokens,
        "Patient.telecom": lambda v: any(v in d for d in digits) or v in {t.lower() for t in tokens},
    }
    return {
        name: frozenset(filter(keep[name], values)) if name in keep else values
        for name, values in facts.items()
    }


def _pid19_typed_ss(values: frozenset[Any], message: Message) -> frozenset[Any]:
    ssn = {pid.get(19) for pid in message.all("PID")} - {""}
    return frozenset((v, "SS") if v in ssn and code == "SB" else (v, code) for v, code in values)


@dataclass(frozen=True)
class EngineRule:
    """A way one engine departs from the V2-to-FHIR IG in every message it converts, applied to
    its expected facts before they are compared: `adjust` rewrites the expected values, or,
    without it, the fact is not compared for that engine (and those message types)."""

    engine: str  # the corpus folder: microsoft-fhir-converter, cdc-reportstream
    message_types: frozenset[str]  # MSH-9.1 values it applies to; empty for all
    fact: str
    reason: str
    adjust: Callable[[frozenset[Any], Message], frozenset[Any]] | None = None

    def applies(self, engine: str, message_type: str) -> bool:
        return engine == self.engine and (not self.message_types or message_type in self.message_types)


ENGINE_RULES: tuple[EngineRule, ...] = (
    EngineRule(
        "microsoft-fhir-converter",
        frozenset(),
        "Patient.identifier.type",
        "FHIR-Converter types the PID-19 SSN as SB (social beneficiary); the IG (PID[Patient], PID-19) "
        "types it SS in the US, which these messages are from (MSH-17 USA), as CareBridge does.",
        _pid19_typed_ss,
    ),
    EngineRule(
        "microsoft-fhir-converter",
        frozenset({"ORU"}),
        "ServiceRequest.status",
        "FHIR-Converter's ORU_R01 template writes every OBR's ServiceRequest as status active; "
        "CareBridge follows the IG (ORC[ServiceRequest]): ORC-5, else ORC-1, else unknown.",
    ),
    EngineRule(
        "microsoft-fhir-converter",
        frozenset({"ORU"}),
        "ServiceRequest.intent",
        "FHIR-Converter's ORU_R01 template writes intent filler-order; the IG (ORC/OBR[ServiceRequest]) "
        "says order (reflex-order for OBR-11 G), as CareBridge does.",
    ),
    EngineRule(
        "cdc-reportstream",
        frozenset(),
        "ServiceRequest.intent",
        "ReportStream writes no ServiceRequest.intent (required in R4); CareBridge writes order.",
    ),
)


@dataclass(frozen=True)
class Known:
    """A difference in one message and one fact, explained: the values only the expected output
    has and the values only ours has (None: any)."""

    reason: str
    expected: frozenset[Any] | None = frozenset()
    ours: frozenset[Any] | None = frozenset()


def known(reason: str, *, expected: Iterable[Any] | None = (), ours: Iterable[Any] | None = ()) -> Known:
    return Known(
        reason,
        None if expected is None else frozenset(expected),
        None if ours is None else frozenset(ours),
    )


_MS = "microsoft-fhir-converter/"
_RS = "cdc-reportstream/"
_MS_XTN_COMPONENTS = (
    "FHIR-Converter writes no ContactPoint.value for a number sent in XTN-5..8 (country, area, "
    "local, extension) without XTN-1/XTN-12; the IG keeps those parts, and CareBridge makes the "
    "number of them."
)

_REFERRAL_CODE = (
    "The RF1 names no requested service: CareBridge codes the referral SNOMED CT 3457005 Patient "
    "referral (segments/referral.py), FHIR-Converter leaves ServiceRequest.code out."
)
_REFERRAL_PENDING = (
    "RF1-1 P (pending: sent, not yet accepted) has no published map; CareBridge reads it as active "
    "(segments/referral.REFERRAL_STATUS), FHIR-Converter as on-hold (suspended), which it is not."
)

#: (message id, fact) -> why CareBridge's fact differs from the expected output's, on purpose or
#: because the other engine is wrong, with the values that differ. Keep it short: a difference that
#: is CareBridge's bug is fixed, not listed here.
KNOWN_DIFFERENCES: dict[tuple[str, str], Known] = {
    (f"{_MS}OML_O21/MDHHS-OML-O21-1.hl7", "Patient.telecom"): known(
        _MS_XTN_COMPONENTS, ours={"5863365555", "5863895631"}
    ),
    (f"{_MS}REF_I12/REF-I12-01.hl7", "Patient.telecom"): known(_MS_XTN_COMPONENTS, ours={"2706009800"}),
    (f"{_MS}REF_I12/REF-I12-02.hl7", "Patient.telecom"): known(_MS_XTN_COMPONENTS, ours={"2706009800"}),
    (f"{_MS}REF_I14/REF-I14-01.hl7", "Patient.telecom"): known(_MS_XTN_COMPONENTS, ours={"2706009800"}),
    (f"{_MS}ADT_A04/ADT04-23.hl7", "Patient.telecom"): known(
        "FHIR-Converter's v2.3 template writes XTN-2/XTN-3 (HOME, JP:1234567) as use and system and "
        "leaves the number XTN-1 out.",
        ours={"5555550123", "5555550124"},
    ),
    (f"{_MS}ADT_A01/ADT01-28.hl7", "Encounter.class"): known(
        "The PV1 has no visit number (PV1-19), alternate visit id (PV1-50) or admit time (PV1-44): "
        "nothing identifies the visit across messages, so CareBridge makes no Encounter (and warns).",
        expected={"IMP"},
    ),
    (f"{_MS}ADT_A01/ADT01-28.hl7", "Encounter.status"): known(
        "No Encounter without a visit identifier (see Encounter.class).", expected={"in-progress"}
    ),
    (f"{_MS}ADT_A04/ADT-A04-01.hl7", "Encounter.period.end"): known(
        "FHIR-Converter ends the visit at PV2-9, the expected discharge time; the IG (PV2[Encounter]) "
        "keeps that as the plannedEndDate extension, as CareBridge does: the visit has not ended.",
        expected={"2015-02-09T10:24:19Z"},
    ),
    (f"{_MS}ORM_O01/ORM-O01-01.hl7", "ServiceRequest.requester"): known(
        "FHIR-Converter takes the requester from OBR-16; the IG takes ORC-12 (OBR-16 only when ORC-12 "
        "is empty), as CareBridge does: ORDPROVIDER^JONES, not RAD^ROBIN.",
        expected={frozenset({"rad", "robin"})},
        ours={frozenset({"ordprovider", "jones"})},
    ),
    (f"{_MS}ORU_R01/ORU-R01-01.hl7", "Observation.code"): known(
        "FHIR-Converter makes no Observation of the patient-level OBX (RP, 8867-4), the order-document "
        "OBX (ED, no OBX-3) or the specimen OBX 1063-7 (RP); CareBridge makes one of every OBX.",
        ours={"1063-7", "unknown"},
    ),
    (f"{_MS}ORU_R01/ORU-R01-01.hl7", "Observation.status"): known(
        "The Observations FHIR-Converter does not make (see Observation.code).",
        ours={("1063-7", "unknown"), ("8867-4", "final"), ("unknown", "unknown")},
    ),
    (f"{_MS}ORU_R01/ORU-R01-01.hl7", "ServiceRequest.identifier"): known(
        "FHIR-Converter makes the ORC-8 parent order (PAI-8.1^FAI-8.2) a ServiceRequest of its own; "
        "the IG keeps ORC-8 as a basedOn extension of the order, not as an order.",
        expected={"PAI-8.1", "FAI-8.2"},
    ),
    (f"{_MS}REF_I12/REF-I12-02.hl7", "Observation.code"): known(
        "FHIR-Converter makes no Observation of the ED (image) OBX; CareBridge makes one of every OBX.",
        ours={"3DHISTECH_PREVIEWCAM", "S_IMAGE"},
    ),
    (f"{_MS}REF_I12/REF-I12-02.hl7", "Observation.status"): known(
        "The ED Observation FHIR-Converter does not make (see Observation.code).",
        ours={("3DHISTECH_PREVIEWCAM", "final")},
    ),
    **{
        (f"{_MS}{path}", "ServiceRequest.code"): known(_REFERRAL_CODE, ours={"3457005"})
        for path in ("REF_I12/REF-I12-01.hl7", "REF_I12/REF-I12-02.hl7", "REF_I14/REF-I14-01.hl7")
    },
    **{
        (f"{_MS}{path}", "ServiceRequest.status"): known(
            _REFERRAL_PENDING, expected={"on-hold"}, ours={"active"}
        )
        for path in ("REF_I12/REF-I12-01.hl7", "REF_I12/REF-I12-02.hl7")
    },
    (f"{_MS}REF_I14/REF-I14-01.hl7", "ServiceRequest.status"): known(
        "An I14 cancels the referral: CareBridge revokes it (request-status revoked: ended before "
        "completion); FHIR-Converter writes entered-in-error, which says it never should have existed.",
        expected={"entered-in-error"},
        ours={"revoked"},
    ),
    (f"{_RS}full_messages/sample_oml_20240319-001.hl7", "ServiceRequest.status"): known(
        "ReportStream writes unknown for ORC-1 NW with no ORC-5; the IG's OrderControlCode map (and "
        "CareBridge) says active.",
        expected={"unknown"},
        ours={"active"},
    ),
    (f"{_RS}full_messages/sample_orm_20230809-001.hl7", "ServiceRequest.status"): known(
        "ReportStream writes one ServiceRequest, status unknown, and drops the second OBR; CareBridge "
        "writes ORC-1 NW as active (IG OrderControlCode) and the second OBR, which has no ORC of its "
        "own, as unknown.",
        expected=set(),
        ours={"active"},
    ),
    (f"{_RS}full_messages/sample_orm_20230809-001.hl7", "ServiceRequest.code"): known(
        "ReportStream drops the second OBR (57717-1) of the order (see ServiceRequest.status).",
        ours={"57717-1"},
    ),
    (f"{_RS}mappinginventory/orur01/oru_r01-full.hl7", "Observation.value"): known(
        "ReportStream drops the SN value ^28 (no comparator); the IG (SN[Quantity]) and CareBridge "
        "read it as 28 a (years).",
        ours={("21612-7", ("Quantity", "28", "", "Year"))},
    ),
}


def _engine(msg: CorpusMessage) -> str:
    return msg.id.split("/", 1)[0]


@cache
def _comparison(path: str) -> tuple[list[Difference], frozenset[EngineRule], frozenset[str]]:
    """The differences between CareBridge's facts and the expected output's for one message,
    after the engine rules; the rules that changed something; the compared types CareBridge made."""
    msg = next(m for m in COMPARED if m.id == path)
    raw = _raw_messages(path)[0]
    result = _translation(path, 0)
    assert isinstance(result, Translation), f"refused: {result}"
    expected_bundle = json.loads((HL7V2 / EXPECTED_OUTPUT[path]).read_text(encoding="utf-8-sig"))
    message = Message.parse(raw)
    expected, expected_types = extract(_scoped(expected_bundle, message))
    expected = _patient_facts_from_pid(expected, message)
    ours, ours_types = extract(result.bundle, keep=_ours)
    message_type, trigger = _message_type(raw)
    compared = expected_types & _compared_types(message_type, trigger)
    made = frozenset(ours_types & FACT_NAMES.keys())

    used: set[EngineRule] = set()
    for rule in ENGINE_RULES:
        if not rule.applies(_engine(msg), message_type) or rule.fact not in expected.keys() | ours.keys():
            continue
        before = expected.get(rule.fact, frozenset())
        if rule.adjust is None:
            if before != ours.get(rule.fact, frozenset()):
                used.add(rule)
            expected.pop(rule.fact, None)
            ours.pop(rule.fact, None)
        else:
            expected[rule.fact] = rule.adjust(before, message)
            if expected[rule.fact] != before:
                used.add(rule)
    return compare(expected, compared, ours), frozenset(used), made


@pytest.mark.parametrize("msg", COMPARED, ids=lambda m: m.id)
def test_facts_agree_with_the_expected_output(msg: CorpusMessage):
    raws = _raw_messages(msg.id)
    assert len(raws) == 1, "an expected output is for one message"
    if not _has_patient_identifier(raws[0]):
        # The other engine converts a message without a patient identifier; CareBridge refuses
        # it (AE, table 0357 code 100), as every record it keeps is keyed by a patient.
        result = _translation(msg.id, 0)
        assert isinstance(result, TranslationError)
        assert result.condition == ERR_REQUIRED_SEGMENT_MISSING
        return
    differences, _, made = _comparison(msg.id)
    message_type, trigger = _message_type(raws[0])
    assert made <= _compared_types(message_type, trigger), "_MADE_FROM is out of date with translate.py"
    unexplained: list[str] = []
    for difference in differences:
        explained = KNOWN_DIFFERENCES.get((msg.id, difference.fact))
        if explained is None:
            unexplained.append(str(difference))
            continue
        only_expected = difference.expected - difference.ours
        only_ours = difference.ours - difference.expected
        if explained.expected is not None and only_expected != explained.expected:
            unexplained.append(
                f"{difference} (KNOWN_DIFFERENCES lists {sorted(map(repr, explained.expected))})"
            )
        elif explained.ours is not None and only_ours != explained.ours:
            unexplained.append(f"{difference} (KNOWN_DIFFERENCES lists {sorted(map(repr, explained.ours))})")
    assert not unexplained, "\n".join(unexplained)
    stale = {fact for (mid, fact) in KNOWN_DIFFERENCES if mid == msg.id} - {d.fact for d in differences}
    assert not stale, f"listed in KNOWN_DIFFERENCES but no longer different: {sorted(stale)}"


def test_known_differences_name_compared_messages():
    compared = {m.id for m in COMPARED}
    assert {mid for mid, _ in KNOWN_DIFFERENCES} <= compared
    assert all(k.reason for k in KNOWN_DIFFERENCES.values())


def test_every_engine_rule_is_needed():
    """An engine rule that changes no comparison is stale: remove it."""
    used: set[EngineRule] = set()
    for msg in COMPARED:
        if _has_patient_identifier(_raw_messages(msg.id)[0]):
            used |= _comparison(msg.id)[1]
    assert set(ENGINE_RULES) <= used, [r.reason for r in ENGINE_RULES if r not in used]
