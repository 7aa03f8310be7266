"""The codes and URLs of intake screening, as named constants (STYLE.md: codes live in one module).

Marks, as in DOMAIN.md: [V] checked against a primary or authoritative source, [S] a secondary
public source, [K] background knowledge not yet checked. LOINC codes © Regenstrief Institute,
used under the LOINC licence (https://loinc.org/license).
"""

from __future__ import annotations

import uuid

# --- Code systems, extensions, our own canonical base -------------------------------------------

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SCORE_UNIT = "{score}"  # [V] LOINC example unit for 44261-6 (cdn.loinc.org/44261-6)
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
# [S] US Core category system, code "sdoh" (ONC g10 test kit scopes use us-core-category|sdoh)
US_CORE_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/us-core-category"
# [V] DOMAIN.md §1.8, SDOHCCCodeSystemTemporaryCodes.fsh
SDOHCC_CATEGORY = "http://hl7.org/fhir/us/sdoh-clinicalcare/CodeSystem/SDOHCC-CodeSystemTemporaryCodes"
OBSERVATION_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
ORDINAL_VALUE = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
# R5 renamed the item score extension; accept it on public Questionnaires.
ITEM_WEIGHT = "http://hl7.org/fhir/StructureDefinition/itemWeight"
QUESTIONNAIRE_UNIT = "http://hl7.org/fhir/StructureDefinition/questionnaire-unit"
SDC_QUESTIONNAIRE_PROFILE = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire"
# [S] R4 flag-category (terminology.hl7.org) has 10 codes, "safety" among them.
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
# [V] R4 valueset-flag-priority.xml: the R4 system is http://hl7.org/fhir/flag-priority-code
# (not a terminology.hl7.org URL); the extension is http://hl7.org/fhir/StructureDefinition/flag-priority.
FLAG_PRIORITY_CODES = "http://hl7.org/fhir/flag-priority-code"
FLAG_PRIORITY_EXTENSION = "http://hl7.org/fhir/StructureDefinition/flag-priority"
# [V] R4 extension-flag-detail.json: Reference(Any), "the record that provides supporting information".
FLAG_DETAIL_EXTENSION = "http://hl7.org/fhir/StructureDefinition/flag-detail"

CAREBRIDGE_FHIR_BASE = "http://carebridge.example/fhir"
QUESTIONNAIRE_BASE = f"{CAREBRIDGE_FHIR_BASE}/Questionnaire"
# Local code systems where no published one fits (GAD-7 bands, safety signals).
SEVERITY_BAND_SYSTEM = f"{CAREBRIDGE_FHIR_BASE}/CodeSystem/screening-severity"
SCREENING_SIGNAL_SYSTEM = f"{CAREBRIDGE_FHIR_BASE}/CodeSystem/screening-signal"
SCREENING_IDENTIFIER_SYSTEM = "urn:carebridge:screening"
# uuid5 namespace of the Observations and Flags derived from a response (ids stable on re-scoring)
SCREENING_ID_NAMESPACE = uuid.UUID("7243da09-79cd-4aaa-9d3b-60719590f8ac")

# --- PHQ-9 / PHQ-2 [V] lforms phq9.json, US Core phq-9 example, loinc.org/44261-6, 55757-9 ----------

PHQ9_PANEL = "44249-1"
PHQ9_TOTAL = "44261-6"
PHQ_INTEREST = "44250-9"
PHQ_DOWN_HOPELESS = "44255-8"
PHQ_SLEEP = "44259-0"
PHQ_TIRED = "44254-1"
PHQ_APPETITE = "44251-7"
PHQ_FEELING_BAD = "44258-2"
PHQ_CONCENTRATING = "44252-5"
PHQ_SLOW_FIDGETY = "44253-3"
PHQ9_ITEM9_SELF_HARM = "44260-8"
PHQ9_DIFFICULTY = "69722-7"  # not scored (LOINC 44261-6 term description)
PHQ2_PANEL = "55757-9"
PHQ2_TOTAL = "55758-7"

