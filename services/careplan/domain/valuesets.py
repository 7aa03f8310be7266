"""Which diagnoses, stays and visits count for post-discharge follow-up and the HEDIS FUH/FUM
measures. One module, so a clinician or a measure analyst can read and check every list.

Sources (DOMAIN.md §2.1, §2.2):
- HEDIS FUH / FUM: "principal diagnosis of mental illness or intentional self-harm"; acute
  inpatient stays count, nonacute ones do not; qualifying follow-up settings are outpatient,
  IOP/PHP, community mental health centre, telehealth, telephone, observation, and others. The
  NCQA value sets ("Mental Illness", "Intentional Self-Harm", "Inpatient Stay", ...) are licensed;
  the code ranges below are the ICD-10-CM chapters and categories they are drawn from, which is
  the rule issue 6 states (F01-F99 and the intentional self-harm codes).
- ICD-10-CM Tabular List (CMS/NCHS, FY2025): chapter 5 "Mental, Behavioral and
  Neurodevelopmental disorders" is F01-F99; "Intentional self-harm" is X71-X83 in chapter 20;
  T14.91 is "Suicide attempt"; in the poisoning categories T36-T65 a 5th or 6th character 2
  means "intentional self-harm" (e.g. T39.012A, T42.4X2A).
- Encounter.class codes are HL7 v3 ActCode (R4 valueset-v3-ActEncounterCode): IMP inpatient,
  ACUTE inpatient acute, NONAC inpatient non-acute, EMER emergency, AMB ambulatory, VR virtual,
  HH home health, OBSENC observation, SS short stay. The HL7 gateway maps PV1-2 onto them
  (services/gateway/hl7/tables.PATIENT_CLASS).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

ICD10CM: Final = "http://hl7.org/fhir/sid/icd-10-cm"
#: ICD-10 (WHO) codes are accepted too: F01-F99 and X71-X83 mean the same there.
ICD10: Final = "http://hl7.org/fhir/sid/icd-10"
ICD10_SYSTEMS: Final = frozenset({ICD10CM, ICD10, "urn:oid:2.16.840.1.113883.6.90", "I10", "ICD10"})
V3_ACT_CODE: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

#: Acute inpatient stays (FUH denominator). IMP is what PV1-2 "I" becomes; ACUTE is its
#: specialisation. A stay whose class is NONAC is nonacute (FUH: a nonacute readmission within
#: 30 days excludes the discharge).
ACUTE_INPATIENT: Final = frozenset({"IMP", "ACUTE"})
NONACUTE_INPATIENT: Final = frozenset({"NONAC"})
EMERGENCY: Final = frozenset({"EMER"})
#: Settings in which a follow-up visit counts (FUH/FUM numerators): outpatient (AMB), telehealth
#: and telephone (VR), home/community (HH), observation (OBSENC), short stay / partial
#: hospitalisation (SS).
FOLLOW_UP_SETTINGS: Final = frozenset({"AMB", "VR", "HH", "OBSENC", "SS"})
#: Encounter statuses that say the visit happened (R4 encounter-status): a registration (A04,
#: in-progress) or a finished visit. planned, cancelled and entered-in-error do not.
VISIT_HAPPENED: Final = frozenset({"arrived", "triaged", "in-progress", "onleave", "finished"})

_F_CHAPTER = re.compile(r"^F(0[1-9]|[1-9][0-9])")
_SELF_HARM_X = re.compile(r"^X(7[1-9]|8[0-3])")
_SELF_HARM_POISONING = re.compile(r"^T(3[6-9]|[45][0-9]|6[0-5])\.[0-9X]{1,2}2")


def _normal(code: str) -> str:
    """ICD-10 codes are written with and without the dot (F32.2, F322): compare with it."""
    code = code.strip().upper()
    if "." not in code and len(code) > 3:
        code = f"{code[:3]}.{code[3:]}"
    return code


def is_mental_illness(code: str) -> bool:
    """ICD-10-CM chapter 5, F01-F99."""
    return bool(_F_CHAPTER.match(_normal(code)))


def is_intentional_self_harm(code: str) -> bool:
    """X71-X83, T14.91 (suicide attempt), and T36-T65 poisonings whose intent character is 2."""
    normal = _normal(code)
    return bool(
        _SELF_HARM_X.match(normal) or normal.startswith("T14.91") or _SELF_HARM_POISONING.match(normal)
    )


def is_mental_health_diagnosis(code: str) -> bool:
    """The FUH/FUM denominator diagnosis: mental illness or intentional self-harm."""
    return is_mental_illness(code) or is_intentional_self_harm(code)


def is_depression(code: str) -> bool:
    """Depression for PHQ-9 re-measurement (CMS160 uses major depression and dysthymia):
    F32 major depressive disorder, single episode; F33 recurrent; F34.1 dysthymia."""
    normal = _normal(code)
    return normal.startswith(("F32", "F33", "F34.1"))


def icd10_codes(concepts: Iterable[Any]) -> list[str]:
    """The ICD-10 codes in CodeableConcepts (other systems are not read)."""
    codes = []
    for concept in concepts:
        if not isinstance(concept, dict):
            continue
        for coding in concept.get("coding") or []:
            if isinstance(coding, dict) and coding.get("system") in ICD10_SYSTEMS and coding.get("code"):
                codes.append(str(coding["code"]))
    return codes


def encounter_class(encounter: dict[str, Any]) -> str | None:
    """Encounter.class code when it is an ActCode (a sender's own class is not read)."""
    klass = encounter.get("class")
    if isinstance(klass, dict) and klass.get("system") in (V3_ACT_CODE, None):
        code = klass.get("code")
        return str(code) if code else None
    return None
