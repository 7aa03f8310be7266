"""ORC/OBR -> ServiceRequest and DiagnosticReport, OBX -> Observation
(services.gateway.hl7.segments.orders): synthetic results for an invented patient (no PHI),
then messages of the shared corpus (tests/corpus.py; ../shared/corpus/hl7v2/SOURCES.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.gateway.hl7.context import Context, Produced
from services.gateway.hl7.er7 import Message
from services.gateway.hl7.segments.orders import map_observations, map_orders, reference_ranges
from services.gateway.hl7.translate import new_context
from tests.corpus import HL7V2

ZONE = "America/New_York"
PATIENT = {"reference": "Patient?identifier=urn:test:mrn|MRN-7"}
ENCOUNTER = {"reference": "Encounter?identifier=urn:test:visit|V-55"}
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
DAR = "http://terminology.hl7.org/CodeSystem/data-absent-reason"

MSH = "MSH|^~\\&|LIS|NORTHLAB|CAREBRIDGE|CB|20240305101500||{type}|{control}|P|2.5.1"
PID = "PID|1||MRN-7^^^NORTHBH^MR||EVERYPERSON^ALEX||19900215|F"
ORC = "ORC|RE|PL-100^CLINIC|FL-200^NORTHLAB||CM||||20240305090000|||D-77^EVERYDOC^CASEY^^^DR^^^NORTHBH"
OBR = (
    "OBR|1|PL-100^CLINIC|FL-200^NORTHLAB|24323-8^Comprehensive metabolic panel^LN||20240304|"
    "20240305083000|||||||||D-77^EVERYDOC^CASEY^^^DR^^^NORTHBH||||||202403051000||CH|F||||||"
    "R45.851^Suicidal ideations^I10|&READER&RILEY"
)


def _ctx(*segments: str, message_type: str = "ORU^R01", control: str = "C-1") -> Context:
    text = "\r".join([MSH.format(type=message_type, control=control), PID, *segments])
    return new_context(Message.parse(text.encode()), timezone=ZONE)


def _mapped(*segments: str, message_type: str = "ORU^R01", control: str = "C-1") -> Context:
    ctx = _ctx(*segments, message_type=message_type, control=control)
    map_orders(ctx, PATIENT, ENCOUNTER)
    return ctx


def _of(ctx: Context, resource_type: str) -> list[dict[str, Any]]:
    return [p.resource for p in ctx.out.produced if p.resource_type == resource_type]


def _one(ctx: Context, resource_type: str) -> dict[str, Any]:
    found = _of(ctx, resource_type)
    assert len(found) == 1, [p.resource_type for p in ctx.out.produced]
    return found[0]


def _result(obx: str, *more: str) -> dict[str, Any]:
    """The Observation one OBX (after the standard ORC/OBR) becomes."""
    return _one(_mapped(ORC, OBR, obx, *more), "Observation")


def _produced(ctx: Context, resource_type: str) -> list[Produced]:
    return [p for p in ctx.out.produced if p.resource_type == resource_type]


# --- values by OBX-2 ------------------------------------------------------------------------


def test_nm_with_a_ucum_unit_is_a_ucum_quantity() -> None:
    obs = _result("OBX|1|NM|2345-7^Glucose^LN||105|mg/dL^mg/dL^UCUM|70-99|H|||F")
    assert obs["valueQuantity"] == {"value": 105, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}
    assert obs["interpretation"][0]["coding"][0]["code"] == "H"
    assert obs["referenceRange"] == [
        {
            "low": {"value": 70, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
            "high": {"value": 99, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
            "text": "70-99",
        }
    ]


def test_nm_with_a_unit_that_is_ucum_as_written_and_no_system_is_ucum() -> None:
    obs = _result("OBX|1|NM|2345-7^Glucose^LN||5.4|mmol/L|||||F")
    assert obs["valueQuantity"] == {"value": 5.4, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"}


def test_nm_with_a_local_unit_keeps_it_as_text() -> None:
    obs = _result("OBX|1|NM|2345-7^Glucose^LN||105|milligrams per deciliter|||||F")
    assert obs["valueQuantity"] == {"value": 105, "unit": "milligrams per deciliter"}


def test_nm_that_is_not_a_number_is_kept_as_text_and_reported() -> None:
    ctx = _mapped(ORC, OBR, "OBX|1|NM|2345-7^Glucose^LN||see note|||||F")
    assert _one(ctx, "Observation")["valueString"] == "see note"
    assert any("does not read as NM" in i.message for i in ctx.issues)


@pytest.mark.parametrize(
    "sn, expected",
    [
        (
            "<^5",
            {
                "valueQuantity": {
                    "value": 5,
                    "unit": "mg/dL",
                    "system": UCUM,
                    "code": "mg/dL",
                    "comparator": "<",
                }
            },
        ),
        (
            ">=^10",
            {
                "valueQuantity": {
                    "value": 10,
                    "unit": "mg/dL",
                    "system": UCUM,
                    "code": "mg/dL",
                    "comparator": ">=",
                }
            },
        ),
        (
            "<0.10",
            {
                "valueQuantity": {
                    "value": 0.1,
                    "unit": "mg/dL",
                    "system": UCUM,
                    "code": "mg/dL",
                    "comparator": "<",
                }
            },
        ),
        ("^182", {"valueQuantity": {"value": 182, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}}),
        (
            "^1^:^2",
            {
                "valueRatio": {
                    "numerator": {"value": 1, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
                    "denominator": {"value": 2, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
                }
            },
        ),
        (
            "^2^-^5",
            {
                "valueRange": {
                    "low": {"value": 2, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
                    "high": {"value": 5, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
                }
            },
        ),
        ("^2^+^", {"valueString": "2 +"}),
    ],
)
def test_sn_gives_a_quantity_with_comparator_a_ratio_or_a_range(sn: str, expected: dict[str, Any]) -> None:
    obs = _result(f"OBX|1|SN|2345-7^Glucose^LN||{sn}|mg/dL|||||F")
    assert {k: v for k, v in obs.items() if k.startswith("value")} == expected


def test_st_decodes_escapes_and_keeps_an_escaped_component_separator() -> None:
    obs = _result("OBX|1|ST|8251-1^Service comment^LN||Mood 4\\S\\10 \\T\\ sleep poor\\.br\\see plan|||||F")
    assert obs["valueString"] == "Mood 4^10 & sleep poor\nsee plan"


def test_tx_joins_every_repetition_with_new_lines() -> None:
    obs = _result("OBX|1|TX|11526-1^Pathology study^LN||Line one~Line two~~Line four|||||F")
    assert obs["valueString"] == "Line one\nLine two\n\nLine four"


def test_ft_reads_formatting_as_new_lines() -> None:
    obs = _result("OBX|1|FT|11526-1^Note^LN||Assessment:\\.br\\Patient calm.\\.sp2\\Plan: follow up|||||F")
    assert obs["valueString"] == "Assessment:\nPatient calm.\n\nPlan: follow up"


def test_cwe_is_a_codeable_concept_with_its_coding_system() -> None:
    obs = _result("OBX|1|CWE|80382-5^Flu A^LN||260373001^Detected^SCT|||A|||F")
    assert obs["valueCodeableConcept"]["coding"][0] == {
        "system": "http://snomed.info/sct",
        "code": "260373001",
        "display": "Detected",
    }


def test_dt_is_a_date_and_ts_a_date_time_in_the_sender_zone() -> None:
    assert _result("OBX|1|DT|11368-8^Onset^LN||20240201|||||F")["valueDateTime"] == "2024-02-01"
    ts = _result("OBX|1|TS|11368-8^Onset^LN||202402011430|||||F")
    assert ts["valueDateTime"] == "2024-02-01T14:30:00-05:00"


def test_tm_is_a_time() -> None:
    assert _result("OBX|1|TM|11368-8^Time^LN||0745|||||F")["valueTime"] == "07:45:00"


def test_empty_value_has_a_data_absent_reason() -> None:
    obs = _result("OBX|1|ST|8251-1^Comment^LN||||||||F")
    assert "valueString" not in obs
    assert obs["dataAbsentReason"] == {"coding": [{"system": DAR, "code": "unknown"}]}
    assert obs["status"] == "final"


def test_a_result_that_cannot_be_obtained_says_so() -> None:
    obs = _result("OBX|1||8251-1^Comment^LN||||||||X")
    assert obs["status"] == "cancelled"
    assert obs["dataAbsentReason"]["coding"][0]["code"] == "cannot-be-obtained"


def test_ed_base64_is_an_attachment_in_the_r5_value_extension() -> None:
    obs = _result("OBX|1|ED|11526-1^Report^LN||LIS^AP^PDF^Base64^SGVsbG8=|||||F")
    assert obs["extension"] == [
        {
            "url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.value",
            "valueAttachment": {"contentType": "application/pdf", "data": "SGVsbG8="},
        }
    ]
    assert "dataAbsentReason" not in obs


def test_ed_that_is_not_base64_is_left_out_and_reported() -> None:
    ctx = _mapped(ORC, OBR, "OBX|1|ED|11526-1^Report^LN||LIS^AP^PDF^Base64^not*base64|||||F")
    obs = _one(ctx, "Observation")
    assert "extension" not in obs and obs["dataAbsentReason"]["coding"][0]["code"] == "unknown"
    assert any("not valid BASE64" in i.message for i in ctx.issues)


def test_rp_is_an_attachment_pointing_at_the_document() -> None:
    obs = _result("OBX|1|RP|11526-1^Report^LN||https://lab.example.org/r/1^LIS^AP^PDF|||||F")
    attachment = obs["extension"][0]["valueAttachment"]
    assert attachment == {"contentType": "application/pdf", "url": "https://lab.example.org/r/1"}


def test_a_repeated_number_gives_one_component_per_value() -> None:
    obs = _result("OBX|1|NM|8867-4^Heart rate^LN||60~120|/min|||||F")
    assert "valueQuantity" not in obs and "dataAbsentReason" not in obs
    assert [c["valueQuantity"]["value"] for c in obs["component"]] == [60, 120]
    assert all(c["code"]["coding"][0]["code"] == "8867-4" for c in obs["component"])


def test_a_repeated_attachment_keeps_the_first_and_reports_the_rest() -> None:
    ctx = _mapped(ORC, OBR, "OBX|1|RP|11526-1^Report^LN||https://a.example/1~https://a.example/2|||||F")
    assert _one(ctx, "Observation")["extension"][0]["valueAttachment"]["url"] == "https://a.example/1"
    assert any("only the first is kept" in i.message for i in ctx.issues)


def test_an_unknown_value_type_is_kept_as_text_and_reported() -> None:
    ctx = _mapped(ORC, OBR, "OBX|1|XAD|56799-0^Address^LN||12 ELM ST^^SPRINGFIELD|||||F")
    assert _one(ctx, "Observation")["valueString"] == "12 ELM ST SPRINGFIELD"
    assert any("'XAD' is not mapped" in i.message for i in ctx.issues)


# --- reference ranges, status, interpretation --------------------------------------------------


@pytest.mark.parametrize(
    "text, low, high",
    [
        ("3.5-5.0", 3.5, 5.0),
        ("3.5 - 5.0", 3.5, 5.0),
        ("4.3 to 6.2", 4.3, 6.2),
        (">10", 10, None),
        ("<5", None, 5),
        ("<=0.10", None, 0.1),
        ("-2-2", -2, 2),
        ("negative", None, None),
    ],
)
def test_reference_range_reads_low_and_high_and_keeps_the_text(text: str, low: Any, high: Any) -> None:
    obx = Message.parse(
        f"MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5.1\rOBX|1|NM|x^y^LN||1|mg|{text}".encode()
    )
    (found,) = reference_ranges(obx.segments[1])
    assert found.get("low", {}).get("value") == low
    assert found.get("high", {}).get("value") == high
    assert found["text"] == text
    if low is not None:
        assert found["low"]["unit"] == "mg"


@pytest.mark.parametrize(
    "code, status",
    [
        ("F", "final"),
        ("P", "preliminary"),
        ("C", "corrected"),
        ("X", "cancelled"),
        ("D", "entered-in-error"),
        ("A", "amended"),
        ("I", "unknown"),
        ("", "unknown"),
    ],
)
def test_result_status_follows_table_0085(code: str, status: str) -> None:
    assert _result(f"OBX|1|NM|2345-7^Glucose^LN||105|mg/dL|||||{code}")["status"] == status


def test_an_unknown_result_status_is_reported() -> None:
    ctx = _mapped(ORC, OBR, "OBX|1|NM|2345-7^Glucose^LN||105|mg/dL|||||Q")
    assert _one(ctx, "Observation")["status"] == "unknown"
    assert any("table 0085" in i.message for i in ctx.issues)


def test_interpretation_maps_table_0078_to_v3_and_keeps_other_codes() -> None:
    obs = _result("OBX|1|NM|2345-7^Glucose^LN||400|mg/dL||HH~ZZ^Local flag^L|||F")
    assert obs["interpretation"][0]["coding"] == [
        {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
            "code": "HH",
            "display": "Critical high",
        }
    ]
    assert obs["interpretation"][1]["coding"][0]["code"] == "ZZ"


# --- the Observation around the value ----------------------------------------------------------


def test_result_under_an_order_is_laboratory_based_on_the_order_and_timed_by_the_obr() -> None:
    obs = _result("OBX|1|NM|2345-7^Glucose^LN||105|mg/dL|||||F", "NTE|1||Fasting sample\\.br\\per patient")
    assert obs["category"][0]["coding"][0]["code"] == "laboratory"
    assert obs["basedOn"] == [
        {
            "identifier": {"system": "urn:carebridge:hl7v2:authority:CLINIC", "value": "PL-100"},
            "type": "ServiceRequest",
        }
    ]
    assert obs["subject"] == PATIENT and obs["encounter"] == ENCOUNTER
    assert obs["effectiveDateTime"] == "2024-03-05T08:30:00-05:00"  # OBR-7, no OBX-14
    assert obs["issued"] == "2024-03-05T10:00:00-05:00"  # OBR-22
    assert obs["note"] == [{"text": "Fasting sample\nper patient"}]
    assert obs["code"]["coding"][0] == {"system": LOINC, "code": "2345-7", "display": "Glucose"}


def test_obx_14_and_performers() -> None:
    obs = _result(
        "OBX|1|NM|2345-7^Glucose^LN||105|mg/dL|||||F|||202403050845|||||||"
        "||NORTH LAB^L^^^^CLIA&2.16.840.1.113883.4.7&ISO^XX^^^11D0000001"
    )
    assert obs["effectiveDateTime"] == "2024-03-05T08:45:00-05:00"
    (org,) = obs["performer"]
    assert org["display"] == "NORTH LAB" and org["type"] == "Organization"
    assert org["identifier"]["value"] == "11D0000001"


def test_responsible_observer_is_a_logical_practitioner_reference() -> None:
    obs = _result("OBX|1|NM|2345-7^Glucose^LN||105|mg/dL|||||F|||||D-9^OBSERVER^ROBIN^^^^^^NORTHLAB")
    assert obs["performer"] == [
        {
            "identifier": {"system": "urn:carebridge:hl7v2:authority:NORTHLAB", "value": "D-9"},
            "display": "ROBIN OBSERVER",
            "type": "Practitioner",
        }
    ]


@pytest.mark.parametrize(
    "code, category",
    [
        ("8302-2^Body height^LN", "vital-signs"),
        ("29463-7^Body weight^LN", "vital-signs"),
        ("44261-6^PHQ-9 total^LN", "survey"),
    ],
)
def test_vital_signs_and_screening_scores_have_their_category(code: str, category: str) -> None:
    assert _result(f"OBX|1|NM|{code}||1|1|||||F")["category"][0]["coding"][0]["code"] == category


def test_the_same_result_twice_has_the_same_identity_and_a_correction_updates_it() -> None:
    first = _produced(
        _mapped(ORC, OBR, "OBX|1|NM|2345-7^Glucose^LN||105|mg/dL|||||F", control="C-1"), "Observation"
    )
    again = _produced(
        _mapped(ORC, OBR, "OBX|1|NM|2345-7^Glucose^LN||105|mg/dL|||||F", control="C-2"), "Observation"
    )
    corrected = _produced(
        _mapped(ORC, OBR, "OBX|1|NM|2345-7^Glucose^LN||110|mg/dL|||||C", control="C-3"), "Observation"
    )
    assert first[0].identity == again[0].identity == corrected[0].identity
    assert corrected[0].resource["status"] == "corrected"
    assert "|" not in first[0].identity.value  # a search token's value holds no bare "|"


def test_two_results_with_one_code_are_told_apart_by_sub_id_or_set_id() -> None:
    ctx = _mapped(
        ORC,
        OBR,
        "OBX|1|NM|2345-7^Glucose^LN|1|105|mg/dL|||||F",
        "OBX|2|NM|2345-7^Glucose^LN|2|98|mg/dL|||||F",
        "OBX|3|NM|2345-7^Glucose^LN|2|97|mg/dL|||||F",
    )
    identities = [p.identity for p in _produced(ctx, "Observation")]
    assert len(set(identities)) == 3


def test_observation_instance_identifier_is_the_identity_when_sent() -> None:
    ctx = _mapped(ORC, OBR, "OBX|1|NM|2345-7^Glucose^LN||105|mg/dL|||||F||||||||||OI-1^NORTHLAB")
    (produced,) = _produced(ctx, "Observation")
    assert produced.identity.token == "urn:carebridge:hl7v2:authority:NORTHLAB|OI-1"


# --- ServiceRequest and DiagnosticReport --------------------------------------------------------


def test_order_becomes_a_service_request_with_placer_and_filler_numbers() -> None:
    ctx = _mapped(ORC, "NTE|1||Please call with results", OBR, "OBX|1|NM|2345-7^Glucose^LN||105|mg/dL|||||F")
    (produced,) = _produced(ctx, "ServiceRequest")
    request = produced.resource
    assert produced.identity.token == "urn:carebridge:hl7v2:authority:CLINIC|PL-100"
    assert [(i["value"], i["type"]["coding"][0]["code"]) for i in request["identifier"]] == [
        ("PL-100", "PLAC"),
        ("FL-200", "FILL"),
    ]
    assert request["status"] == "completed"  # ORC-5 CM (table 0038)
    assert request["intent"] == "order"
    assert request["code"]["coding"][0]["code"] == "24323-8"
    assert request["subject"] == PATIENT
    assert request["encounter"] == {
        "identifier": {"system": "urn:test:visit", "value": "V-55"},
        "type": "Encounter",
    }
    assert request["occurrenceDateTime"] == "2024-03-04"  # OBR-6
    assert "authoredOn" not in request  # ORC-9 of an RE is not when the order was placed
    assert request["requester"]["display"] == "CASEY EVERYDOC"
    assert "reference" not in request["requester"]
    assert request["reasonCode"][0]["coding"][0]["code"] == "R45.851"
    assert request["note"] == [{"text": "Please call with results"}]


@pytest.mark.parametrize(
    "control, status, expected",
    [
        ("NW", "", "active"),
        ("CA", "", "active"),
        ("OC", "", "revoked"),
        ("HD", "HD", "on-hold"),
        ("RE", "", "unknown"),
    ],
)
def test_order_status_follows_orc5_then_orc1(control: str, status: str, expected: str) -> None:
    orc = f"ORC|{control}|PL-100^CLINIC|||{status}||||20240305090000"
    request = _one(_mapped(orc, OBR, message_type="ORM^O01"), "ServiceRequest")
    assert request["status"] == expected
    assert ("authoredOn" in request) == (control == "NW")


def test_orm_makes_no_diagnostic_report() -> None:
    ctx = _mapped(ORC.replace("ORC|RE", "ORC|NW"), OBR, message_type="ORM^O01")
    assert _of(ctx, "DiagnosticReport") == []
    assert _one(ctx, "ServiceRequest")["authoredOn"] == "2024-03-05T09:00:00-05:00"


def test_diagnostic_report_links_order_and_results() -> None:
    ctx = _mapped(
        ORC, OBR, "OBX|1|NM|2345-7^Glucose^LN||105|mg/dL|||||F", "OBX|2|NM|2951-2^Sodium^LN||140|mmol/L|||||F"
    )
    (produced,) = _produced(ctx, "DiagnosticReport")
    report = produced.resource
    assert produced.identity.token == "urn:carebridge:hl7v2:authority:NORTHLAB|FL-200"  # filler first
    assert report["status"] == "final"
    assert report["category"] == [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "CH"}]}
    ]
    assert report["basedOn"] == [
        {
            "identifier": {"system": "urn:carebridge:hl7v2:authority:CLINIC", "value": "PL-100"},
            "type": "ServiceRequest",
        }
    ]
    observations = _produced(ctx, "Observation")
    assert [r["reference"] for r in report["result"]] == [
        f"Observation?identifier={o.identity.system}|{o.identity.value.replace(' ', '%20')}"
        for o in observations
    ]
    assert report["effectiveDateTime"] == "2024-03-05T08:30:00-05:00"
    assert report["issued"] == "2024-03-05T10:00:00-05:00"
    assert report["resultsInterpreter"] == [{"display": "RILEY READER", "type": "Practitioner"}]
    assert report["encounter"] == ENCOUNTER


def test_report_without_section_is_lab_and_a_day_is_no_instant() -> None:
    obr = "OBR|1|PL-1^CLINIC|FL-1^NORTHLAB|2345-7^Glucose^LN||||||||||||||||||20240305|||P"
    report = _one(_mapped(obr), "DiagnosticReport")
    assert report["category"][0]["coding"][0]["code"] == "LAB"
    assert report["status"] == "preliminary"
    assert "issued" not in report


def test_obrs_sharing_a_placer_number_are_separate_orders() -> None:
    ctx = _mapped(
        "ORC|NW|REQ-9^CLINIC",
        "OBR|1|REQ-9^CLINIC||2345-7^Glucose^LN",
        "OBR|2|REQ-9^CLINIC||2951-2^Sodium^LN",
        message_type="ORM^O01",
    )
    requests = _produced(ctx, "ServiceRequest")
    assert len({p.identity for p in requests}) == 2
    assert requests[0].identity.value == "REQ-9"
    assert [r.resource["code"]["coding"][0]["code"] for r in requests] == ["2345-7", "2951-2"]
    # Both keep the placer number, so either is found by it.
    assert all(any(i["value"] == "REQ-9" for i in r.resource["identifier"]) for r in requests)


def test_an_order_without_numbers_is_identified_by_the_message_and_reported() -> None:
    ctx = _mapped(
        "OBR|1|||2345-7^Glucose^LN|||20240305||||||||||||||||||F", "OBX|1|NM|2345-7^Glucose^LN||1|mg|||||F"
    )
    (produced,) = _produced(ctx, "ServiceRequest")
    assert produced.identity.system == "urn:carebridge:hl7v2:order"
    assert produced.resource["status"] == "unknown"
    assert any("no placer or filler order number" in i.message for i in ctx.issues)


def test_obx_outside_any_order_is_an_observation_of_the_patient() -> None:
    ctx = _mapped("OBX|1|NM|29463-7^Body weight^LN||80|kg|||||F", ORC, OBR)
    (weight,) = [o for o in _of(ctx, "Observation")]
    assert "basedOn" not in weight
    assert weight["category"][0]["coding"][0]["code"] == "vital-signs"


def test_map_observations_maps_adt_vitals_scoped_by_the_visit() -> None:
    ctx = _ctx(
        "PV1|1|I|4WEST||||||||||||||||V-55",
        "OBX|1|NM|8302-2^Body height^LN||170|cm|||||F|||20240301",
        "OBX|2|NM|29463-7^Body weight^LN||80|kg|||||F|||20240301",
        message_type="ADT^A01",
    )
    refs = map_observations(ctx, PATIENT, ENCOUNTER)
    produced = _produced(ctx, "Observation")
    assert len(refs) == 2 and len(produced) == 2
    assert produced[0].resource["valueQuantity"] == {"value": 170, "unit": "cm", "system": UCUM, "code": "cm"}
    assert "urn:test:visit:V-55" in produced[0].identity.value


def test_map_observations_in_a_ref_maps_the_results_under_its_obr() -> None:
    ctx = _ctx(
        "RF1|P",
        "OBR|1|||44249-1^PHQ-9 panel^LN",
        "OBX|1|NM|44261-6^PHQ-9 total score^LN||19|{score}|||||F",
        message_type="REF^I12",
    )
    map_observations(ctx, PATIENT, None)
    obs = _one(ctx, "Observation")
    assert obs["valueQuantity"]["value"] == 19
    assert obs["category"][0]["coding"][0]["code"] == "survey"


def test_map_observations_in_an_oru_leaves_the_ordered_results_to_map_orders() -> None:
    ctx = _ctx(ORC, OBR, "OBX|1|NM|2345-7^Glucose^LN||105|mg/dL|||||F")
    assert map_observations(ctx, PATIENT, None) == []


# --- the corpus ----------------------------------------------------------------------------------


def _corpus(path: str) -> Context:
    ctx = new_context(Message.parse((HL7V2 / path).read_bytes()), timezone="UTC")
    map_orders(ctx, PATIENT, None)
    return ctx


def test_nist_cbc_report_has_every_result_and_interpretation() -> None:
    ctx = _corpus("microsoft-fhir-converter/ORU_R01/LRI_2.0-NG_CBC_Typ_Message.hl7")
    report = _one(ctx, "DiagnosticReport")
    observations = _of(ctx, "Observation")
    assert len(observations) == 28 and len(report["result"]) == 28
    leukocytes = next(o for o in observations if o["code"]["coding"][0]["code"] == "26464-8")
    assert leukocytes["valueQuantity"] == {
        "value": 105600,
        "unit": "cells per microliter",
        "system": UCUM,
        "code": "{cells}/uL",
    }
    assert leukocytes["interpretation"][0]["coding"][0]["code"] == "HH"
    assert leukocytes["referenceRange"][0]["low"]["value"] == 4300
    assert leukocytes["referenceRange"][0]["high"]["value"] == 10800
    assert _one(ctx, "ServiceRequest")["requester"]["display"] == "Nicholas Radon"


def _reportstream_value(name: str) -> dict[str, Any]:
    bundle = json.loads((HL7V2 / f"cdc-reportstream/mappinginventory/obx/{name}.fhir").read_text())
    obs = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    return {k: v for k, v in obs.items() if k.startswith("value") or k in ("dataAbsentReason", "status")}


@pytest.mark.parametrize(
    "name",
    [
        "OBX-to-Observation-ft-value",
        "OBX-to-Observation-tx-value",
        "OBX-to-Observation-data-absent-st-but-empty-value",
        "OBX-to-Observation-data-absent-x-value",
    ],
)
def test_reportstream_values_agree(name: str) -> None:
    ctx = _corpus(f"cdc-reportstream/mappinginventory/obx/{name}.hl7")
    ours = _one(ctx, "Observation")
    expected = _reportstream_value(name)
    assert {k: v for k, v in ours.items() if k in expected} == expected


def test_reportstream_numbers_and_codes_agree_on_value_unit_and_code() -> None:
    nm = _one(_corpus("cdc-reportstream/mappinginventory/obx/OBX-to-Observation-nm-value.hl7"), "Observation")
    assert (nm["valueQuantity"]["value"], nm["valueQuantity"]["unit"], nm["valueQuantity"]["code"]) == (
        5,
        "ML",
        "1",
    )
    ratio = _one(
        _corpus("cdc-reportstream/mappinginventory/obx/OBX-to-Observation-sn-as-ratio-value-colon.hl7"),
        "Observation",
    )["valueRatio"]
    assert (ratio["numerator"]["value"], ratio["denominator"]["value"]) == (1, 3)
    cwe = _one(
        _corpus("cdc-reportstream/mappinginventory/obx/OBX-to-Observation-cwe-value.hl7"), "Observation"
    )
    assert cwe["valueCodeableConcept"]["coding"] == [{"code": "1", "display": "Display"}]


def test_reportstream_st_value_with_instance_identifier_and_reference_range_text() -> None:
    ctx = _corpus("cdc-reportstream/mappinginventory/obx/OBX-to-Observation-st-value.hl7")
    (produced,) = _produced(ctx, "Observation")
    assert produced.identity.value == "CDC_3015822725"  # OBX-21
    assert produced.resource["valueString"] == "Some value"
    assert produced.resource["referenceRange"] == [{"text": "Reference Range"}]
    assert produced.resource["effectiveDateTime"] == "2023-05-01T10:25:31-04:00"


def test_orders_with_one_requisition_number_in_the_corpus_stay_apart() -> None:
    ctx = _corpus("cdc-reportstream/full_messages/sample_oru_CDPH_NBS_20241021-001.hl7")
    requests = _produced(ctx, "ServiceRequest")
    reports = _produced(ctx, "DiagnosticReport")
    assert len(requests) == 3 and len({r.identity for r in requests}) == 3
    assert len(reports) == 3 and len({r.identity for r in reports}) == 3
