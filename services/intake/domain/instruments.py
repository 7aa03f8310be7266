"""The screening instruments intake scores: items, answer scores, bands, cut-offs and sources.

One table, read by scoring, Observation building, triage and the Questionnaire generator
(services/intake/questionnaires/build.py). Codes come from screening_codes, where each carries
its verification mark ([V] verified, [S] secondary source, [K] unverified).
"""

from __future__ import annotations

from services.intake.domain import screening_codes as c
from services.intake.domain.instrument_model import (
    AnswerOption,
    Band,
    Coding,
    EnableWhen,
    Instrument,
    Item,
)

# --- Cut-offs ----------------------------------------------------------------------------------

PHQ9_FURTHER_EVALUATION = 10  # [S] Arroll 2010: PHQ-9 ≥10, sensitivity 74%, specificity 91%
PHQ9_ITEM9_POSITIVE = 1  # any answer other than "Not at all" (DOMAIN.md §1.2)
PHQ9_ITEM9_ESCALATE = 2  # "more than half the days" or "nearly every day" (DOMAIN.md §1.2)
PHQ2_POSITIVE = 3  # [S] ≥3 suggests depression: give the PHQ-9 (DOMAIN.md §1.3)
GAD7_FURTHER_EVALUATION = 10  # [S] Spitzer 2006: sensitivity 89%, specificity 82%
AUDIT_C_POSITIVE_MEN = 4  # [V] LOINC 75626-2 term description
AUDIT_C_POSITIVE_WOMEN = 3  # [V] idem; also used when sex is unknown (the safer threshold)
AHC_SAFETY_POSITIVE_ABOVE = 10  # [V] CMS core questions: "greater than 10" (i.e. ≥11) is positive

# --- Copyright notes ---------------------------------------------------------------------------

_LOINC_NOTICE = (
    "This material contains content from LOINC (http://loinc.org). LOINC is copyright © Regenstrief "
    "Institute, Inc. and the LOINC Committee, and is available at no cost under the license at "
    "http://loinc.org/license."
)
_PFIZER = (
    "Copyright © Pfizer Inc. All rights reserved. Developed by Drs. Robert L. Spitzer, Janet B.W. "
    "Williams, Kurt Kroenke and colleagues, with an educational grant from Pfizer Inc. No permission "
    "required to reproduce, translate, display or distribute. " + _LOINC_NOTICE
)
_CSSRS = (
    "Columbia-Suicide Severity Rating Scale (C-SSRS) Screener, © The Research Foundation for Mental "
    "Hygiene, Inc. Free for clinical and community use; the wording must not be modified. Obtain the "
    "official text and terms from the Columbia Lighthouse Project. " + _LOINC_NOTICE
)
_AUDIT = "As a WHO-approved instrument, the AUDIT is in the public domain. " + _LOINC_NOTICE
_AHC = (
    "Accountable Health Communities (AHC) Health-Related Social Needs (HRSN) Screening Tool, Centers "
    "for Medicare & Medicaid Services (CMS). Questions are drawn from the sources CMS cites, among "
    "them the Hunger Vital Sign (© Children's HealthWatch) and HITS (Sherin et al. 1998). " + _LOINC_NOTICE
)

# --- Answer lists ------------------------------------------------------------------------------

_FREQUENCY_0_3 = (
    AnswerOption(c.LA_NOT_AT_ALL, "Not at all", 0),
    AnswerOption(c.LA_SEVERAL_DAYS, "Several days", 1),
    AnswerOption(c.LA_MORE_THAN_HALF_THE_DAYS, "More than half the days", 2),
    AnswerOption(c.LA_NEARLY_EVERY_DAY, "Nearly every day", 3),
)
_YES_NO = (AnswerOption(c.LA_YES, "Yes"), AnswerOption(c.LA_NO, "No"))


def _loinc(code: str, display: str) -> Coding:
    return Coding(c.LOINC, code, display)


