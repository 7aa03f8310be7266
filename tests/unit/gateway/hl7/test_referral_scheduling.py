"""REF^I12-I14 -> referral ServiceRequest with Practitioners and Organizations
(services.gateway.hl7.segments.referral) and SIU^S12-S26 -> Appointment (.scheduling):
synthetic messages for an invented patient and invented clinicians (no PHI), then messages of
the shared corpus (tests/corpus.py; ../shared/corpus/hl7v2/SOURCES.md)."""

from __future__ import annotations

from typing import Any

import pytest

from services.gateway.hl7.context import Context, Produced, conditional_url
from services.gateway.hl7.er7 import Message
from services.gateway.hl7.segments.referral import REFERRAL_CODE, map_referral
from services.gateway.hl7.segments.scheduling import add_minutes, map_appointment
from services.gateway.hl7.translate import new_context
from tests.corpus import HL7V2

ZONE = "America/New_York"
PATIENT = {"reference": "Patient?identifier=urn:test:mrn|MRN-7"}
ENCOUNTER = {"reference": "Encounter?identifier=urn:test:visit|V-55"}
CONDITION = {"reference": "Condition?identifier=urn:test:dx|F33.1"}
PID = "PID|1||MRN-7^^^NORTHBH^MR||EVERYPERSON^ALEX||19900215|F"
NPI = "http://hl7.org/fhir/sid/us-npi"


def _ctx(message_type: str, *segments: str) -> Context:
    msh = f"MSH|^~\\&|EHR|NORTHCLINIC|CAREBRIDGE|CB|20240310091500||{message_type}|M-1|P|2.5.1"
    return new_context(Message.parse("\r".join([msh, *segments]).encode()), timezone=ZONE)


def _produced(ctx: Context, resource_type: str) -> list[Produced]:
    return [p for p in ctx.out.produced if p.resource_type == resource_type]


def _one(ctx: Context, resource_type: str) -> dict[str, Any]:
    (found,) = _produced(ctx, resource_type)
    return found.resource


def _ref(produced: Produced) -> dict[str, str]:
    return {"reference": conditional_url(produced.resource_type, produced.identity)}


# --- referrals -----------------------------------------------------------------------------


def _rf1(
    status: str = "P^Pending^HL70283",
    originating: str = "RF-3001^NORTHCLINIC",
    external: str = "EXT-77^PAYER",
) -> str:
    fields = [""] * 25
    fields[1] = status
    fields[2] = "A^ASAP^HL70280"
    fields[3] = "Psy^Psychiatric^HL70281"
    fields[5] = "O"
    fields[6] = originating
    fields[7] = "20240310"
    fields[8] = "20240610"
    fields[9] = "20240309"
    fields[10] = "S^Second Opinion^HL70336"
    fields[11] = external
    fields[14] = "Worsening depression despite treatment"
    fields[24] = "Please see within 2 weeks"
    return "RF1|" + "|".join(fields[1:])


PRD_REFERRING = (
    "PRD|RP^Referring Provider^HL70286|EVERYDOC^CASEY^^^DR|12 ELM ST^^SPRINGFIELD^MA^01101||"
    "^WPN^PH^^1^413^5550100||1234567893^NPI"
)
PRD_REFERRED_TO = (
    "PRD|RT^Referred to Provider^HL70286|THERAPIST^MORGAN^^^DR||^^^SUNRISE BH&2.16.840.1.113883.19.5&ISO|"
    "^WPN^PH^^1^413^5550200||LIC-55^SL^MA^20261231"
)


def _referral(trigger: str = "I12", *segments: str) -> Context:
    body = segments or (
        _rf1(),
        PRD_REFERRING,
        PRD_REFERRED_TO,
        PID,
        "PV1|1|O",
        "NTE|1||Patient agrees to the referral",
    )
    ctx = _ctx(f"REF^{trigger}^REF_I12", *body)
    map_referral(ctx, PATIENT, ENCOUNTER, [CONDITION])
    return ctx


