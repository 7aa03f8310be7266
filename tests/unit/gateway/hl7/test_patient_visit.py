"""PID/PD1/NK1 -> Patient and RelatedPerson, MRG -> merges, PV1/PV2 -> Encounter and DG1 ->
Condition (services.gateway.hl7.segments.patient and .visit): synthetic messages for an invented
psychiatric stay (no PHI), then messages of the shared corpus (tests/corpus.py; SOURCES.md)."""

from __future__ import annotations

from typing import Any

import pytest

from services.gateway.hl7.context import Context, Identity, conditional_url
from services.gateway.hl7.er7 import Message
from services.gateway.hl7.segments.patient import map_merges, map_patient, patient_identity
from services.gateway.hl7.segments.visit import map_diagnoses, map_encounter
from services.gateway.hl7.translate import new_context
from tests.corpus import HL7V2

ZONE = "America/New_York"
FACILITY_MRN = "urn:carebridge:hl7v2:mrn:NORTHBH"
VISIT = "urn:carebridge:hl7v2:visit:NORTHBH"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"


def _message(
    trigger: str,
    *,
    patient_class: str = "I",
    visit: str = "V-1001",
    discharged: str = "",
    disposition: str = "",
    admit_source: str = "7",
    dg1: tuple[str, ...] = (
        "DG1|1||F32.2^Major depressive disorder, single episode, severe^I10||20240301|A|||||||||1",
    ),
    version: str = "2.5.1",
    message_type: str = "ADT",
) -> str:
    """An invented inpatient psychiatric stay at NORTHBH, one message of it."""
    pv1 = ["PV1", "1", patient_class, "4WEST^412^B^NORTHBH", "U", "", "", "D-77^EVERYDOC^CASEY^^^DR"]
    pv1 += [""] * 2 + ["PSY^Psychiatry^99HSV"] + [""] * 3 + [admit_source] + [""] * 4 + [visit]
    pv1 += [""] * 16 + [disposition] + [""] * 7 + ["202403011430", discharged]
    segments = [
        f"MSH|^~\\&|ADT1|NORTHBH|CAREBRIDGE|CB|20240301150000||{message_type}^{trigger}|MSG-{trigger}|P|{version}",
        f"EVN|{trigger}|20240301150000",
        "PID|1||00099^^^^PI~MRN-42^^^^MR||EVERYPERSON^ALEX^J^^^^L~O\\X27\\EVERYPERSON^SANDY^^^^^M||"
        "19900215|F||2106-3^White^HL70005|12 ELM ST^^SPRINGFIELD^MA^01101^USA^H||"
        "^PRN^PH^^1^413^5550100~^NET^Internet^alex@example.org|^WPN^PH^^1^413^5550199|"
        "eng^English^ISO6392|S|||999-00-1234|||N^Not Hispanic or Latino^HL70189",
        "PD1||||1234567893^EVERYDOC^CASEY^^^^^^^^^^NPI",
        "NK1|1|EVERYPERSON^JORDAN|MTH^Mother^HL70063|12 ELM ST^^SPRINGFIELD^MA^01101|"
        "^PRN^PH^^1^413^5550111||C",
        "PV1|" + "|".join(pv1[1:]),
        "PV2|||F32.2^Severe depressive episode^I10",
        *dg1,
    ]
    return "\r".join(segments)


def _ctx(text: str) -> Context:
    return new_context(Message.parse(text.encode()), timezone=ZONE)


def _resource(ctx: Context, resource_type: str) -> dict[str, Any]:
    found = [p.resource for p in ctx.out.produced if p.resource_type == resource_type]
    assert len(found) == 1, f"{len(found)} {resource_type}"
    return found[0]


def _visit(text: str) -> tuple[Context, dict[str, Any] | None]:
    """Patient, Encounter and Conditions of one message, as translate maps an ADT."""
    ctx = _ctx(text)
    mapped = map_patient(ctx)
    assert mapped is not None
    encounter_ref = map_encounter(ctx, mapped[0])
    map_diagnoses(ctx, mapped[0], encounter_ref)
    return ctx, encounter_ref


def _corpus(path: str) -> Context:
    return new_context(Message.parse((HL7V2 / path).read_bytes()), timezone=ZONE)


# --- Patient --------------------------------------------------------------------------------


