"""HL7 v2 data types -> FHIR data types (services.gateway.hl7.datatypes) and the table maps
they use (services.gateway.hl7.tables), on synthetic values (invented people, no PHI)."""

from __future__ import annotations

from services.gateway.hl7 import tables
from services.gateway.hl7.context import Context, Identity
from services.gateway.hl7.datatypes import (
    address,
    codeable_concept,
    coding,
    contact_point,
    entity_identifier,
    human_name,
    identifier,
    location_display,
    organization_name_and_id,
    period,
    practitioner_reference,
    practitioner_resource,
    quantity,
)
from services.gateway.hl7.er7 import Message, Value, read_timestamp
from services.gateway.hl7.translate import new_context

MSH = "MSH|^~\\&|ADT1|NORTHCLINIC|CAREBRIDGE|CB|20240301101500||ADT^A01^ADT_A01|MSG1|P|2.5.1"


def _ctx() -> Context:
    return new_context(Message.parse(f"{MSH}\rZZZ|1".encode()), timezone="America/New_York")


def _value(ctx: Context, raw: str) -> Value:
    """One field repetition of a throwaway segment, read with the message's delimiters."""
    return Value(raw, 0, ctx.message)


# --- CX, EI -------------------------------------------------------------------------------------


def test_a_cx_with_an_iso_authority_has_an_oid_system_a_typed_value_and_a_period():
    ctx = _ctx()
    cx = _value(ctx, "MRN-0042^^^NorthClinic&2.16.840.1.113883.19.5&ISO^MR^^20200101^20301231")
    assert identifier(cx, ctx) == {
        "system": "urn:oid:2.16.840.1.113883.19.5",
        "value": "MRN-0042",
        "type": {
            "coding": [{"system": tables.v2_system("0203"), "code": "MR", "display": "Medical record number"}]
        },
        "period": {"start": "2020-01-01", "end": "2030-12-31"},
        "assigner": {"display": "NorthClinic"},
    }


def test_a_cx_without_an_authority_takes_the_default_system_and_none_without_a_value():
    ctx = _ctx()
    assert identifier(_value(ctx, "12345"), ctx, default_system="urn:x") == {
        "system": "urn:x",
        "value": "12345",
    }
    assert identifier(_value(ctx, "^^^NorthClinic^MR"), ctx) is None
    assert identifier(_value(ctx, '""'), ctx) is None


def test_a_social_security_number_has_the_us_ssn_system_whatever_the_sender_calls_the_ssa():
    ctx = _ctx()
    for raw in ("999-00-1234^^^USSSA^SS", "999001234^^^^SS"):
        ident = identifier(_value(ctx, raw), ctx)
        assert ident is not None and ident["system"] == "http://hl7.org/fhir/sid/us-ssn"


def test_an_identifier_type_outside_table_0203_is_kept_without_a_system():
    ctx = _ctx()
    ident = identifier(_value(ctx, "A1^^^X^ZZ"), ctx)
    assert ident is not None and ident["type"] == {"coding": [{"code": "ZZ"}]}


def test_an_ei_reads_its_namespace_and_universal_id_as_an_assigning_authority():
    ctx = _ctx()
    ei = _value(ctx, "ORD-7^NorthLab^2.16.840.1.113883.19.7^ISO")
    assert entity_identifier(ei, ctx) == {"system": "urn:oid:2.16.840.1.113883.19.7", "value": "ORD-7"}
    assert entity_identifier(_value(ctx, "ORD-8"), ctx, default_system="urn:d") == {
        "system": "urn:d",
        "value": "ORD-8",
    }
    assert entity_identifier(_value(ctx, "ORD-9"), ctx) == {"value": "ORD-9"}
    assert entity_identifier(_value(ctx, "^NorthLab"), ctx) is None


# --- XPN ----------------------------------------------------------------------------------------


def test_an_xpn_becomes_a_human_name_with_every_part_in_its_place():
    ctx = _ctx()
    xpn = _value(ctx, "EVERYPERSON&van^ALEX^JORDAN^JR^DR^PHD^L^^^^^20200101^20291231")
    assert human_name(xpn, ctx) == {
        "use": "official",
        "family": "EVERYPERSON",
        "given": ["ALEX", "JORDAN"],
        "prefix": ["DR"],
        "suffix": ["JR", "PHD"],
        "period": {"start": "2020-01-01", "end": "2029-12-31"},
    }


def test_escape_sequences_in_a_name_are_decoded():
    ctx = _ctx()
    name = human_name(_value(ctx, "O\\X27\\EVERYPERSON^SAM\\T\\ALEX"), ctx)
    assert name == {"family": "O'EVERYPERSON", "given": ["SAM&ALEX"]}


def test_a_called_by_name_joins_the_given_names_of_a_usual_name_only():
    ctx = _ctx()
    usual = human_name(_value(ctx, "EVERYPERSON^ALEX^^^^^D^^^^^^^^SANDY"), ctx)
    official = human_name(_value(ctx, "EVERYPERSON^ALEX^^^^^L^^^^^^^^SANDY"), ctx)
    assert usual is not None and usual["given"] == ["ALEX", "SANDY"]
    assert official is not None and official["given"] == ["ALEX"]