def test_referral_is_a_service_request_from_rf1() -> None:
    ctx = _referral()
    (produced,) = [p for p in _produced(ctx, "ServiceRequest")]
    request = produced.resource
    assert produced.identity.token == "urn:carebridge:hl7v2:authority:NORTHCLINIC|RF-3001"
    assert [i["value"] for i in request["identifier"]] == ["RF-3001", "EXT-77"]
    assert request["status"] == "active"  # P pending: sent, awaiting acceptance
    assert request["intent"] == "order"
    assert request["priority"] == "asap"
    assert request["category"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0281",
        "code": "Psy",
        "display": "Psychiatric",
    }
    assert request["code"]["coding"] == [REFERRAL_CODE]
    assert request["locationCode"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0284",
        "code": "O",
        "display": "Outpatient",
    }
    assert request["authoredOn"] == "2024-03-09"
    assert request["occurrencePeriod"] == {"start": "2024-03-10", "end": "2024-06-10"}
    assert request["reasonCode"][0]["coding"][0]["code"] == "S"
    assert request["reasonCode"][1] == {"text": "Worsening depression despite treatment"}
    assert request["reasonReference"] == [
        {"identifier": {"system": "urn:test:dx", "value": "F33.1"}, "type": "Condition"}
    ]
    assert request["subject"] == PATIENT
    assert request["encounter"] == {
        "identifier": {"system": "urn:test:visit", "value": "V-55"},
        "type": "Encounter",
    }
    assert request["note"] == [
        {"text": "Please see within 2 weeks"},
        {"text": "Patient agrees to the referral"},
    ]


def test_referring_provider_is_the_requester_and_referred_to_the_performer() -> None:
    ctx = _referral()
    request = _one(ctx, "ServiceRequest")
    practitioners = _produced(ctx, "Practitioner")
    (organization,) = _produced(ctx, "Organization")
    referring, referred_to = practitioners
    assert request["requester"] == _ref(referring)
    assert request["performer"] == [_ref(referred_to), _ref(organization)]

    assert referring.identity.token == f"{NPI}|1234567893"
    assert referring.resource["name"] == [{"family": "EVERYDOC", "given": ["CASEY"], "prefix": ["DR"]}]
    assert referring.resource["telecom"] == [{"system": "phone", "value": "+1 413 5550100", "use": "work"}]
    assert referring.resource["address"][0]["city"] == "SPRINGFIELD"

    license_ = referred_to.resource["identifier"][0]
    assert (license_["value"], license_["type"]["coding"][0]["code"]) == ("LIC-55", "SL")
    assert license_["period"] == {"end": "2026-12-31"}
    assert referred_to.identity.system == "urn:carebridge:hl7v2:authority:MA:SL"

    assert organization.resource["name"] == "SUNRISE BH"
    assert organization.identity.token == "urn:ietf:rfc:3986|urn:oid:2.16.840.1.113883.19.5"


def test_a_referral_to_an_agency_makes_an_organization_only() -> None:
    prd = "PRD|RT|Sunrise Community Mental Health|40 MAIN ST^^SPRINGFIELD^MA|||||"
    ctx = _referral("I12", _rf1(), PRD_REFERRING, prd, PID)
    (organization,) = _produced(ctx, "Organization")
    assert organization.resource["name"] == "Sunrise Community Mental Health"
    assert organization.resource["address"][0]["line"] == ["40 MAIN ST"]
    assert len(_produced(ctx, "Practitioner")) == 1
    assert _one(ctx, "ServiceRequest")["performer"] == [_ref(organization)]


def test_provider_without_identifier_is_identified_by_sender_and_name() -> None:
    ctx = _referral("I12", _rf1(), "PRD|RP|EVERYDOC^CASEY", PID)
    (practitioner,) = _produced(ctx, "Practitioner")
    assert practitioner.identity.token == "urn:carebridge:hl7v2:provider|NORTHCLINIC:EVERYDOC:CASEY"
    assert _one(ctx, "ServiceRequest")["requester"] == _ref(practitioner)