def test_the_patient_is_matched_by_its_mrn_scoped_to_the_sending_facility():
    ctx = _ctx(_message("A01"))
    mapped = map_patient(ctx)
    assert mapped is not None
    ref, identity = mapped
    assert identity == Identity(FACILITY_MRN, "MRN-42")
    assert ref == {"reference": conditional_url("Patient", identity)}
    patient = _resource(ctx, "Patient")
    assert patient["resourceType"] == "Patient" and "id" not in patient and patient["active"] is True
    assert [(i["system"], i["value"]) for i in patient["identifier"]] == [
        ("urn:carebridge:hl7v2:pi:NORTHBH", "00099"),
        (FACILITY_MRN, "MRN-42"),
        ("http://hl7.org/fhir/sid/us-ssn", "999-00-1234"),
    ]


def test_demographics_names_birth_date_gender_address_telecom_language_and_marital_status():
    ctx = _ctx(_message("A01"))
    map_patient(ctx)
    patient = _resource(ctx, "Patient")
    assert patient["name"] == [
        {"use": "official", "family": "EVERYPERSON", "given": ["ALEX", "J"]},
        {"use": "maiden", "family": "O'EVERYPERSON", "given": ["SANDY"]},
    ]
    assert patient["birthDate"] == "1990-02-15"
    assert patient["gender"] == "female"
    assert patient["address"] == [
        {
            "use": "home",
            "line": ["12 ELM ST"],
            "city": "SPRINGFIELD",
            "state": "MA",
            "postalCode": "01101",
            "country": "USA",
        }
    ]
    assert [(t["system"], t["value"], t.get("use")) for t in patient["telecom"]] == [
        ("phone", "+1 413 5550100", "home"),
        ("email", "alex@example.org", "home"),
        ("phone", "+1 413 5550199", "work"),
    ]
    assert patient["communication"][0]["preferred"] is True
    assert patient["communication"][0]["language"]["coding"][0]["code"] == "eng"
    assert patient["maritalStatus"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
        "code": "S",
        "display": "Never Married",
    }


def test_race_and_ethnicity_are_us_core_extensions():
    ctx = _ctx(_message("A01"))
    map_patient(ctx)
    race, ethnicity = _resource(ctx, "Patient")["extension"]
    assert race["url"] == "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
    assert race["extension"][0]["valueCoding"]["code"] == "2106-3"
    assert race["extension"][-1] == {"url": "text", "valueString": "White"}
    assert ethnicity["url"] == "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
    assert ethnicity["extension"][0]["valueCoding"]["code"] == "2186-5"


def test_a_time_of_birth_goes_to_the_birth_time_extension_in_the_senders_zone():
    ctx = _ctx(_message("A01").replace("|19900215|", "|199002150830|"))
    map_patient(ctx)
    patient = _resource(ctx, "Patient")
    assert patient["birthDate"] == "1990-02-15"
    assert patient["_birthDate"]["extension"] == [
        {
            "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
            "valueDateTime": "1990-02-15T08:30:00-05:00",
        }
    ]


def test_the_primary_care_provider_is_a_logical_npi_reference():
    ctx = _ctx(_message("A01"))
    map_patient(ctx)
    assert _resource(ctx, "Patient")["generalPractitioner"] == [
        {
            "identifier": {
                "system": "http://hl7.org/fhir/sid/us-npi",
                "value": "1234567893",
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                            "code": "NPI",
                            "display": "National provider identifier",
                        }
                    ]
                },
            },
            "display": "CASEY EVERYDOC",
            "type": "Practitioner",
        }
    ]


def test_a_next_of_kin_is_a_related_person_and_a_patient_contact():
    ctx = _ctx(_message("A01"))
    ref, identity = map_patient(ctx) or ({}, None)
    assert identity is not None
    related = _resource(ctx, "RelatedPerson")
    assert related["patient"] == ref
    assert related["name"] == [{"family": "EVERYPERSON", "given": ["JORDAN"]}]
    mother, role = related["relationship"]
    assert mother["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
        "code": "MTH",
        "display": "mother",
    }
    assert mother["coding"][1]["system"] == "http://terminology.hl7.org/CodeSystem/v2-0063"
    assert role["coding"][0]["code"] == "C"
    assert related["identifier"][0]["system"] == "urn:carebridge:hl7v2:related-person"
    assert related["identifier"][0]["value"] == f"{identity.token}:EVERYPERSON^JORDAN"
    contact = _resource(ctx, "Patient")["contact"][0]
    assert contact["name"] == {"family": "EVERYPERSON", "given": ["JORDAN"]}
    assert contact["telecom"] == [{"system": "phone", "value": "+1 413 5550111", "use": "home"}]


