"""HL7 v2 tables and the FHIR R4 codes they map to, as plain dicts.

Each map names its source: a ConceptMap of the HL7 V2-to-FHIR IG (hl7.fhir.uv.v2mappings 1.0.0,
"Table HL7nnnn to ..." and the mapping spreadsheets under `mappings/codesystems` it is built
from), or, where the IG gives no map, the v2 table itself (HL7 v2.5.1 Appendix A / THO
`http://terminology.hl7.org/CodeSystem/v2-nnnn`). Codes a map leaves out are left out here too:
callers keep the v2 code under its v2 system instead of guessing a FHIR one.
"""

from __future__ import annotations

from typing import Final

#: A Coding as (system, code, display).
Code = tuple[str, str, str]

# --- code systems --------------------------------------------------------------------------

V2_SYSTEM_PREFIX: Final = "http://terminology.hl7.org/CodeSystem/v2-"
V3_ACT_CODE: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_ROLE_CODE: Final = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
V3_MARITAL_STATUS: Final = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
V3_NULL_FLAVOR: Final = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
V3_PARTICIPATION_TYPE: Final = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
V3_OBSERVATION_INTERPRETATION: Final = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
DIAGNOSIS_ROLE: Final = "http://terminology.hl7.org/CodeSystem/diagnosis-role"
CONDITION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_CLINICAL: Final = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VER_STATUS: Final = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CDCREC: Final = "urn:oid:2.16.840.1.113883.6.238"  # CDC Race & Ethnicity (US Core)
UCUM: Final = "http://unitsofmeasure.org"
US_SSN: Final = "http://hl7.org/fhir/sid/us-ssn"
US_NPI: Final = "http://hl7.org/fhir/sid/us-npi"

#: Extensions (R4 core, US Core 3.1+).
PATIENT_BIRTH_TIME: Final = "http://hl7.org/fhir/StructureDefinition/patient-birthTime"
US_CORE_RACE: Final = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
US_CORE_ETHNICITY: Final = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
#: PV2-8/PV2-9 (IG segment map PV2[Encounter]): R5 elements carried into R4 as extensions.
ENCOUNTER_PLANNED_START: Final = (
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedStartDate"
)
ENCOUNTER_PLANNED_END: Final = (
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedEndDate"
)


def v2_system(table: str) -> str:
    """The THO code system of a v2 table: "203", "0203" and "HL70203" all give
    http://terminology.hl7.org/CodeSystem/v2-0203."""
    number = table[3:] if table[:3].upper() == "HL7" else table
    return V2_SYSTEM_PREFIX + number.zfill(4)


# --- 0396 coding systems -> FHIR system URIs -------------------------------------------------

#: HL7 table 0396 (Coding System) names as senders write them in CWE-3/6 -> Coding.system
#: (FHIR R4 terminologies-systems.html; THO external code systems). "I10" is written for
#: ICD-10-CM by US senders (v2.7 added "I10C"), so both read as ICD-10-CM. Local systems
#: ("L", "99zzz", "LOCAL") are None: the code is kept without a known system.
CODING_SYSTEMS: Final[dict[str, str | None]] = {
    "I10": "http://hl7.org/fhir/sid/icd-10-cm",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "I10P": "http://www.cms.gov/Medicare/Coding/ICD10",
    "I9": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9CM": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9CDX": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9CP": "http://hl7.org/fhir/sid/icd-9-cm",
    "ICD9": "http://hl7.org/fhir/sid/icd-9-cm",
    "LN": "http://loinc.org",
    "LOINC": "http://loinc.org",
    "SCT": "http://snomed.info/sct",
    "SNM": "http://snomed.info/sct",
    "SNOMED": "http://snomed.info/sct",
    "SNOMEDCT": "http://snomed.info/sct",
    "UCUM": UCUM,
    "CPT": "http://www.ama-assn.org/go/cpt",
    "C4": "http://www.ama-assn.org/go/cpt",
    "C5": "http://www.ama-assn.org/go/cpt",
    "HCPCS": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    "HPC": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "RXN": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "CVX": "http://hl7.org/fhir/sid/cvx",
    "MVX": "http://hl7.org/fhir/sid/mvx",
    "CDCREC": CDCREC,
    "ISO3166": "urn:iso:std:iso:3166",
    "ISO3166_1": "urn:iso:std:iso:3166",
    "L": None,
    "LOCAL": None,
}