# LL358-3, 0-3 [V] loinc.org/LL358-3
LA_NOT_AT_ALL = "LA6568-5"
LA_SEVERAL_DAYS = "LA6569-3"
LA_MORE_THAN_HALF_THE_DAYS = "LA6570-1"
LA_NEARLY_EVERY_DAY = "LA6571-9"
# PHQ-9 difficulty answers [V] lforms phq9.json
LA_NOT_DIFFICULT = "LA6572-7"
LA_SOMEWHAT_DIFFICULT = "LA6573-5"
LA_VERY_DIFFICULT = "LA6575-0"
LA_EXTREMELY_DIFFICULT = "LA6574-3"

# PHQ-9 severity, answer list LL382-3 of the deprecated 44262-4 [V] loinc.org/LL382-3
LA_PHQ9_NONE = "LA6708-7"
LA_PHQ9_MILD = "LA6709-5"
LA_PHQ9_MODERATE = "LA6710-3"
LA_PHQ9_MODERATELY_SEVERE = "LA6711-1"
LA_PHQ9_SEVERE = "LA6712-9"

# --- GAD-7 [V] loinc.org/LL358-3 (item list), uwcirg GAD7 Questionnaire --------------------------

GAD7_PANEL = "69737-5"
GAD7_TOTAL = "70274-6"
GAD_NERVOUS = "69725-0"
GAD_CANNOT_STOP_WORRYING = "68509-9"
GAD_WORRYING_TOO_MUCH = "69733-4"
GAD_TROUBLE_RELAXING = "69734-2"
GAD_RESTLESS = "69735-9"
GAD_IRRITABLE = "69689-8"
GAD_AFRAID = "69736-7"

# --- C-SSRS screener, recent -------------------------------------------------------------------
# Items and LA9194-7 [V] HL7 US Behavioral Health Profiles IG, QuestionnaireResponse C-SSRS-example-1.
# Panel 93373-9 [S] an LHC-Forms export of the screener (lformsVersion tags) and SPiER data elements.

CSSRS_PANEL = "93373-9"
CSSRS_RISK_LEVEL = "93374-7"
CSSRS_WISH_DEAD = "93246-7"
CSSRS_SUICIDAL_THOUGHTS = "93247-5"
CSSRS_METHOD = "93248-3"
CSSRS_INTENT = "93249-1"
CSSRS_PLAN_AND_INTENT = "93250-9"
CSSRS_BEHAVIOR_EVER = "93267-3"
CSSRS_BEHAVIOR_PAST_3_MONTHS = "93269-9"

LA_YES = "LA33-6"
LA_NO = "LA32-8"
# Answer list LL465-6 of 93374-7. Low [V] BHP IG example. Moderate and High [S]: the same codes in
# two independent public sources (uwcirg ISACC CSSAnswerCategories; SPiER ConceptMap to LL465-6).
LA_RISK_LOW = "LA9194-7"
LA_RISK_MODERATE = "LA6751-7"
LA_RISK_HIGH = "LA9193-9"

# --- AUDIT-C [V] loinc.org/75626-2, cdn.loinc.org/72110-0; US Core AUDIT-C (items 2, 3) -----------

AUDIT_C_PANEL = "72109-2"
AUDIT_C_TOTAL = "75626-2"
AUDIT_FREQUENCY = "68518-0"
AUDIT_TYPICAL_QUANTITY = "68519-8"
AUDIT_SIX_OR_MORE = "68520-6"

# Q1, LL2179-1 [S] several public code files agree (none is LOINC itself)
LA_NEVER = "LA6270-8"
LA_MONTHLY_OR_LESS = "LA18926-8"
LA_2_TO_4_TIMES_A_MONTH = "LA18927-6"
LA_2_TO_3_TIMES_A_WEEK = "LA18928-4"
LA_4_OR_MORE_TIMES_A_WEEK = "LA18929-2"
# Q2 [V] US Core AUDIT-C Questionnaire
LA_1_OR_2 = "LA15694-5"
LA_3_OR_4 = "LA15695-2"
LA_5_OR_6 = "LA18930-0"
LA_7_TO_9 = "LA18931-8"
LA_10_OR_MORE = "LA18932-6"
# Q3 [V] US Core AUDIT-C Questionnaire (Never = LA6270-8)
LA_LESS_THAN_MONTHLY = "LA18933-4"
LA_MONTHLY = "LA18876-5"
LA_WEEKLY = "LA18891-4"
LA_DAILY_OR_ALMOST_DAILY = "LA18934-2"

