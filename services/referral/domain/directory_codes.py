"""The codes and extensions of the resource directory, in one place.

Sources and confidence ([V] checked against the source named, [K] known but not checked here):

- Gravity SDOH categories: SDOHCC CodeSystem Temporary Codes, HL7/fhir-sdoh-clinicalcare
  `input/fsh/codesystems/SDOHCCCodeSystemTemporaryCodes.fsh` [V]. Intake publishes needs with the
  same system and codes (services/intake/domain/screening_codes.py; a unit test keeps them equal).
- HealthcareService.category: http://terminology.hl7.org/CodeSystem/service-category (example
  binding): 8 Counselling, 12 Drug/Alcohol, 13 Education & Learning, 15 Employment, 16 Financial &
  Material aid, 18 Housing/Homelessness, 22 Mental Health, 33 Transport ... [V: THO CodeSystem
  listing]. Note: 35 is Hospital, not Mental Health.
- HealthcareService.type: http://terminology.hl7.org/CodeSystem/service-type (example binding)
  [V: THO listing], and SNOMED CT 394913002 Psychotherapy, 394587001 Psychiatry [V: FHIR R4
  healthcareservice-example.json].
- HealthcareService.specialty: SNOMED CT practice setting codes 394587001 Psychiatry,
  394913002 Psychotherapy, 47505003 Posttraumatic stress disorder [V: the same FHIR example].
- referralMethod: http://terminology.hl7.org/CodeSystem/service-referral-method
  (phone, fax, elec, semail, mail) [V: FHIR R4 valueset-service-referral-method].
- communication: BCP-47 language tags, urn:ietf:bcp:47 [V: FHIR R4 languages value set].
- PractitionerRole.code: NUCC provider taxonomy, http://nucc.org/provider-taxonomy [V: US Core];
  the individual taxonomy codes below are [K].
- Location timezone: http://hl7.org/fhir/StructureDefinition/timezone (valueCode, an IANA zone)
  [K: FHIR extensions pack]. Patient address position:
  http://hl7.org/fhir/StructureDefinition/geolocation [V: FHIR R4 extension registry].
- CareBridge's own: the capacity extension (open slots now), the eligibility age range, and the
  eligibility and characteristic code systems below.
"""

from __future__ import annotations

from typing import Any, Final

SDOHCC: Final = "http://hl7.org/fhir/us/sdoh-clinicalcare/CodeSystem/SDOHCC-CodeSystemTemporaryCodes"
SERVICE_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/service-category"
SERVICE_TYPE: Final = "http://terminology.hl7.org/CodeSystem/service-type"
SNOMED: Final = "http://snomed.info/sct"
REFERRAL_METHOD: Final = "http://terminology.hl7.org/CodeSystem/service-referral-method"
PROVISION: Final = "http://terminology.hl7.org/CodeSystem/service-provision-conditions"
BCP47: Final = "urn:ietf:bcp:47"
ORGANIZATION_TYPE: Final = "http://terminology.hl7.org/CodeSystem/organization-type"
ENDPOINT_CONNECTION_TYPE: Final = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
ENDPOINT_PAYLOAD_TYPE: Final = "http://terminology.hl7.org/CodeSystem/endpoint-payload-type"
NUCC: Final = "http://nucc.org/provider-taxonomy"
UCUM: Final = "http://unitsofmeasure.org"

#: Open slots the service can take now (valueInteger, 0 = full). CareBridge's own.
CAPACITY_EXTENSION: Final = "http://carebridge.example/fhir/StructureDefinition/service-capacity"
#: On HealthcareService.eligibility: the ages served (valueRange, years, UCUM `a`). Ours.
AGE_RANGE_EXTENSION: Final = "http://carebridge.example/fhir/StructureDefinition/eligibility-age-range"
TIMEZONE_EXTENSION: Final = "http://hl7.org/fhir/StructureDefinition/timezone"
GEOLOCATION_EXTENSION: Final = "http://hl7.org/fhir/StructureDefinition/geolocation"