def system_for(name: str) -> str | None:
    """Coding.system for a CWE coding-system name (table 0396), or None when it is local or
    unknown. "HL7nnnn" names a v2 table; "99zzz" is a locally defined system (table 0396)."""
    if not name:
        return None
    upper = name.upper()
    if upper in CODING_SYSTEMS:
        return CODING_SYSTEMS[upper]
    if upper[:3] == "HL7" and len(upper) == 7 and upper[3:].isdigit():
        return v2_system(upper[3:])
    if "://" in name or name.startswith("urn:"):
        return name
    return None


# --- patient administration -----------------------------------------------------------------

#: Table 0001 Administrative Sex -> administrative-gender (IG ConceptMap "Table HL70001 to
#: Administrative Gender": A ambiguous and N not applicable are "other").
ADMINISTRATIVE_SEX: Final = {
    "F": "female",
    "M": "male",
    "O": "other",
    "U": "unknown",
    "A": "other",
    "N": "other",
}

#: Table 0004 Patient Class -> Encounter.class (IG ConceptMap "Table HL70004 to V3 ActCode"):
#: the codes ActCode has no concept for stay v2-0004 codes, as the IG says.
PATIENT_CLASS: Final[dict[str, Code]] = {
    "E": (V3_ACT_CODE, "EMER", "emergency"),
    "I": (V3_ACT_CODE, "IMP", "inpatient encounter"),
    "O": (V3_ACT_CODE, "AMB", "ambulatory"),
    "P": (V3_ACT_CODE, "PRENC", "pre-admission"),
    "R": (v2_system("0004"), "R", "Recurring patient"),
    "B": (v2_system("0004"), "B", "Obstetrics"),
    "C": (v2_system("0004"), "C", "Commercial Account"),
    "N": (v2_system("0004"), "N", "Not Applicable"),
    "U": (v2_system("0004"), "U", "Unknown"),
}

#: Table 0004 -> Encounter.status when PV1-45 is empty (IG ConceptMap "Table HL70004 to
#: Encounter Status", used by the PV1[Encounter] segment map).
PATIENT_CLASS_STATUS: Final = {
    "E": "in-progress",
    "I": "in-progress",
    "O": "in-progress",
    "P": "planned",
    "R": "in-progress",
    "B": "in-progress",
    "C": "in-progress",
    "N": "in-progress",
    "U": "unknown",
}

#: Table 0003 Event Type -> Encounter.status (IG ConceptMap "Event[EncounterStatus]"), except:
#: A04 is in-progress, not the IG's planned, because an A04 says the patient has arrived
#: (v2.5.1 3.3.4: registered for an ED or outpatient visit that has begun), and A08 (IG:
#: unknown, "the transaction does not convey the status") is left out so the PV1 segment
#: rule decides (PV1-45 -> finished, else table 0004 above).
ENCOUNTER_STATUS_BY_EVENT: Final = {
    "A01": "in-progress",
    "A02": "in-progress",
    "A03": "finished",
    "A04": "in-progress",
    "A05": "planned",
    "A11": "cancelled",
    "A13": "in-progress",
}

#: Table 0002 Marital Status -> v3-MaritalStatus (IG ConceptMap "Table HL70002 to Marital
#: Status"); N annulled, O other, T unreported have no target and stay v2-0002 codes.
MARITAL_STATUS: Final[dict[str, Code]] = {
    "A": (V3_MARITAL_STATUS, "L", "Legally Separated"),
    "D": (V3_MARITAL_STATUS, "D", "Divorced"),
    "M": (V3_MARITAL_STATUS, "M", "Married"),
    "S": (V3_MARITAL_STATUS, "S", "Never Married"),
    "W": (V3_MARITAL_STATUS, "W", "Widowed"),
    "C": (V3_MARITAL_STATUS, "C", "Common Law"),
    "G": (V3_MARITAL_STATUS, "T", "Domestic partner"),
    "P": (V3_MARITAL_STATUS, "T", "Domestic partner"),
    "R": (V3_MARITAL_STATUS, "T", "Domestic partner"),
    "E": (V3_MARITAL_STATUS, "L", "Legally Separated"),
    "I": (V3_MARITAL_STATUS, "I", "Interlocutory"),
    "B": (V3_MARITAL_STATUS, "U", "unmarried"),
    "U": (V3_NULL_FLAVOR, "UNK", "unknown"),
}