def test_an_xpn_without_family_or_given_name_is_no_name():
    ctx = _ctx()
    assert human_name(_value(ctx, "^^^JR^DR"), ctx) is None
    assert human_name(_value(ctx, ""), ctx) is None


# --- XAD ----------------------------------------------------------------------------------------


def test_an_xad_becomes_an_address_with_lines_city_state_and_home_use():
    ctx = _ctx()
    xad = _value(ctx, "12 ELM ST&ELM ST&12^APT 3^SPRINGFIELD^MA^01101^USA^H^^HAMPDEN")
    assert address(xad, ctx) == {
        "use": "home",
        "line": ["12 ELM ST", "ELM ST", "12", "APT 3"],
        "city": "SPRINGFIELD",
        "district": "HAMPDEN",
        "state": "MA",
        "postalCode": "01101",
        "country": "USA",
    }


def test_a_mailing_address_is_a_postal_type_and_an_empty_xad_is_no_address():
    ctx = _ctx()
    mailing = address(_value(ctx, "PO BOX 9^^SPRINGFIELD^MA^01101^^M"), ctx)
    assert mailing is not None and mailing["type"] == "postal" and "use" not in mailing
    assert address(_value(ctx, "^^^^^^H"), ctx) is None


# --- XTN ----------------------------------------------------------------------------------------


def test_a_v23_phone_number_in_xtn1_is_a_phone_with_the_callers_default_use():
    ctx = _ctx()
    assert contact_point(_value(ctx, "(555)555-0100"), ctx, default_use="home") == [
        {"system": "phone", "value": "(555)555-0100", "use": "home"}
    ]


def test_a_phone_number_is_composed_from_country_area_local_and_extension():
    ctx = _ctx()
    xtn = _value(ctx, "^WPN^PH^^1^555^5550100^42")
    assert contact_point(xtn, ctx, default_use="home") == [
        {"system": "phone", "value": "+1 555 5550100 X42", "use": "work"}
    ]


def test_an_internet_address_is_an_email_and_a_cell_phone_is_mobile():
    ctx = _ctx()
    assert contact_point(_value(ctx, "^NET^Internet^alex@example.org"), ctx) == [
        {"system": "email", "value": "alex@example.org"}
    ]
    assert contact_point(_value(ctx, "^PRN^CP^^^555^5550199"), ctx)[0]["use"] == "mobile"


def test_an_xtn_with_a_number_and_an_address_but_no_equipment_gives_a_phone_and_an_email():
    ctx = _ctx()
    points = contact_point(_value(ctx, "5550100^PRN^^alex@example.org"), ctx)
    assert [(p["system"], p["value"], p["use"]) for p in points] == [
        ("phone", "5550100", "home"),
        ("email", "alex@example.org", "home"),
    ]


def test_an_empty_xtn_is_no_contact_point():
    ctx = _ctx()
    assert contact_point(_value(ctx, ""), ctx) == []
    assert contact_point(_value(ctx, "^PRN^PH"), ctx) == []


# --- CWE ----------------------------------------------------------------------------------------


def test_a_cwe_becomes_a_codeable_concept_with_both_triplets_and_the_original_text():
    ctx = _ctx()
    cwe = _value(ctx, "F32.9^Major depressive disorder^I10^35489007^Depressive disorder^SCT^2024^^Depression")
    assert codeable_concept(cwe, ctx) == {
        "coding": [
            {
                "system": "http://hl7.org/fhir/sid/icd-10-cm",
                "version": "2024",
                "code": "F32.9",
                "display": "Major depressive disorder",
            },
            {"system": "http://snomed.info/sct", "code": "35489007", "display": "Depressive disorder"},
        ],
        "text": "Depression",
    }


def test_a_local_code_is_kept_with_a_sending_facility_system_or_with_no_system_without_a_context():
    ctx = _ctx()
    cwe = _value(ctx, "PSY^Psychiatry^99HSV")
    concept = codeable_concept(cwe, ctx)
    assert concept is not None
    assert concept["coding"] == [
        {"system": "urn:carebridge:hl7v2:code:NORTHCLINIC:99HSV", "code": "PSY", "display": "Psychiatry"}
    ]
    assert codeable_concept(cwe) == {
        "coding": [{"code": "PSY", "display": "Psychiatry"}],
        "text": "Psychiatry",
    }


def test_an_hl7_table_name_gives_the_v2_system_and_a_field_table_fills_a_missing_one():
    ctx = _ctx()
    race = codeable_concept(_value(ctx, "2106-3^White^HL70005"), ctx)
    assert race is not None and race["coding"][0]["system"] == "http://terminology.hl7.org/CodeSystem/v2-0005"
    disposition = codeable_concept(_value(ctx, "01"), ctx, table="0112")
    assert disposition == {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/v2-0112",
                "code": "01",
                "display": "Discharged to home or self care (routine discharge)",
            }
        ]
    }