def _frequency_item(code: str, text: str) -> Item:
    return Item(code, text, _FREQUENCY_0_3)


_PHQ2_ITEMS = (
    _frequency_item(c.PHQ_INTEREST, "Little interest or pleasure in doing things"),
    _frequency_item(c.PHQ_DOWN_HOPELESS, "Feeling down, depressed, or hopeless"),
)

PHQ9 = Instrument(
    key="phq-9",
    name="PHQ9",
    title="Patient Health Questionnaire-9 (PHQ-9)",
    version="1.0.0",
    panel=_loinc(c.PHQ9_PANEL, "PHQ-9 quick depression assessment panel [Reported.PHQ]"),
    total=_loinc(c.PHQ9_TOTAL, "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]"),
    items=(
        *_PHQ2_ITEMS,
        _frequency_item(c.PHQ_SLEEP, "Trouble falling or staying asleep, or sleeping too much"),
        _frequency_item(c.PHQ_TIRED, "Feeling tired or having little energy"),
        _frequency_item(c.PHQ_APPETITE, "Poor appetite or overeating"),
        _frequency_item(
            c.PHQ_FEELING_BAD,
            "Feeling bad about yourself - or that you are a failure or have let yourself or your family down",
        ),
        _frequency_item(
            c.PHQ_CONCENTRATING,
            "Trouble concentrating on things, such as reading the newspaper or watching television",
        ),
        _frequency_item(
            c.PHQ_SLOW_FIDGETY,
            "Moving or speaking so slowly that other people could have noticed. Or the opposite - "
            "being so fidgety or restless that you have been moving around a lot more than usual",
        ),
        _frequency_item(
            c.PHQ9_ITEM9_SELF_HARM,
            "Thoughts that you would be better off dead, or of hurting yourself in some way",
        ),
        Item(
            c.PHQ9_DIFFICULTY,
            "If you checked off any problems, how difficult have these problems made it for you to do "
            "your work, take care of things at home, or get along with other people?",
            (
                AnswerOption(c.LA_NOT_DIFFICULT, "Not difficult at all"),
                AnswerOption(c.LA_SOMEWHAT_DIFFICULT, "Somewhat difficult"),
                AnswerOption(c.LA_VERY_DIFFICULT, "Very difficult"),
                AnswerOption(c.LA_EXTREMELY_DIFFICULT, "Extremely difficult"),
            ),
            scored=False,  # LOINC 44261-6: the total is items 1-9
            required=False,
        ),
    ),
    # LL382-3 uses 0-4 for "None" where the 44261-6 text says 1-4 (DOMAIN.md §1.2); loinc.org
    # renders the answers as "0-4 = None", "5-9 = Mild depression", ...
    bands=(
        Band(0, 4, _loinc(c.LA_PHQ9_NONE, "None")),
        Band(5, 9, _loinc(c.LA_PHQ9_MILD, "Mild depression")),
        Band(10, 14, _loinc(c.LA_PHQ9_MODERATE, "Moderate depression")),
        Band(15, 19, _loinc(c.LA_PHQ9_MODERATELY_SEVERE, "Moderately severe depression")),
        Band(20, 27, _loinc(c.LA_PHQ9_SEVERE, "Severe depression")),
    ),
    positive_at=PHQ9_FURTHER_EVALUATION,
    copyright=_PFIZER,
    sources=(
        "LOINC 44261-6 term description (scoring, bands) and answer list LL382-3",
        "LHNCBC lforms test/data/R4/phq9.json; US Core Questionnaire phq-9-example",
        "Arroll B et al. Ann Fam Med 2010;8:348-53 (cut-off 10)",
    ),
)