#: Table 0002 Marital Status, v2.5.1 values (for the codes MARITAL_STATUS does not map).
TABLE_0002: Final = {
    "A": "Separated",
    "D": "Divorced",
    "M": "Married",
    "S": "Single",
    "W": "Widowed",
    "C": "Common law",
    "G": "Living together",
    "P": "Domestic partner",
    "R": "Registered domestic partner",
    "E": "Legally Separated",
    "N": "Annulled",
    "I": "Interlocutory",
    "B": "Unmarried",
    "U": "Unknown",
    "O": "Other",
    "T": "Unreported",
}

#: Table 0063 Relationship, v2.5.1 values.
TABLE_0063: Final = {
    "SEL": "Self",
    "SPO": "Spouse",
    "DOM": "Life partner",
    "CHD": "Child",
    "GCH": "Grandchild",
    "NCH": "Natural child",
    "SCH": "Stepchild",
    "FCH": "Foster child",
    "DEP": "Handicapped dependent",
    "WRD": "Ward of court",
    "PAR": "Parent",
    "MTH": "Mother",
    "FTH": "Father",
    "CGV": "Care giver",
    "GRD": "Guardian",
    "GRP": "Grandparent",
    "EXF": "Extended family",
    "SIB": "Sibling",
    "BRO": "Brother",
    "SIS": "Sister",
    "FND": "Friend",
    "OAD": "Other adult",
    "EME": "Employee",
    "EMR": "Employer",
    "ASC": "Associate",
    "EMC": "Emergency contact",
    "OWN": "Owner",
    "TRA": "Trainer",
    "MGR": "Manager",
    "NON": "None",
    "UNK": "Unknown",
    "OTH": "Other",
}

#: Table 0131 Contact Role (NK1-7), v2.5.1 values.
TABLE_0131: Final = {
    "C": "Emergency Contact",
    "E": "Employer",
    "F": "Federal Agency",
    "I": "Insurance Company",
    "N": "Next-of-Kin",
    "S": "State Agency",
    "O": "Other",
    "U": "Unknown",
}

#: Table 0063 -> RelatedPerson/Patient.contact relationship (IG ConceptMap "Table HL70063 to
#: Relationship"): v3-RoleCode where it has the person, else the v2-0131 contact role.
RELATIONSHIP: Final[dict[str, Code]] = {
    "SEL": (V3_ROLE_CODE, "ONESELF", "self"),
    "SPO": (V3_ROLE_CODE, "SPS", "spouse"),
    "DOM": (V3_ROLE_CODE, "SIGOTHR", "significant other"),
    "CHD": (V3_ROLE_CODE, "CHILD", "child"),
    "GCH": (V3_ROLE_CODE, "GRNDCHILD", "grandchild"),
    "NCH": (V3_ROLE_CODE, "NCHILD", "natural child"),
    "SCH": (V3_ROLE_CODE, "STPCHLD", "step child"),
    "FCH": (V3_ROLE_CODE, "CHLDFOST", "foster child"),
    "PAR": (V3_ROLE_CODE, "PRN", "parent"),
    "MTH": (V3_ROLE_CODE, "MTH", "mother"),
    "FTH": (V3_ROLE_CODE, "FTH", "father"),
    "GRP": (V3_ROLE_CODE, "GRPRN", "grandparent"),
    "EXF": (V3_ROLE_CODE, "EXT", "extended family member"),
    "SIB": (V3_ROLE_CODE, "SIB", "sibling"),
    "BRO": (V3_ROLE_CODE, "BRO", "brother"),
    "SIS": (V3_ROLE_CODE, "SIS", "sister"),
    "FND": (V3_ROLE_CODE, "FRND", "unrelated friend"),
    "EMR": (v2_system("0131"), "E", "Employer"),
    "EMC": (v2_system("0131"), "C", "Emergency Contact"),
    "UNK": (v2_system("0131"), "U", "Unknown"),
    "OTH": (v2_system("0131"), "O", "Other"),
}

#: Table 0200 Name Type -> HumanName.use (IG ConceptMap "Table HL70200 to Name Use").
NAME_USE: Final = {
    "BAD": "old",
    "D": "usual",
    "L": "official",
    "M": "maiden",
    "MSK": "anonymous",
    "N": "nickname",
    "NAV": "temp",
    "R": "official",
    "TEMP": "temp",
}