#: HealthcareService.eligibility.code: who a service is for. Ours; `age` carries the range.
ELIGIBILITY: Final = "http://carebridge.example/fhir/CodeSystem/service-eligibility"
ELIGIBILITY_DISPLAYS: Final = {
    "age": "Ages served",
    "veteran": "Veterans (and their families where noted)",
    "low-income": "Low income (at or below 200% of the federal poverty level)",
    "uninsured": "Uninsured or underinsured",
    "resident": "Residents of the service area",
}
#: HealthcareService.characteristic: how a service is delivered. Ours.
CHARACTERISTIC: Final = "http://carebridge.example/fhir/CodeSystem/service-characteristic"
INTERPRETER: Final = "interpreter-available"
REMOTE: Final = "remote-delivery"
CHARACTERISTIC_DISPLAYS: Final = {
    INTERPRETER: "Interpreter available on request",
    REMOTE: "Delivered by phone or video; no site visit",
}

#: Identifier systems of the shipped synthetic directory, by resource type.
DIRECTORY_IDENTIFIER_BASE: Final = "http://carebridge.example/fhir/directory"

GRAVITY_CATEGORIES: Final[dict[str, str]] = {
    "food-insecurity": "Food Insecurity",
    "housing-instability": "Housing Instability",
    "homelessness": "Homelessness",
    "inadequate-housing": "Inadequate Housing",
    "transportation-insecurity": "Transportation Insecurity",
    "financial-insecurity": "Financial Insecurity",
    "material-hardship": "Material Hardship",
    "educational-attainment": "Educational Attainment",
    "employment-status": "Employment Status",
    "veteran-status": "Veteran Status",
    "stress": "Stress",
    "social-connection": "Social Connection",
    "intimate-partner-violence": "Intimate Partner Violence",
    "elder-abuse": "Elder Abuse",
    "personal-health-literacy": "Personal Health Literacy",
    "health-insurance-coverage-status": "Health Insurance Coverage Status",
    "medical-cost-burden": "Medical Cost Burden",
    "utility-insecurity": "Utility Insecurity",
    "incarceration-status": "Incarceration Status",
}

SERVICE_CATEGORY_DISPLAYS: Final = {
    "2": "Aged Care",
    "6": "Child Protection & Family Services",
    "7": "Community Health Care",
    "8": "Counselling",
    "12": "Drug/Alcohol",
    "13": "Education & Learning",
    "15": "Employment",
    "16": "Financial & Material aid",
    "18": "Housing/Homelessness",
    "20": "Justice",
    "21": "Legal",
    "22": "Mental Health",
    "25": "Respite/Carer Support",
    "32": "Support group/s",
    "33": "Transport",
}

SERVICE_TYPE_DISPLAYS: Final = {
    "105": "Drug and/or Alcohol Counselling",
    "108": "Non-resid. Alcohol/Drug Treatment",
    "109": "Pharmacotherapy",
    "111": "Residential Alcohol/Drug Treatment",
    "112": "Adult/Community Education",
    "116": "Training & Vocational Education",
    "118": "Employment Placement and/or Support",
    "119": "Vocational Rehabilitation",
    "121": "Financial Assistance",
    "122": "Financial Information/Advice",
    "123": "Material Aid",
    "125": "Accommodation Placement/Support",
    "126": "Crisis/Emergency Accommodation",
    "127": "Homelessness Support",
    "128": "Housing Information/Referral",
    "132": "Legal Advocacy",
    "133": "Legal Information/Advice/Referral",
    "135": "Mental Health Assess/Triage/Crisis Response",
    "136": "Mental Health Case Management",
    "141": "Psychiatry (Requires Referral)",
    "142": "Psychology",
    "155": "Carer Support",
    "224": "Support Groups",
    "228": "Community Bus",
    "230": "Patient Transport",
    "233": "Abuse",
    "240": "Advice",
    "241": "Advocacy",
    "289": "Clothing",
    "295": "Community Transport",
    "296": "Companion Visiting",
    "305": "Counselling",
    "307": "Crises",
    "310": "Crisis Refuge",
    "311": "Day Program",
    "317": "Detoxification",
    "330": "Emergency Relief",
    "344": "Food",
    "345": "Food Vouchers",
    "366": "Household Items",
    "370": "Information",
    "375": "Job Searching",
    "376": "Justice",
}