PHQ2 = Instrument(
    key="phq-2",
    name="PHQ2",
    title="Patient Health Questionnaire-2 (PHQ-2)",
    version="1.0.0",
    panel=_loinc(c.PHQ2_PANEL, "Patient Health Questionnaire 2 item (PHQ-2) [Reported]"),
    total=_loinc(c.PHQ2_TOTAL, "Patient Health Questionnaire 2 item (PHQ-2) total score [Reported]"),
    items=_PHQ2_ITEMS,
    bands=(),
    positive_at=PHQ2_POSITIVE,
    copyright=_PFIZER,
    sources=(
        "cdn.loinc.org/55757-9",
        "Kroenke K et al. Med Care 2003;41:1284-92; Arroll B et al. Ann Fam Med 2010 (cut-off 3)",
    ),
)

_GAD7_SEVERITY = "GAD-7 anxiety severity"
GAD7 = Instrument(
    key="gad-7",
    name="GAD7",
    title="Generalized Anxiety Disorder-7 (GAD-7)",
    version="1.0.0",
    panel=_loinc(c.GAD7_PANEL, "Generalized anxiety disorder 7 item (GAD-7)"),
    total=_loinc(c.GAD7_TOTAL, "Generalized anxiety disorder 7 item (GAD-7) total score [Reported]"),
    items=(
        _frequency_item(c.GAD_NERVOUS, "Feeling nervous, anxious, or on edge"),
        _frequency_item(c.GAD_CANNOT_STOP_WORRYING, "Not being able to stop or control worrying"),
        _frequency_item(c.GAD_WORRYING_TOO_MUCH, "Worrying too much about different things"),
        _frequency_item(c.GAD_TROUBLE_RELAXING, "Trouble relaxing"),
        _frequency_item(c.GAD_RESTLESS, "Being so restless that it is hard to sit still"),
        _frequency_item(c.GAD_IRRITABLE, "Becoming easily annoyed or irritable"),
        _frequency_item(c.GAD_AFRAID, "Feeling afraid, as if something awful might happen"),
    ),
    # No LOINC answer list for GAD-7 severity: a local system whose codes mirror the HL7 PHR
    # format IG's GAD7Risk codes (noneToMinimal, mild, moderate, severe).
    bands=(
        Band(0, 4, Coding(c.SEVERITY_BAND_SYSTEM, "noneToMinimal", "Minimal anxiety")),
        Band(5, 9, Coding(c.SEVERITY_BAND_SYSTEM, "mild", "Mild anxiety")),
        Band(10, 14, Coding(c.SEVERITY_BAND_SYSTEM, "moderate", "Moderate anxiety")),
        Band(15, 21, Coding(c.SEVERITY_BAND_SYSTEM, "severe", "Severe anxiety")),
    ),
    positive_at=GAD7_FURTHER_EVALUATION,
    copyright=_PFIZER,
    sources=(
        "Spitzer RL et al. Arch Intern Med 2006;166:1092-7 (bands 5/10/15, cut-off 10)",
        "uwcirg asbi-screening-app Questionnaire CIRG-GAD7 (item and answer codes)",
    ),
)

_ASKED_AFTER_THOUGHTS = EnableWhen(c.CSSRS_SUICIDAL_THOUGHTS, c.LA_YES)


def _yes_no(code: str, text: str, enable_when: EnableWhen | None = None) -> Item:
    return Item(code, text, _YES_NO, scored=False, enable_when=enable_when)