#: Table 0190 Address Type -> Address.use (IG ConceptMap "Table HL70190 to Address Use").
ADDRESS_USE: Final = {
    "BA": "old",
    "BI": "billing",
    "C": "temp",
    "B": "work",
    "H": "home",
    "O": "work",
}

#: Table 0190 Address Type -> Address.type (IG ConceptMap "Table HL70190 to Address Type").
ADDRESS_TYPE: Final = {
    "M": "postal",
    "SH": "postal",
}

#: Table 0201 Telecommunication Use Code -> ContactPoint.use (IG ConceptMap "Table HL70201 to
#: Contact Point Use").
TELECOM_USE: Final = {
    "PRN": "home",
    "WPN": "work",
    "PRS": "mobile",
}

#: Table 0202 Telecommunication Equipment Type -> (ContactPoint.system, ContactPoint.use or
#: None) (IG ConceptMap "Table HL70202 to Contact Point System": CP is a phone whose use is
#: "mobile").
TELECOM_EQUIPMENT: Final[dict[str, tuple[str, str | None]]] = {
    "PH": ("phone", None),
    "FX": ("fax", None),
    "MD": ("other", None),
    "CP": ("phone", "mobile"),
    "SAT": ("other", None),
    "BP": ("pager", None),
    "INTERNET": ("email", None),
    "X.400": ("email", None),
    "TDD": ("other", None),
    "TTY": ("other", None),
}

#: Table 0203 Identifier Type (v2.8.2; THO v2-0203), the codes CareBridge is likely to meet.
IDENTIFIER_TYPE: Final = {
    "AM": "American Express",
    "AN": "Account number",
    "ANC": "Account number Creditor",
    "AND": "Account number debitor",
    "ANON": "Anonymous identifier",
    "ANT": "Temporary Account Number",
    "APRN": "Advanced Practice Registered Nurse number",
    "BA": "Bank Account Number",
    "BC": "Bank Card Number",
    "BR": "Birth registry number",
    "BRN": "Breed Registry Number",
    "CC": "Cost Center number",
    "CY": "County number",
    "DDS": "Dentist license number",
    "DEA": "Drug Enforcement Administration registration number",
    "DFN": "Drug Furnishing or prescriptive authority Number",
    "DL": "Driver's license number",
    "DN": "Doctor number",
    "DO": "Osteopathic License number",
    "DPM": "Podiatrist license number",
    "DR": "Donor Registration Number",
    "EI": "Employee number",
    "EN": "Employer number",
    "FI": "Facility ID",
    "GI": "Guarantor internal identifier",
    "GL": "General ledger number",
    "GN": "Guarantor external identifier",
    "HC": "Health Card Number",
    "IND": "Indigenous/Aboriginal",
    "JHN": "Jurisdictional health number (Canada)",
    "LI": "Labor and industries number",
    "LN": "License number",
    "LR": "Local Registry ID",
    "MA": "Patient Medicaid number",
    "MB": "Member Number",
    "MC": "Patient's Medicare number",
    "MCD": "Practitioner Medicaid number",
    "MCN": "Microchip Number",
    "MCR": "Practitioner Medicare number",
    "MD": "Medical License number",
    "MI": "Military ID number",
    "MR": "Medical record number",
    "MRT": "Temporary Medical Record Number",
    "NE": "National employer identifier",
    "NH": "National Health Plan Identifier",
    "NI": "National unique individual identifier",
    "NII": "National Insurance Organization Identifier",
    "NIIP": "National Insurance Payor Identifier (Payor)",
    "NP": "Nurse practitioner number",
    "NPI": "National provider identifier",
    "OD": "Optometrist license number",
    "PA": "Physician Assistant number",
    "PCN": "Penitentiary/correctional institution Number",
    "PE": "Living Subject Enterprise Number",
    "PEN": "Pension Number",
    "PI": "Patient internal identifier",
    "PN": "Person number",
    "PNT": "Temporary Living Subject Number",
    "PPN": "Passport number",
    "PRC": "Permanent Resident Card Number",
    "PRN": "Provider number",
    "PT": "Patient external identifier",
    "QA": "QA number",
    "RI": "Resource identifier",
    "RN": "Registered Nurse Number",
    "RPH": "Pharmacist license number",
    "RR": "Railroad Retirement number",
    "RRI": "Regional registry ID",
    "SB": "Social Beneficiary Identifier",
    "SL": "State license",
    "SN": "Subscriber Number",
    "SR": "State registry ID",
    "SS": "Social Security number",
    "TAX": "Tax ID number",
    "TN": "Treaty Number/ (Canada)",
    "U": "Unspecified identifier",
    "UPIN": "Medicare/CMS (formerly HCFA)'s Universal Physician Identification numbers",
    "VN": "Visit number",
    "WC": "WIC identifier",
    "WCN": "Workers' Comp Number",
    "XX": "Organization identifier",
}