@pytest.mark.parametrize(
    "trigger, status, expected",
    [
        ("I12", "A", "active"),
        ("I13", "P", "active"),
        ("I12", "R", "revoked"),
        ("I13", "E", "revoked"),
        ("I14", "A", "revoked"),  # a cancel revokes whatever RF1-1 says
        ("I12", "", "active"),
    ],
)
def test_referral_status_follows_the_trigger_and_table_0283(trigger: str, status: str, expected: str) -> None:
    ctx = _referral(trigger, _rf1(status=status), PID)
    assert _one(ctx, "ServiceRequest")["status"] == expected


def test_the_external_id_identifies_a_referral_without_an_originating_one() -> None:
    ctx = _referral("I12", _rf1(originating=""), PID)
    (produced,) = _produced(ctx, "ServiceRequest")
    assert produced.identity.token == "urn:carebridge:hl7v2:authority:PAYER|EXT-77"


def test_a_referral_without_ids_is_identified_by_the_message_and_reported() -> None:
    ctx = _referral("I12", _rf1(originating="", external=""), PID)
    (produced,) = _produced(ctx, "ServiceRequest")
    assert produced.identity.token == "urn:carebridge:hl7v2:referral|NORTHCLINIC:M-1"
    assert any(i.location == "RF1-6" for i in ctx.issues)


def test_an_obr_without_results_names_the_requested_service() -> None:
    ctx = _referral("I12", _rf1(), PID, "OBR|1|||90791^Psychiatric diagnostic evaluation^C4")
    assert _one(ctx, "ServiceRequest")["code"]["coding"][0]["code"] == "90791"


def test_an_obr_with_results_supports_the_referral_and_is_not_its_code() -> None:
    ctx = _referral(
        "I12",
        _rf1(),
        PID,
        "OBR|1|||44249-1^PHQ-9 panel^LN",
        "NTE|1||Screen done at intake",
        "OBX|1|NM|44261-6^PHQ-9 total score^LN||19|{score}|||||F",
    )
    request = _one(ctx, "ServiceRequest")
    assert request["code"]["coding"] == [REFERRAL_CODE]
    assert request["note"] == [{"text": "Please see within 2 weeks"}]  # the OBR's NTE is not the referral's


def test_referral_of_the_corpus() -> None:
    ctx = new_context(Message.parse((HL7V2 / "microsoft-fhir-converter/REF_I12/REF-I12-01.hl7").read_bytes()))
    map_referral(ctx, PATIENT, None, [])
    request = _one(ctx, "ServiceRequest")
    practitioners = {p.resource["name"][0]["family"]: p for p in _produced(ctx, "Practitioner")}
    assert request["requester"] == _ref(practitioners["POWELL"])
    assert _ref(practitioners["McWILLIAMS"]) in request["performer"]
    assert request["priority"] == "routine"
    assert request["status"] == "active"
    assert [n["text"] for n in request["note"]] == ["Referral to Specialist", "Lab test"]
    assert {p.resource["name"] for p in _produced(ctx, "Organization")} == {
        "GOOD HEALTH HOSPITAL",
        "RADIANT HEALTH HOSPITAL",
    }


def test_cancelled_referral_of_the_corpus_is_revoked() -> None:
    ctx = new_context(Message.parse((HL7V2 / "microsoft-fhir-converter/REF_I14/REF-I14-01.hl7").read_bytes()))
    map_referral(ctx, PATIENT, None, [])
    assert _one(ctx, "ServiceRequest")["status"] == "revoked"


# --- appointments --------------------------------------------------------------------------


def _sch(
    filler_status: str = "Booked", duration: str = "50", units: str = "min", reason: str = "FOLLOWUP"
) -> str:
    fields = [""] * 28
    fields[1] = "PA-1^NORTHCLINIC"
    fields[2] = "FA-9^SCHED"
    fields[6] = "PATREQ^Patient request"
    fields[7] = reason
    fields[8] = "Normal"
    fields[9] = duration
    fields[10] = units
    fields[25] = filler_status
    fields[26] = "PL-100^CLINIC"
    return "SCH|" + "|".join(fields[1:])