CSSRS_SCREENER = Instrument(
    key="cssrs-screener",
    name="CSSRSScreenerRecent",
    title="Columbia-Suicide Severity Rating Scale (C-SSRS) Screener - Recent",
    version="1.0.0",
    panel=_loinc(c.CSSRS_PANEL, "Columbia - suicide severity rating scale screener - recent [C-SSRS]"),
    total=_loinc(c.CSSRS_RISK_LEVEL, "Suicide risk level"),
    # Q1-Q2, then Q3-Q5 only after suicidal thoughts (Q2 yes), then Q6 (behaviour, ever) with its
    # "within the past 3 months" follow-up (DOMAIN.md §1.5).
    items=(
        _yes_no(
            c.CSSRS_WISH_DEAD,
            "Have you wished you were dead or wished you could go to sleep and not wake up?",
        ),
        _yes_no(c.CSSRS_SUICIDAL_THOUGHTS, "Have you actually had any thoughts of killing yourself?"),
        _yes_no(c.CSSRS_METHOD, "Have you been thinking about how you might do this?", _ASKED_AFTER_THOUGHTS),
        _yes_no(
            c.CSSRS_INTENT,
            "Have you had these thoughts and had some intention of acting on them?",
            _ASKED_AFTER_THOUGHTS,
        ),
        _yes_no(
            c.CSSRS_PLAN_AND_INTENT,
            "Have you started to work out or worked out the details of how to kill yourself? Do you "
            "intend to carry out this plan?",
            _ASKED_AFTER_THOUGHTS,
        ),
        _yes_no(
            c.CSSRS_BEHAVIOR_EVER,
            "Have you ever done anything, started to do anything, or prepared to do anything to end "
            "your life?",
        ),
        _yes_no(
            c.CSSRS_BEHAVIOR_PAST_3_MONTHS,
            "Was this within the past 3 months?",
            EnableWhen(c.CSSRS_BEHAVIOR_EVER, c.LA_YES),
        ),
    ),
    bands=(),
    positive_at=None,
    copyright=_CSSRS,
    sources=(
        "HL7 US Behavioral Health Profiles IG, QuestionnaireResponse C-SSRS-example-1 (items, LA9194-7)",
        "Columbia Lighthouse Project, clinical triage guidelines for the C-SSRS screener (DOMAIN.md §1.5)",
    ),
)

_AUDIT_FREQUENCY_0_4 = (
    AnswerOption(c.LA_NEVER, "Never", 0),
    AnswerOption(c.LA_LESS_THAN_MONTHLY, "Less than monthly", 1),
    AnswerOption(c.LA_MONTHLY, "Monthly", 2),
    AnswerOption(c.LA_WEEKLY, "Weekly", 3),
    AnswerOption(c.LA_DAILY_OR_ALMOST_DAILY, "Daily or almost daily", 4),
)
AUDIT_C = Instrument(
    key="audit-c",
    name="AUDITC",
    title="Alcohol Use Disorders Identification Test - Consumption (AUDIT-C)",
    version="1.0.0",
    panel=_loinc(c.AUDIT_C_PANEL, "Alcohol Use Disorder Identification Test - Consumption [AUDIT-C]"),
    total=_loinc(c.AUDIT_C_TOTAL, "Total score [AUDIT-C]"),
    items=(
        Item(
            c.AUDIT_FREQUENCY,
            "How often do you have a drink containing alcohol?",
            (
                AnswerOption(c.LA_NEVER, "Never", 0),
                AnswerOption(c.LA_MONTHLY_OR_LESS, "Monthly or less", 1),
                AnswerOption(c.LA_2_TO_4_TIMES_A_MONTH, "2-4 times a month", 2),
                AnswerOption(c.LA_2_TO_3_TIMES_A_WEEK, "2-3 times a week", 3),
                AnswerOption(c.LA_4_OR_MORE_TIMES_A_WEEK, "4 or more times a week", 4),
            ),
        ),
        Item(
            c.AUDIT_TYPICAL_QUANTITY,
            "How many standard drinks containing alcohol do you have on a typical day?",
            (
                AnswerOption(c.LA_1_OR_2, "1 or 2", 0),
                AnswerOption(c.LA_3_OR_4, "3 or 4", 1),
                AnswerOption(c.LA_5_OR_6, "5 or 6", 2),
                AnswerOption(c.LA_7_TO_9, "7 to 9", 3),
                AnswerOption(c.LA_10_OR_MORE, "10 or more", 4),
            ),
        ),
        Item(
            c.AUDIT_SIX_OR_MORE,
            "How often do you have six or more drinks on one occasion?",
            _AUDIT_FREQUENCY_0_4,
        ),
    ),
    bands=(),
    positive_at=AUDIT_C_POSITIVE_WOMEN,  # the sex-specific rule lives in scoring
    copyright=_AUDIT,
    sources=(
        "LOINC 75626-2 term description (men ≥4, women ≥3; all points from Q1)",
        "US Core Questionnaire AUDIT-C (Q2, Q3 answer codes)",
    ),
)