#: Assigning authorities (HD namespace id or universal id) whose identifiers have a system
#: FHIR names (R4 identifier-registry): the US Social Security Administration and NPPES.
KNOWN_AUTHORITIES: Final = {
    "SSA": US_SSN,
    "USSSA": US_SSN,
    "2.16.840.1.113883.4.1": US_SSN,
    "NPI": US_NPI,
    "2.16.840.1.113883.4.6": US_NPI,
}

#: Identifier types whose system is fixed when no assigning authority is given
#: (IG segment map PID[Patient]: PID-19 SSN -> us-ssn; XCN-13 NPI -> us-npi).
SYSTEM_BY_IDENTIFIER_TYPE: Final = {
    "SS": US_SSN,
    "NPI": US_NPI,
}

#: Table 0136 Yes/No Indicator.
YES_NO: Final = {"Y": True, "N": False}

#: Table 0005 Race (CDC Race & Ethnicity codes, as HL7 suggests). The OMB minimum categories
#: go to the US Core race extension's ombCategory, other CDCREC codes to its "detailed".
OMB_RACE: Final = {
    "1002-5": "American Indian or Alaska Native",
    "2028-9": "Asian",
    "2054-5": "Black or African American",
    "2076-8": "Native Hawaiian or Other Pacific Islander",
    "2106-3": "White",
}

#: Table 0189 Ethnic Group (v2.5.1 H/N/U, and the CDCREC codes later versions use) ->
#: (system, code, display) of the US Core ethnicity extension's ombCategory.
ETHNIC_GROUP: Final[dict[str, Code]] = {
    "H": (CDCREC, "2135-2", "Hispanic or Latino"),
    "N": (CDCREC, "2186-5", "Not Hispanic or Latino"),
    "U": (V3_NULL_FLAVOR, "UNK", "Unknown"),
    "2135-2": (CDCREC, "2135-2", "Hispanic or Latino"),
    "2186-5": (CDCREC, "2186-5", "Not Hispanic or Latino"),
}

# --- visits ---------------------------------------------------------------------------------

#: Table 0007 Admission Type (IG ConceptMap "AdmissionType": each code stays a v2-0007 code).
ADMISSION_TYPE: Final = {
    "A": "Accident",
    "E": "Emergency",
    "L": "Labor and Delivery",
    "R": "Routine",
    "N": "Newborn (Birth in healthcare facility)",
    "U": "Urgent",
    "C": "Elective",
}

#: Table 0023 Admit Source, v2.5.1 suggested values (the UB-92 source of admission). The IG
#: gives no vocabulary map ("Table 0023 doesn't have any suggested values" in v2.8), so the
#: codes stay v2-0023 codes.
ADMIT_SOURCE: Final = {
    "1": "Physician referral",
    "2": "Clinic referral",
    "3": "HMO referral",
    "4": "Transfer from a hospital",
    "5": "Transfer from a skilled nursing facility",
    "6": "Transfer from another health care facility",
    "7": "Emergency room",
    "8": "Court/law enforcement",
    "9": "Information not available",
}

#: Table 0069 Hospital Service, v2.5.1 suggested values (IG: "HospitalService", kept as v2).
HOSPITAL_SERVICE: Final = {
    "CAR": "Cardiac Service",
    "MED": "Medical Service",
    "PUL": "Pulmonary Service",
    "SUR": "Surgical Service",
    "URO": "Urology Service",
}

#: Table 0092 Re-admission Indicator (IG: "ReadmissionIndicator", kept as v2).
READMISSION: Final = {"R": "Re-admission"}