def _appointment(trigger: str, *segments: str) -> Context:
    body = segments or (
        _sch(),
        "TQ1|||||||20240315140000|20240315145000",
        "NTE|1||Bring medication list",
        PID,
        "RGS|1",
        "AIS|1||90834^Psychotherapy 45 min^C4|20240315140000|||50|min",
        "NTE|1||Room prep",
        "AIG|1||RM-2^Group room^L|RES^Resource^L",
        "AIL|1||OP^12^^NORTHCLINIC",
        "AIP|1||D-77^EVERYDOC^CASEY^^^DR^^^NORTHBH|PRF^Performer^L||20240315140000|||50|min||Booked",
    )
    ctx = _ctx(f"SIU^{trigger}^SIU_S12", *body)
    map_appointment(ctx, PATIENT, ENCOUNTER)
    return ctx


def test_new_booking_is_a_booked_appointment() -> None:
    ctx = _appointment("S12")
    (produced,) = _produced(ctx, "Appointment")
    appointment = produced.resource
    assert produced.identity.token == "urn:carebridge:hl7v2:authority:SCHED|FA-9"
    assert [i["type"]["coding"][0]["code"] for i in appointment["identifier"]] == ["FILL", "PLAC"]
    assert appointment["status"] == "booked"
    assert appointment["start"] == "2024-03-15T14:00:00-04:00"
    assert appointment["end"] == "2024-03-15T14:50:00-04:00"
    assert appointment["minutesDuration"] == 50
    assert appointment["serviceType"][0]["coding"][0]["code"] == "90834"
    assert appointment["appointmentType"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0276",
        "code": "FOLLOWUP",
        "display": "A follow up visit from a previous appointment",
    }
    assert appointment["comment"] == "Bring medication list"
    assert appointment["basedOn"] == [
        {
            "identifier": {"system": "urn:carebridge:hl7v2:authority:CLINIC", "value": "PL-100"},
            "type": "ServiceRequest",
        }
    ]
    assert "cancelationReason" not in appointment
    assert ctx.issues == []


def test_participants_are_the_patient_and_logical_or_text_actors() -> None:
    participants = _one(_appointment("S12"), "Appointment")["participant"]
    patient, resource, location, practitioner = participants
    assert patient == {"actor": PATIENT, "required": "required", "status": "accepted"}
    assert resource["actor"] == {"display": "Group room"}
    assert location["actor"]["type"] == "Location" and "NORTHCLINIC" in location["actor"]["display"]
    assert practitioner["actor"] == {
        "identifier": {"system": "urn:carebridge:hl7v2:authority:NORTHBH", "value": "D-77"},
        "display": "CASEY EVERYDOC",
        "type": "Practitioner",
    }
    assert practitioner["type"][0]["coding"][0]["code"] == "PRF"
    assert practitioner["period"] == {
        "start": "2024-03-15T14:00:00-04:00",
        "end": "2024-03-15T14:50:00-04:00",
    }
    assert all("reference" not in p["actor"] for p in participants[1:])


@pytest.mark.parametrize(
    "trigger, filler_status, expected",
    [
        ("S12", "Booked", "booked"),
        ("S13", "Booked", "booked"),
        ("S14", "Pending", "pending"),
        ("S14", "Complete", "fulfilled"),
        ("S12", "", "booked"),
        ("S15", "Booked", "cancelled"),  # the trigger decides for S15, S17, S26
        ("S17", "Booked", "entered-in-error"),
        ("S26", "", "noshow"),
    ],
)
def test_status_follows_the_trigger_refined_by_sch25(trigger: str, filler_status: str, expected: str) -> None:
    ctx = _appointment(
        trigger, _sch(filler_status=filler_status), "TQ1|||||||20240315140000|20240315145000", PID
    )
    assert _one(ctx, "Appointment")["status"] == expected


def test_cancellation_gives_the_event_reason() -> None:
    ctx = _appointment("S15", _sch("Cancelled"), "TQ1|||||||20240315140000|20240315145000", PID)
    appointment = _one(ctx, "Appointment")
    assert appointment["cancelationReason"]["coding"][0]["code"] == "PATREQ"


def test_start_from_the_service_and_end_from_its_duration() -> None:
    ctx = _appointment(
        "S12", _sch(duration=""), PID, "RGS|1", "AIS|1||90834^Psychotherapy^C4|202403151400|||1|h"
    )
    appointment = _one(ctx, "Appointment")
    assert appointment["start"] == "2024-03-15T14:00:00-04:00"
    assert appointment["end"] == "2024-03-15T15:00:00-04:00"
    assert "minutesDuration" not in appointment