def test_an_unknown_administrative_sex_is_left_out_with_a_warning():
    ctx = _ctx(_message("A01").replace("|19900215|F|", "|19900215|Q|"))
    map_patient(ctx)
    assert "gender" not in _resource(ctx, "Patient")
    assert [i.location for i in ctx.issues] == ["PID-8"]


def test_an_explicit_hl7_null_removes_the_element():
    ctx = _ctx(_message("A01").replace("|S|||999", '|""|||999'))
    map_patient(ctx)
    assert _resource(ctx, "Patient")["maritalStatus"] is None


def test_a_v23_message_with_only_pid2_is_matched_by_it():
    text = _message("A01", version="2.3").replace("|1||00099^^^^PI~MRN-42^^^^MR||", "|1|EXT-7^^^NorthHIE|||")
    ctx = _ctx(text)
    pid = ctx.message.first("PID")
    assert pid is not None
    assert patient_identity(pid, ctx) == Identity("urn:carebridge:hl7v2:authority:NorthHIE", "EXT-7")
    later = _ctx(text.replace("|2.3", "|2.5.1"))
    later_pid = later.message.first("PID")
    assert later_pid is not None and patient_identity(later_pid, later) is None


def test_no_pid_or_no_identifier_is_no_patient():
    assert map_patient(_ctx("MSH|^~\\&|A|B|C|D|20240301||ADT^A01|1|P|2.5.1")) is None
    assert map_patient(_ctx(_message("A01").replace("00099^^^^PI~MRN-42^^^^MR", ""))) is None


# --- merges ---------------------------------------------------------------------------------


def test_an_a40_merges_each_prior_identifier_into_the_patient_before_it():
    text = "\r".join(
        [
            "MSH|^~\\&|ADT1|NORTHBH|CAREBRIDGE|CB|20240301||ADT^A40^ADT_A39|M1|P|2.5.1",
            "PID|1||MRN-42^^^^MR||EVERYPERSON^ALEX",
            "MRG|MRN-17^^^^MR~00031^^^^PI",
            "PID|1||MRN-50^^^^MR||EVERYPERSON^SAM",
            "MRG|MRN-18^^^^MR",
            "PID|1||MRN-60^^^^MR||EVERYPERSON^RILEY",
            "MRG|",
        ]
    )
    ctx = _ctx(text)
    _, target = map_patient(ctx) or ({}, Identity("", ""))
    map_merges(ctx, target)
    assert [(s.value, t.value) for s, t in ctx.out.merges] == [("MRN-17", "MRN-42"), ("MRN-18", "MRN-50")]
    assert {p.identity.value for p in ctx.out.produced if p.resource_type == "Patient"} == {
        "MRN-42",
        "MRN-50",
        "MRN-60",
    }
    assert [i.location for i in ctx.issues] == ["MRG-1"]


# --- Encounter ------------------------------------------------------------------------------


def test_an_a01_admission_is_an_in_progress_inpatient_encounter():
    ctx, ref = _visit(_message("A01"))
    encounter = _resource(ctx, "Encounter")
    assert ref == {"reference": conditional_url("Encounter", Identity(VISIT, "V-1001"))}
    assert encounter["status"] == "in-progress"
    assert encounter["class"] == {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "code": "IMP",
        "display": "inpatient encounter",
    }
    assert encounter["period"] == {"start": "2024-03-01T14:30:00-05:00"}
    assert encounter["identifier"][0]["type"]["coding"][0]["code"] == "VN"
    assert encounter["subject"]["reference"].startswith("Patient?identifier=")
    assert encounter["location"] == [
        {"location": {"display": "4WEST, Room 412, Bed B, NORTHBH"}, "status": "active"}
    ]
    (attending,) = encounter["participant"]
    assert attending["type"][0]["coding"][0]["code"] == "ATND"
    assert (
        attending["individual"]["display"] == "CASEY EVERYDOC" and "reference" not in attending["individual"]
    )
    assert encounter["hospitalization"]["admitSource"]["coding"][0]["display"] == "Emergency room"
    assert encounter["reasonCode"][0]["coding"][0]["code"] == "F32.2"
    assert encounter["type"][0]["coding"][0]["code"] == "U"