_OFTEN_SOMETIMES_NEVER = (
    AnswerOption(c.LA_OFTEN_TRUE, "Often true", sdoh_need=c.SDOH_FOOD_INSECURITY),
    AnswerOption(c.LA_SOMETIMES_TRUE, "Sometimes true", sdoh_need=c.SDOH_FOOD_INSECURITY),
    AnswerOption(c.LA_NEVER_TRUE, "Never true"),
)
_HITS_1_5 = (
    AnswerOption(c.LA_NEVER, "Never", 1),
    AnswerOption(c.LA_RARELY, "Rarely", 2),
    AnswerOption(c.LA_SOMETIMES, "Sometimes", 3),
    AnswerOption(c.LA_FAIRLY_OFTEN, "Fairly often", 4),
    AnswerOption(c.LA_FREQUENTLY, "Frequently", 5),
)
HOUSING, FOOD, TRANSPORTATION, UTILITIES, SAFETY = "housing", "food", "transportation", "utilities", "safety"


def _sdoh_item(
    code: str, text: str, options: tuple[AnswerOption, ...], domain: str, *, repeats: bool = False
) -> Item:
    return Item(code, text, options, scored=False, repeats=repeats, domain=domain)


def _safety_item(code: str, text: str) -> Item:
    return Item(code, text, _HITS_1_5, domain=SAFETY)