SNOMED_DISPLAYS: Final = {
    "394587001": "Psychiatry",
    "394913002": "Psychotherapy",
    "47505003": "Posttraumatic stress disorder",
}

#: Behavioural-health kinds a directory row may name instead of codes (the CSV `categories`
#: column, the generator): their HealthcareService category, type and specialty codes.
BEHAVIOURAL_HEALTH: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "psychiatry": {
        "category": ("22",), "type": ("141",), "snomed_type": ("394587001",), "specialty": ("394587001",),
    },
    "therapy": {
        "category": ("8", "22"), "type": ("305", "142"), "snomed_type": ("394913002",),
        "specialty": ("394913002",),
    },
    "sud-treatment": {"category": ("12",), "type": ("108", "105"), "snomed_type": (), "specialty": ()},
    "crisis": {"category": ("22",), "type": ("135", "307"), "snomed_type": (), "specialty": ()},
    "case-management": {"category": ("22",), "type": ("136",), "snomed_type": (), "specialty": ()},
}  # fmt: skip

#: Gravity categories that share a family: a service for one is a partial fit for the others
#: (CareBridge's judgement [K], for case-manager review; category-fit reasons say "related").
CATEGORY_FAMILIES: Final[tuple[frozenset[str], ...]] = (
    frozenset({"housing-instability", "homelessness", "inadequate-housing", "utility-insecurity"}),
    frozenset({"financial-insecurity", "material-hardship", "medical-cost-burden", "utility-insecurity"}),
    frozenset({"intimate-partner-violence", "elder-abuse"}),
    frozenset({"stress", "social-connection"}),
    frozenset({"employment-status", "educational-attainment"}),
    frozenset({"health-insurance-coverage-status", "medical-cost-burden", "personal-health-literacy"}),
)

#: A need served, partially, by services of these service-category codes (e.g. stress by
#: counselling and mental health services). [K] CareBridge's judgement.
NEED_SERVICE_CATEGORIES: Final[dict[str, frozenset[str]]] = {
    "stress": frozenset({"8", "22", "32"}),
    "social-connection": frozenset({"32"}),
    "homelessness": frozenset({"18"}),
    "housing-instability": frozenset({"18"}),
    "inadequate-housing": frozenset({"18"}),
    "transportation-insecurity": frozenset({"33"}),
    "employment-status": frozenset({"15"}),
    "educational-attainment": frozenset({"13"}),
    "food-insecurity": frozenset(),
    "incarceration-status": frozenset({"20"}),
}


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    found = {"system": system, "code": code}
    if display:
        found["display"] = display
    return found


def concept(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    return {"coding": [coding(system, code, display)], **({"text": display} if display else {})}


def gravity(code: str) -> dict[str, Any]:
    """A HealthcareService.category entry for a Gravity SDOH category."""
    return concept(SDOHCC, code, GRAVITY_CATEGORIES[code])


def service_category(code: str) -> dict[str, Any]:
    return concept(SERVICE_CATEGORY, code, SERVICE_CATEGORY_DISPLAYS.get(code))


def service_type(code: str) -> dict[str, Any]:
    return concept(SERVICE_TYPE, code, SERVICE_TYPE_DISPLAYS.get(code))


def snomed(code: str) -> dict[str, Any]:
    return concept(SNOMED, code, SNOMED_DISPLAYS.get(code))


def identifier_system(resource_type: str, base: str = DIRECTORY_IDENTIFIER_BASE) -> str:
    """`<base>/healthcare-service` and the like: one identifier system per type and source."""
    kebab = "".join(f"-{c.lower()}" if c.isupper() else c for c in resource_type).lstrip("-")
    return f"{base}/{kebab}"