#: Table 0112 Discharge Disposition, v2.5.1 suggested values (the UB-92 patient status). The
#: IG's ConceptMap "DischargeDisposition" has no v2 source codes, so they stay v2-0112 codes.
DISCHARGE_DISPOSITION: Final = {
    "01": "Discharged to home or self care (routine discharge)",
    "02": "Discharged/transferred to another short term general hospital for inpatient care",
    "03": "Discharged/transferred to skilled nursing facility (SNF)",
    "04": "Discharged/transferred to an intermediate care facility (ICF)",
    "05": "Discharged/transferred to another type of institution for inpatient care or "
    "referred for outpatient services to another institution",
    "06": "Discharged/transferred to home under care of organized home health service organization",
    "07": "Left against medical advice or discontinued care",
    "08": "Discharged/transferred to home under care of Home IV provider",
    "09": "Admitted as an inpatient to this hospital",
    "20": "Expired (i.e. dead)",
    "30": "Still patient or expected to return for outpatient services (i.e. still a patient)",
    "40": "Expired (i.e. died) at home",
    "41": "Expired (i.e. died) in a medical facility; e.g., hospital, SNF, ICF, or free standing hospice",
    "42": "Expired (i.e. died) - place unknown",
}

#: PV1 doctors -> Encounter.participant.type (IG segment map PV1[Encounter]):
#: field -> (v3-ParticipationType code, display).
PARTICIPANT_TYPE: Final[dict[int, tuple[str, str]]] = {
    7: ("ATND", "attender"),
    8: ("REF", "referrer"),
    9: ("CON", "consultant"),
    17: ("ADM", "admitter"),
    52: ("PART", "Participation"),
}

# --- diagnoses ------------------------------------------------------------------------------

#: Table 0052 Diagnosis Type, v2.5.1 values.
DIAGNOSIS_TYPE: Final = {"A": "Admitting", "W": "Working", "F": "Final"}

#: Table 0052 -> Encounter.diagnosis.use (IG ConceptMap "DiagnosisType" maps A to AD). F -> DD
#: is CareBridge's: a final diagnosis is the one the stay ends with (the IG leaves F and W
#: unmapped; the v2-0052 coding is kept beside it either way).
DIAGNOSIS_ROLE_BY_TYPE: Final[dict[str, Code]] = {
    "A": (DIAGNOSIS_ROLE, "AD", "Admission diagnosis"),
    "F": (DIAGNOSIS_ROLE, "DD", "Discharge diagnosis"),
}

#: Table 0052 -> Condition.verificationStatus (CareBridge's reading; the IG does not map
#: DG1-6 onto the Condition): a final diagnosis is confirmed, admitting and working ones are
#: provisional.
VERIFICATION_BY_DIAGNOSIS_TYPE: Final = {"F": "confirmed", "A": "provisional", "W": "provisional"}

#: Table 0359 Diagnosis Priority (THO v2-0359): 1 is the primary (principal) diagnosis, which
#: HEDIS FUH reads as the principal diagnosis of the stay; 0 is "not included in ranking".
DIAGNOSIS_PRIORITY: Final = {
    "0": "Not included in diagnosis ranking",
    "1": "The primary diagnosis",
    "2": "For secondary diagnosis",
}

# --- results, orders, appointments (for the ORU/ORM/SIU mappers) -----------------------------

#: Table 0085 Observation Result Status -> Observation.status (IG ConceptMap
#: "ObservationResultStatusCodesInterpretation"); B, I, N, O, R, S, U, V have no target.
OBSERVATION_STATUS: Final = {
    "A": "amended",
    "C": "corrected",
    "D": "entered-in-error",
    "F": "final",
    "P": "preliminary",
    "W": "entered-in-error",
    "X": "cancelled",
}

#: Table 0078 Interpretation Codes -> v3-ObservationInterpretation (IG ConceptMap
#: "InterpretationCodes"; the v2 code is the v3 code for every mapped concept).
INTERPRETATION: Final = {
    "<": "Off scale low",
    ">": "Off scale high",
    "A": "Abnormal",
    "AA": "Critical abnormal",
    "B": "Better",
    "CAR": "Carrier",
    "D": "Significant change down",
    "DET": "Detected",
    "E": "Equivocal",
    "EX": "outside threshold",
    "EXP": "Expected",
    "H": "High",
    "HH": "Critical high",
    "HU": "Significantly high",
    "I": "Intermediate",
    "IE": "Insufficient evidence",
    "IND": "Indeterminate",
    "L": "Low",
    "LL": "Critical low",
    "LU": "Significantly low",
    "MS": "moderately susceptible",
    "N": "Normal",
    "NCL": "No CLSI defined breakpoint",
    "ND": "Not detected",
    "NEG": "Negative",
    "NR": "Non-reactive",
    "NS": "Non-susceptible",
    "POS": "Positive",
    "R": "Resistant",
    "RR": "Reactive",
    "S": "Susceptible",
    "SDD": "Susceptible-dose dependent",
    "SYN-R": "Synergy - resistant",
    "SYN-S": "Synergy - susceptible",
    "U": "Significant change up",
    "UNE": "Unexpected",
    "VS": "very susceptible",
    "W": "Worse",
    "WR": "Weakly reactive",
}