def test_the_a03_discharge_finishes_the_same_encounter_the_a01_opened():
    _, admit_ref = _visit(_message("A01"))
    discharge, discharge_ref = _visit(_message("A03", discharged="202403081015", disposition="01"))
    assert admit_ref == discharge_ref is not None
    encounter = _resource(discharge, "Encounter")
    assert encounter["status"] == "finished"
    assert encounter["period"] == {"start": "2024-03-01T14:30:00-05:00", "end": "2024-03-08T10:15:00-05:00"}
    assert encounter["hospitalization"]["dischargeDisposition"]["coding"] == [
        {
            "system": "http://terminology.hl7.org/CodeSystem/v2-0112",
            "code": "01",
            "display": "Discharged to home or self care (routine discharge)",
        }
    ]
    assert encounter["location"][0]["status"] == "completed"
    assert not discharge.issues


def test_an_a03_without_a_discharge_time_is_finished_with_a_warning():
    ctx, _ = _visit(_message("A03"))
    assert _resource(ctx, "Encounter")["status"] == "finished"
    assert [i.location for i in ctx.issues] == ["PV1-45"]


def test_an_a11_cancels_the_admission():
    ctx, _ = _visit(_message("A11"))
    assert _resource(ctx, "Encounter")["status"] == "cancelled"


def test_an_a13_takes_back_the_discharge_end_and_disposition():
    ctx, _ = _visit(_message("A13", discharged="202403081015", disposition="01"))
    encounter = _resource(ctx, "Encounter")
    assert encounter["status"] == "in-progress"
    assert encounter["period"] == {"start": "2024-03-01T14:30:00-05:00"}
    assert "dischargeDisposition" not in encounter["hospitalization"]
    assert encounter["hospitalization"]["admitSource"]["coding"][0]["code"] == "7"


def test_an_a13_with_nothing_left_of_hospitalization_removes_it():
    ctx, _ = _visit(_message("A13", discharged="202403081015", disposition="01", admit_source=""))
    encounter = _resource(ctx, "Encounter")
    assert encounter["hospitalization"] is None
    assert encounter["period"] == {"start": "2024-03-01T14:30:00-05:00"}


@pytest.mark.parametrize(
    ("trigger", "patient_class", "discharged", "status"),
    [
        ("A04", "E", "", "in-progress"),
        ("A05", "P", "", "planned"),
        ("A02", "I", "", "in-progress"),
        ("A08", "I", "", "in-progress"),
        ("A08", "I", "202403081015", "finished"),
        ("A08", "P", "", "planned"),
    ],
)
def test_the_status_follows_the_trigger_or_for_an_update_the_visit(
    trigger, patient_class, discharged, status
):
    ctx, _ = _visit(_message(trigger, patient_class=patient_class, discharged=discharged))
    assert _resource(ctx, "Encounter")["status"] == status


@pytest.mark.parametrize(("discharged", "status"), [("", "in-progress"), ("202403081015", "finished")])
def test_a_message_that_refers_to_a_visit_takes_its_status_from_pv1_45(discharged, status):
    ctx, _ = _visit(_message("R01", message_type="ORU", discharged=discharged))
    assert _resource(ctx, "Encounter")["status"] == status


def test_a_visit_without_a_number_is_keyed_by_the_patient_and_admit_time():
    ctx, ref = _visit(_message("A01", visit=""))
    assert ref is not None
    encounter = _resource(ctx, "Encounter")
    assert encounter["identifier"] == [
        {"system": "urn:carebridge:hl7v2:visit", "value": f"{FACILITY_MRN}|MRN-42:2024-03-01T14:30:00-05:00"}
    ]


def test_a_visit_that_nothing_identifies_is_no_encounter():
    ctx = _ctx(_message("A01", visit="").replace("|202403011430|", "||"))
    ref, _ = map_patient(ctx) or ({}, None)
    assert map_encounter(ctx, ref) is None
    assert [i.location for i in ctx.issues] == ["PV1-19"]
    assert map_encounter(_ctx(_message("A01").split("\rPV1")[0]), ref) is None


def test_an_unknown_patient_class_stays_a_v2_code():
    ctx, _ = _visit(_message("A01", patient_class="Z"))
    assert _resource(ctx, "Encounter")["class"] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0004",
        "code": "Z",
    }