def test_end_from_the_appointment_duration_in_seconds() -> None:
    ctx = _appointment("S12", _sch(duration="3600", units="s"), "TQ1|||||||20240315140000", PID)
    appointment = _one(ctx, "Appointment")
    assert (appointment["end"], appointment["minutesDuration"]) == ("2024-03-15T15:00:00-04:00", 60)


def test_start_and_end_from_sch11_of_older_senders() -> None:
    sch = _sch().replace(
        "|FOLLOWUP|Normal|50|min|", "|FOLLOWUP|Normal|50|min|^^50^20240315140000^20240315145000|"
    )
    appointment = _one(_appointment("S12", sch, PID), "Appointment")
    assert (appointment["start"], appointment["end"]) == (
        "2024-03-15T14:00:00-04:00",
        "2024-03-15T14:50:00-04:00",
    )


def test_a_booking_without_a_time_keeps_its_status_and_is_reported() -> None:
    ctx = _appointment("S12", _sch(duration=""), PID)
    appointment = _one(ctx, "Appointment")
    assert appointment["status"] == "booked" and "start" not in appointment
    assert any("app-3" in i.message for i in ctx.issues)


def test_a_reason_outside_table_0276_is_a_reason_code() -> None:
    appointment = _one(_appointment("S12", _sch(reason="INTAKE^Intake assessment^L"), PID), "Appointment")
    assert appointment["reasonCode"][0]["coding"][0]["code"] == "INTAKE"
    assert appointment["appointmentType"]["coding"][0]["code"] == "Normal"  # SCH-8


def test_a_unit_it_cannot_read_leaves_the_duration_out_and_is_reported() -> None:
    ctx = _appointment("S12", _sch(units="fortnights"), "TQ1|||||||20240315140000|20240315145000", PID)
    assert "minutesDuration" not in _one(ctx, "Appointment")
    assert any("fortnights" in i.message for i in ctx.issues)


def test_add_minutes_keeps_the_offset_and_z() -> None:
    assert add_minutes("2024-03-15T14:00:00-04:00", 90) == "2024-03-15T15:30:00-04:00"
    assert add_minutes("2024-03-15T23:30:00Z", 45) == "2024-03-16T00:15:00Z"
    assert add_minutes("2024-03-15", 45) is None


@pytest.mark.parametrize(
    "path, status",
    [
        ("SIU_S12/SIU-S12-01.hl7", "booked"),
        ("SIU_S13/SIU-S13-01.hl7", "booked"),
        ("SIU_S14/SIU-S14-01.hl7", "booked"),
        ("SIU_S15/SIU-S15-01.hl7", "cancelled"),
        ("SIU_S17/SIU-S17-01.hl7", "entered-in-error"),
        ("SIU_S26/SIU-S26-01.hl7", "noshow"),
    ],
)
def test_corpus_appointments(path: str, status: str) -> None:
    ctx = new_context(Message.parse((HL7V2 / "microsoft-fhir-converter" / path).read_bytes()), timezone="UTC")
    map_appointment(ctx, PATIENT, None)
    (produced,) = _produced(ctx, "Appointment")
    appointment = produced.resource
    assert appointment["status"] == status
    assert appointment["start"] < appointment["end"]
    assert appointment["participant"][0]["actor"] == PATIENT
    assert produced.identity.value == "36996"  # SCH-2, the filler's id, across the whole flow


def test_corpus_appointment_with_three_resource_groups() -> None:
    ctx = new_context(Message.parse((HL7V2 / "microsoft-fhir-converter/SIU_S12/SIU-S12-02.hl7").read_bytes()))
    map_appointment(ctx, PATIENT, None)
    appointment = _one(ctx, "Appointment")
    assert appointment["start"] == "2021-08-18T11:30:00+02:15"
    assert len(appointment["serviceType"]) == 2
    practitioners = [p for p in appointment["participant"] if p["actor"].get("type") == "Practitioner"]
    assert len(practitioners) == 3