#: Table 0123 Result Status -> DiagnosticReport.status (IG ConceptMap "ResultStatus[Non-
#: Queries]"); A, M, N, Y, Z have no target.
RESULT_STATUS: Final = {
    "O": "registered",
    "I": "registered",
    "S": "registered",
    "P": "preliminary",
    "C": "corrected",
    "R": "partial",
    "F": "final",
    "X": "cancelled",
}

#: Table 0038 Order Status -> request-status (IG ConceptMap "OrderStatus").
ORDER_STATUS: Final = {
    "CA": "revoked",
    "CM": "completed",
    "DC": "revoked",
    "ER": "entered-in-error",
    "HD": "on-hold",
    "IP": "active",
    "RP": "revoked",
    "SC": "active",
}

#: Table 0119 Order Control -> request-status (IG ConceptMap "OrderControlCode[ServiceRequest.
#: status]"; CA, a request to cancel, leaves the order active until the filler answers CR).
ORDER_CONTROL_STATUS: Final = {
    "AF": "active",
    "CA": "active",
    "CR": "revoked",
    "DC": "revoked",
    "DF": "revoked",
    "DR": "revoked",
    "FU": "completed",
    "HD": "active",
    "HR": "on-hold",
    "NW": "active",
    "OC": "revoked",
    "OD": "revoked",
    "OH": "on-hold",
    "OK": "active",
    "PR": "active",
    "PY": "active",
    "RL": "active",
    "RO": "active",
    "RQ": "active",
}

#: Table 0278 Filler Status Codes -> appointmentstatus (IG ConceptMap "FillerStatusCodes
#: [Appointment]"); Discontinued, Blocked and Overbook have no target.
FILLER_STATUS: Final = {
    "PENDING": "pending",
    "WAITLIST": "waitlist",
    "BOOKED": "booked",
    "STARTED": "checked-in",
    "COMPLETE": "fulfilled",
    "CANCELLED": "cancelled",
    "DELETED": "entered-in-error",
    "NOSHOW": "noshow",
}

# --- units ----------------------------------------------------------------------------------

#: Units that are valid UCUM as written, for a CWE unit sent without a coding system.
UCUM_UNITS: Final = frozenset(
    {
        "%",
        "/min",
        "/h",
        "a",
        "mo",
        "wk",
        "d",
        "h",
        "min",
        "s",
        "ms",
        "cm",
        "m",
        "mm",
        "kg",
        "g",
        "mg",
        "ug",
        "ng",
        "L",
        "mL",
        "dL",
        "uL",
        "mg/dL",
        "g/dL",
        "g/L",
        "mg/L",
        "ug/L",
        "ug/dL",
        "ng/mL",
        "pg/mL",
        "mmol/L",
        "umol/L",
        "nmol/L",
        "meq/L",
        "mol/L",
        "U/L",
        "[IU]/L",
        "mm[Hg]",
        "Cel",
        "[degF]",
        "kg/m2",
        "[in_i]",
        "[lb_av]",
        "10*3/uL",
        "10*6/uL",
        "fL",
        "pg",
        "mL/min",
        "{score}",
        "1",
    }
)

#: Table number -> the codes of that table CareBridge knows, with their displays: a coded
#: value without a coding system whose code is in its field's table is given the v2 system.
V2_TABLE_CODES: Final[dict[str, dict[str, str]]] = {
    "0002": TABLE_0002,
    "0007": ADMISSION_TYPE,
    "0023": ADMIT_SOURCE,
    "0052": DIAGNOSIS_TYPE,
    "0063": TABLE_0063,
    "0069": HOSPITAL_SERVICE,
    "0092": READMISSION,
    "0112": DISCHARGE_DISPOSITION,
    "0131": TABLE_0131,
    "0203": IDENTIFIER_TYPE,
}