# --- DG1 ------------------------------------------------------------------------------------


def test_the_principal_diagnosis_is_rank_1_on_the_encounter_and_a_condition_of_its_own():
    ctx, encounter_ref = _visit(_message("A01"))
    condition = _resource(ctx, "Condition")
    assert condition["code"]["coding"][0] == {
        "system": ICD10CM,
        "code": "F32.2",
        "display": "Major depressive disorder, single episode, severe",
    }
    assert condition["category"][0]["coding"][0]["code"] == "encounter-diagnosis"
    assert condition["clinicalStatus"]["coding"][0]["code"] == "active"
    assert condition["verificationStatus"]["coding"][0]["code"] == "provisional"
    assert condition["encounter"] == encounter_ref
    assert condition["onsetDateTime"] == "2024-03-01"
    (diagnosis,) = _resource(ctx, "Encounter")["diagnosis"]
    assert diagnosis["rank"] == 1
    assert diagnosis["use"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/diagnosis-role",
        "code": "AD",
        "display": "Admission diagnosis",
    }
    assert diagnosis["condition"]["reference"].startswith("Condition?identifier=")


def test_the_same_diagnosis_in_the_a01_and_the_a03_is_one_condition():
    final = "DG1|1||F32.2^Major depressive disorder, single episode, severe^I10||20240301|F|||||||||1"
    admit, _ = _visit(_message("A01"))
    discharge, _ = _visit(_message("A03", discharged="202403081015", dg1=(final,)))
    assert _resource(admit, "Condition")["identifier"] == _resource(discharge, "Condition")["identifier"]
    assert _resource(discharge, "Condition")["verificationStatus"]["coding"][0]["code"] == "confirmed"
    (diagnosis,) = _resource(discharge, "Encounter")["diagnosis"]
    assert [c["code"] for c in diagnosis["use"]["coding"]] == ["DD", "F"]


def test_secondary_diagnoses_rank_after_the_principal_and_a_diagnosis_identifier_is_used():
    dg1 = (
        "DG1|1||F32.2^Severe depression^I10||20240301|A|||||||||1",
        "DG1|2||F41.1^Generalized anxiety disorder^I10||20240301|A|||||||||2|||||DX-9^NORTHBH",
        "DG1|3||^^I10",
    )
    ctx, _ = _visit(_message("A01", dg1=dg1))
    conditions = [p for p in ctx.out.produced if p.resource_type == "Condition"]
    assert len(conditions) == 2
    assert conditions[1].identity == Identity("urn:carebridge:hl7v2:authority:NORTHBH", "DX-9")
    assert [d.get("rank") for d in _resource(ctx, "Encounter")["diagnosis"]] == [1, 2]
    assert [i.location for i in ctx.issues] == ["DG1[10]-3"]