AHC_HRSN = Instrument(
    key="ahc-hrsn",
    name="AHCHRSNCore",
    title="Accountable Health Communities Health-Related Social Needs Screening Tool (core)",
    version="1.0.0",
    panel=_loinc(
        c.AHC_HRSN_PANEL,
        "Accountable health communities (AHC) health-related social needs screening (HRSN) tool",
    ),
    total=_loinc(c.AHC_SAFETY_TOTAL, "Total safety score"),  # display [S] NYeC IG
    items=(
        _sdoh_item(
            c.AHC_LIVING_SITUATION,
            "What is your living situation today?",
            (
                AnswerOption(c.LA_STEADY_PLACE, "I have a steady place to live"),
                AnswerOption(
                    c.LA_WORRIED_ABOUT_LOSING_IT,
                    "I have a place to live today, but I am worried about losing it in the future",
                    sdoh_need=c.SDOH_HOUSING_INSTABILITY,
                ),
                AnswerOption(
                    c.LA_NO_STEADY_PLACE,
                    "I do not have a steady place to live (I am temporarily staying with others, in a "
                    "hotel, in a shelter, living outside on the street, on a beach, in a car, abandoned "
                    "building, bus or train station, or in a park)",
                    sdoh_need=c.SDOH_HOMELESSNESS,
                ),
            ),
            HOUSING,
        ),
        _sdoh_item(
            c.AHC_HOUSING_PROBLEMS,
            "Think about the place you live. Do you have problems with any of the following?",
            (
                *(
                    AnswerOption(code, display, sdoh_need=c.SDOH_INADEQUATE_HOUSING)
                    for code, display in (
                        (c.LA_PESTS, "Pests such as bugs, ants, or mice"),
                        (c.LA_MOLD, "Mold"),
                        (c.LA_LEAD, "Lead paint or pipes"),
                        (c.LA_LACK_OF_HEAT, "Lack of heat"),
                        (c.LA_OVEN_STOVE, "Oven or stove not working"),
                        (c.LA_SMOKE_DETECTORS, "Smoke detectors missing or not working"),
                        (c.LA_WATER_LEAKS, "Water leaks"),
                    )
                ),
                AnswerOption(c.LA_NONE_OF_THE_ABOVE, "None of the above"),
            ),
            HOUSING,
            repeats=True,  # "Choose all that apply" (LOINC form coding instructions)
        ),
        _sdoh_item(
            c.AHC_FOOD_WORRY,
            "Within the past 12 months, you worried that your food would run out before you got "
            "money to buy more.",
            _OFTEN_SOMETIMES_NEVER,
            FOOD,
        ),
        _sdoh_item(
            c.AHC_FOOD_DID_NOT_LAST,
            "Within the past 12 months, the food you bought just didn't last and you didn't have "
            "money to get more.",
            _OFTEN_SOMETIMES_NEVER,
            FOOD,
        ),
        _sdoh_item(
            c.AHC_TRANSPORTATION,
            "In the past 12 months, has lack of reliable transportation kept you from medical "
            "appointments, meetings, work or from getting things needed for daily living?",
            (
                AnswerOption(c.LA_YES, "Yes", sdoh_need=c.SDOH_TRANSPORTATION_INSECURITY),
                AnswerOption(c.LA_NO, "No"),
            ),
            TRANSPORTATION,
        ),
        _sdoh_item(
            c.AHC_UTILITIES_SHUT_OFF,
            "In the past 12 months has the electric, gas, oil, or water company threatened to shut "
            "off services in your home?",
            (
                AnswerOption(c.LA_YES, "Yes", sdoh_need=c.SDOH_UTILITY_INSECURITY),
                AnswerOption(c.LA_NO, "No"),
                AnswerOption(c.LA_ALREADY_SHUT_OFF, "Already shut off", sdoh_need=c.SDOH_UTILITY_INSECURITY),
            ),
            UTILITIES,
        ),
        _safety_item(
            c.AHC_PHYSICALLY_HURT, "How often does anyone, including family and friends, physically hurt you?"
        ),
        _safety_item(
            c.AHC_INSULT, "How often does anyone, including family and friends, insult or talk down to you?"
        ),
        _safety_item(
            c.AHC_THREATEN, "How often does anyone, including family and friends, threaten you with harm?"
        ),
        _safety_item(
            c.AHC_SCREAM_CURSE, "How often does anyone, including family and friends, scream or curse at you?"
        ),
    ),
    bands=(),
    positive_at=AHC_SAFETY_POSITIVE_ABOVE + 1,
    copyright=_AHC,
    sources=(
        "CMS AHC Core Health-Related Social Needs Screening Questions (underlined answers; safety sum > 10)",
        "NYeC 1115 SHIN-NY HRSN IG v1.4.5 (item LOINC and LA codes, positive answers)",
        "cdn.loinc.org/99595-1/panel (71802-3, LL5876-9, member of 96777-8)",
    ),
    sdoh=True,
)

INSTRUMENTS: tuple[Instrument, ...] = (PHQ9, PHQ2, GAD7, CSSRS_SCREENER, AUDIT_C, AHC_HRSN)
BY_KEY = {i.key: i for i in INSTRUMENTS}
BY_URL = {i.url: i for i in INSTRUMENTS}
BY_PANEL = {i.panel.code: i for i in INSTRUMENTS}

# Public Questionnaires that carry neither a LOINC panel code nor LOINC item codes, recognised by
# their canonical URL. Each entry is a reviewed decision: we do not guess instruments from titles.
PUBLIC_QUESTIONNAIRE_URLS = {
    # SDC PHQ-9 example with local answer codes (copied by StanfordBDHG/ResearchKitOnFHIR)
    "http://hl7.org/fhir/uv/sdc/Questionnaire/questionnaire-sdc-profile-example-PHQ9": PHQ9,
    "http://biodesign.stanford.edu/fhir/questionnaire/GAD-7": GAD7,
}