def test_text_only_and_empty_cwes():
    ctx = _ctx()
    assert codeable_concept(_value(ctx, "^Feeling low"), ctx) == {"text": "Feeling low"}
    assert codeable_concept(_value(ctx, ""), ctx) is None


def test_coding_resolves_table_0396_names():
    assert coding("8867-4", "Heart rate", "LN") == {
        "system": "http://loinc.org",
        "code": "8867-4",
        "display": "Heart rate",
    }
    assert coding("X1", "", "L") == {"code": "X1"}
    assert coding("", "Heart rate", "LN") is None


def test_table_0396_and_v2_table_systems():
    assert (
        tables.v2_system("203")
        == tables.v2_system("HL70203")
        == "http://terminology.hl7.org/CodeSystem/v2-0203"
    )
    assert tables.system_for("I9CM") == "http://hl7.org/fhir/sid/icd-9-cm"
    assert tables.system_for("RXN") == "http://www.nlm.nih.gov/research/umls/rxnorm"
    assert tables.system_for("99ZZZ") is None
    assert tables.system_for("") is None


# --- XCN, XON, PL -------------------------------------------------------------------------------


def test_an_xcn_is_a_logical_practitioner_reference_without_a_reference_url():
    ctx = _ctx()
    xcn = _value(ctx, "D-77^EVERYDOC^CASEY^Q^^DR^MD^^NorthClinic&2.16.840.1.113883.19.9&ISO")
    assert practitioner_reference(xcn, ctx) == {
        "identifier": {"system": "urn:oid:2.16.840.1.113883.19.9", "value": "D-77"},
        "display": "CASEY EVERYDOC",
        "type": "Practitioner",
    }


def test_an_xcn_without_authority_is_scoped_to_the_facility_or_to_nppes_by_type():
    ctx = _ctx()
    local = practitioner_reference(_value(ctx, "77^EVERYDOC^CASEY"), ctx)
    npi = practitioner_reference(_value(ctx, "1234567893^EVERYDOC^CASEY^^^^^^^^^^NPI"), ctx)
    assert (
        local is not None and local["identifier"]["system"] == "urn:carebridge:hl7v2:practitioner:NORTHCLINIC"
    )
    assert npi is not None and npi["identifier"]["system"] == "http://hl7.org/fhir/sid/us-npi"
    assert practitioner_reference(_value(ctx, "^^^^^DR"), ctx) is None


def test_a_practitioner_resource_has_its_identifier_name_and_identity():
    ctx = _ctx()
    body, identity = practitioner_resource(_value(ctx, "77^EVERYDOC^CASEY^^^DR"), ctx) or ({}, None)
    assert identity == Identity("urn:carebridge:hl7v2:practitioner:NORTHCLINIC", "77")
    assert body["name"] == [{"family": "EVERYDOC", "given": ["CASEY"], "prefix": ["DR"]}]
    assert practitioner_resource(_value(ctx, "^EVERYDOC^CASEY"), ctx) is None


def test_an_xon_gives_its_name_and_the_v25_or_v24_style_identifier():
    ctx = _ctx()
    name, ident = organization_name_and_id(_value(ctx, "North Clinic^^^^^NorthHIE^XX^^^ORG-9"), ctx)
    assert name == "North Clinic"
    assert ident is not None and ident["value"] == "ORG-9" and ident["system"].endswith(":NorthHIE")
    assert organization_name_and_id(_value(ctx, "North Clinic^^55"), ctx)[1] == {
        "system": "urn:carebridge:hl7v2:organization:NORTHCLINIC",
        "value": "55",
    }


def test_a_location_reads_as_unit_room_bed_and_facility():
    ctx = _ctx()
    assert (
        location_display(_value(ctx, "4WEST^412^B^NorthHospital")) == "4WEST, Room 412, Bed B, NorthHospital"
    )
    assert location_display(_value(ctx, "^^^^^^^^Day room")) == "Day room"
    assert location_display(_value(ctx, "")) is None


# --- quantities and periods ---------------------------------------------------------------------


def test_a_quantity_is_ucum_when_the_unit_says_so_or_is_ucum_as_written():
    ctx = _ctx()
    assert quantity("5.4", _value(ctx, "mmol/L^millimole per liter^UCUM"), ctx) == {
        "value": 5.4,
        "unit": "millimole per liter",
        "system": "http://unitsofmeasure.org",
        "code": "mmol/L",
    }
    assert quantity("60", _value(ctx, "/min"), ctx) == {
        "value": 60,
        "unit": "/min",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    }
    assert quantity("60", _value(ctx, "beats/min"), ctx) == {"value": 60, "unit": "beats/min"}
    assert quantity("high", _value(ctx, "mg"), ctx) is None
    assert quantity("12", None) == {"value": 12}


def test_a_period_keeps_what_it_is_given():
    start, end = read_timestamp("20240301"), read_timestamp("20240302")
    assert period(start, end) == {"start": "2024-03-01", "end": "2024-03-02"}
    assert period(None, end) == {"end": "2024-03-02"}
    assert period(None, None) is None