def test_a_deleted_diagnosis_is_entered_in_error_without_a_clinical_status():
    ctx, _ = _visit(_message("A08", dg1=("DG1|1||F32.2^Severe depression^I10||||||||||||||||||D",)))
    condition = _resource(ctx, "Condition")
    assert condition["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    assert condition["clinicalStatus"] is None


def test_diagnoses_without_a_visit_belong_to_the_patient():
    ctx = _ctx(_message("A28"))
    ref, _ = map_patient(ctx) or ({}, None)
    (condition_ref,) = map_diagnoses(ctx, ref, None)
    condition = _resource(ctx, "Condition")
    assert "encounter" not in condition
    assert condition_ref["reference"].startswith("Condition?identifier=")


# --- corpus ---------------------------------------------------------------------------------


def test_corpus_v23_admission_maps_patient_visit_and_icd9_diagnosis():
    ctx = _corpus("microsoft-fhir-converter/ADT_A01/ADT01-23.hl7")
    ref, identity = map_patient(ctx) or ({}, None)
    assert identity == Identity("urn:carebridge:hl7v2:authority:1", "10006579")
    patient = _resource(ctx, "Patient")
    assert patient["name"] == [{"family": "DUCK", "given": ["DONALD", "D"]}]
    assert patient["birthDate"] == "1924-10-10" and patient["gender"] == "male"
    assert [t["value"] for t in patient["telecom"]] == ["8885551212", "8885551212"]
    assert {i["value"] for i in patient["identifier"]} == {"10006579", "123121234"}
    encounter_ref = map_encounter(ctx, ref)
    encounter = _resource(ctx, "Encounter")
    assert encounter["identifier"][0]["value"] == "40007716"
    assert encounter["class"]["code"] == "IMP" and encounter["status"] == "in-progress"
    assert encounter["period"] == {"start": "2005-01-10T04:55:02+07:00"}
    map_diagnoses(ctx, ref, encounter_ref)
    code = _resource(ctx, "Condition")["code"]
    assert (
        code["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-9-cm"
        and code["coding"][0]["code"] == "71596"
    )
    assert code["text"] == "OSTEOARTHROS NOS-L/LEG"
    assert _resource(ctx, "RelatedPerson")["name"] == [{"family": "DUCK", "given": ["HUEY"]}]


def test_corpus_discharge_is_finished_with_its_end():
    ctx = _corpus("microsoft-fhir-converter/ADT_A03/ADT-A03-02.hl7")
    ref, _ = map_patient(ctx) or ({}, None)
    map_encounter(ctx, ref)
    encounter = _resource(ctx, "Encounter")
    assert encounter["status"] == "finished"
    assert encounter["period"] == {"start": "2015-02-08T11:34:19+01:10", "end": "2015-02-09T11:34:19+01:10"}
    assert encounter["class"]["code"] == "PRENC"


def test_corpus_cancel_discharge_writes_period_without_end():
    ctx = _corpus("microsoft-fhir-converter/ADT_A13/ADT-A13-02.hl7")
    ref, _ = map_patient(ctx) or ({}, None)
    map_encounter(ctx, ref)
    encounter = _resource(ctx, "Encounter")
    assert encounter["status"] == "in-progress"
    assert encounter["period"] == {"start": "2015-02-08T11:34:19+01:10"}
    assert "dischargeDisposition" not in encounter["hospitalization"]


def test_corpus_cancel_admit_is_cancelled():
    ctx = _corpus("microsoft-fhir-converter/ADT_A11/ADT-A11-02.hl7")
    ref, _ = map_patient(ctx) or ({}, None)
    map_encounter(ctx, ref)
    assert _resource(ctx, "Encounter")["status"] == "cancelled"


def test_corpus_patient_with_assigning_authorities_escapes_and_aliases():
    ctx = _corpus("microsoft-fhir-converter/ADT_A01/ADT-A01-02.hl7")
    _, identity = map_patient(ctx) or ({}, None)
    assert identity == Identity("urn:carebridge:hl7v2:authority:test1", "PATID1234")
    patient = _resource(ctx, "Patient")
    assert [(n.get("use"), n["family"]) for n in patient["name"]] == [
        ("usual", "EVERYMAN"),
        ("official", "Josh"),
        ("nickname", "elbert"),
    ]
    assert patient["deceasedDateTime"] == "2008-08-25T11:16:30+01:15" and patient["deceasedBoolean"] is None
    assert patient["multipleBirthInteger"] == 2
    assert {i["value"] for i in patient["identifier"]} >= {"PATID1234", "123456789", "1234567", "PATID567"}


def test_corpus_merges_two_patient_groups():
    ctx = _corpus("microsoft-fhir-converter/ADT_A40/ADT-A40-02.hl7")
    _, target = map_patient(ctx) or ({}, Identity("", ""))
    map_merges(ctx, target)
    assert [(s.value, t.value) for s, t in ctx.out.merges] == [("56789", "12345"), ("569", "145")]


def test_corpus_ig_sample_admission_of_an_emergency_patient():
    ctx = _corpus("hl7-v2-to-fhir-ig/test_conversions/ADT_A01.hl7")
    ref, identity = map_patient(ctx) or ({}, None)
    assert identity == Identity("urn:oid:1.2.3.4.5", "1032702")
    patient = _resource(ctx, "Patient")
    assert patient["name"][0] == {
        "use": "official",
        "family": "Everywoman",
        "given": ["Eve", "L"],
        "prefix": ["Dr"],
        "suffix": ["Jr", "PhD"],
        "period": {"start": "2000-09-09", "end": "2030-12-31"},
    }
    assert patient["birthDate"] == "1970-06-01"
    map_encounter(ctx, ref)
    encounter = _resource(ctx, "Encounter")
    assert encounter["class"]["code"] == "EMER"
    assert encounter["identifier"][0]["system"] == "urn:oid:1.2.3.4.5.6"
    assert [loc["status"] for loc in encounter["location"]] == ["active", "completed"]