# --- AHC HRSN core (2018 update), panel 96777-8 -------------------------------------------------
# Item and answer codes [S] NYeC 1115 SHIN-NY HRSN IG v1.4.5 (shinny.org/us/ny/hrsn), which lists
# each AHC question with its LOINC and LA codes and bolds the CMS tool's underlined answers;
# 71802-3 and LL5876-9 [V] cdn.loinc.org/99595-1/panel; HVS answers [V] US Core HVS example.

AHC_HRSN_PANEL = "96777-8"
AHC_LIVING_SITUATION = "71802-3"
AHC_HOUSING_PROBLEMS = "96778-6"
AHC_FOOD_WORRY = "88122-7"
AHC_FOOD_DID_NOT_LAST = "88123-5"
AHC_TRANSPORTATION = "93030-5"
AHC_UTILITIES_SHUT_OFF = "96779-4"
AHC_PHYSICALLY_HURT = "95618-5"
AHC_INSULT = "95617-7"
AHC_THREATEN = "95616-9"
AHC_SCREAM_CURSE = "95615-1"
AHC_SAFETY_TOTAL = "95614-4"

LA_STEADY_PLACE = "LA31993-1"
LA_WORRIED_ABOUT_LOSING_IT = "LA31994-9"
LA_NO_STEADY_PLACE = "LA31995-6"
LA_PESTS = "LA31996-4"
LA_MOLD = "LA28580-1"
LA_LEAD = "LA31997-2"
LA_LACK_OF_HEAT = "LA31998-0"
LA_OVEN_STOVE = "LA31999-8"
LA_SMOKE_DETECTORS = "LA32000-4"
LA_WATER_LEAKS = "LA32001-2"
LA_NONE_OF_THE_ABOVE = "LA9-3"
LA_OFTEN_TRUE = "LA28397-0"
LA_SOMETIMES_TRUE = "LA6729-3"
LA_NEVER_TRUE = "LA28398-8"
LA_ALREADY_SHUT_OFF = "LA32002-0"
# HITS frequency, 1-5 (Never = LA6270-8)
LA_RARELY = "LA10066-1"
LA_SOMETIMES = "LA10082-8"
LA_FAIRLY_OFTEN = "LA16644-9"
LA_FREQUENTLY = "LA6482-9"

# --- Gravity SDOH categories [V] DOMAIN.md §1.8 -----------------------------------------------------

SDOH_HOUSING_INSTABILITY = "housing-instability"
SDOH_HOMELESSNESS = "homelessness"
SDOH_INADEQUATE_HOUSING = "inadequate-housing"
SDOH_FOOD_INSECURITY = "food-insecurity"
SDOH_TRANSPORTATION_INSECURITY = "transportation-insecurity"
SDOH_UTILITY_INSECURITY = "utility-insecurity"
SDOH_INTIMATE_PARTNER_VIOLENCE = "intimate-partner-violence"

SDOH_DISPLAYS = {
    SDOH_HOUSING_INSTABILITY: "Housing Instability",
    SDOH_HOMELESSNESS: "Homelessness",
    SDOH_INADEQUATE_HOUSING: "Inadequate Housing",
    SDOH_FOOD_INSECURITY: "Food Insecurity",
    SDOH_TRANSPORTATION_INSECURITY: "Transportation Insecurity",
    SDOH_UTILITY_INSECURITY: "Utility Insecurity",
    SDOH_INTIMATE_PARTNER_VIOLENCE: "Intimate Partner Violence",
}
