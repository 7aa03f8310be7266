# ruff: noqa: E501 - the service catalog is a table: one service template per line.
"""What the synthetic directory is made of: a made-up city (Riverbend), the kinds of community and
behavioural-health organizations in it, and the services each kind offers. Everything here is
invented: names, streets, 555-01xx phone numbers, .example web sites. build.py turns it into FHIR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

CITY: Final = "Riverbend"
#: Not a real state: the city is made up, so is its state.
STATE: Final = "RB"
ZONE: Final = "America/Chicago"
#: The city centre; districts sit up to ~15 km around it.
CENTER: Final = (40.0, -100.0)
DISTRICTS: Final = (
    ("Downtown", 0.0, 0.0, "99901"),
    ("Northgate", 0.09, 0.01, "99902"),
    ("Eastside", 0.01, 0.12, "99903"),
    ("Southport", -0.08, 0.02, "99904"),
    ("Westfield", 0.0, -0.11, "99905"),
    ("Lakeview", 0.06, 0.08, "99906"),
    ("Old Mill", -0.05, -0.07, "99907"),
    ("Cedar Hill", 0.07, -0.09, "99908"),
    ("Riverside", -0.03, 0.07, "99909"),
    ("Prairie Heights", 0.13, -0.03, "99910"),
)
STREETS: Final = (
    "Maple Ave", "Oak St", "River Rd", "Mill St", "Cedar Ln", "Lake Dr", "Prairie Blvd", "Elm St",
    "Harbor Way", "Station Rd", "Willow Ct", "Union St", "Granary Row", "Bluestem Ave", "Ferry St",
)  # fmt: skip
#: 555-0100 to 555-0199 are the fictional numbers; several area codes give enough of them.
AREA_CODES: Final = ("201", "312", "402", "515", "608")
OTHER_LANGUAGES: Final = ("vi", "zh", "so", "ar", "ru", "ko", "tl", "fr", "ht", "am")
GIVEN_NAMES: Final = (
    "Avery", "Jordan", "Rosa", "Minh", "Amina", "Tomas", "Grace", "Dmitri", "Leila", "Samuel",
    "Hana", "Carlos", "Priya", "Owen", "Fatuma", "Lucia", "Wen", "Marcus", "Ingrid", "Kofi",
)  # fmt: skip
FAMILY_NAMES: Final = (
    "Alder", "Brightwater", "Castellano", "Dunmore", "Ekwueme", "Fairbanks", "Galloway", "Huang",
    "Ibarra", "Jorgensen", "Kowalczyk", "Lindqvist", "Mbeki", "Nakamura", "Okafor", "Pemberton",
)  # fmt: skip

#: Opening hours by pattern name (directory.available_time syntax).
HOURS: Final = {
    "office": "mon-fri 09:00-17:00",
    "long-office": "mon-fri 08:00-18:00",
    "clinic": "mon-thu 08:00-19:00; fri 08:00-17:00",
    "pantry": "tue,thu 10:00-14:00; sat 09:00-12:00",
    "evening": "mon,wed 16:00-20:00",
    "meals": "mon-sun 11:30-13:30",
    "weekday-mornings": "mon-fri 08:00-12:00",
    "always": "24/7",
    "classes": "mon-thu 18:00-21:00; sat 10:00-13:00",
    "rides": "mon-sat 06:00-19:00",
}


@dataclass(frozen=True, slots=True)
class ServiceTemplate:
    key: str
    name: str
    #: Gravity categories and/or behavioural-health kinds (directory.classification).
    categories: tuple[str, ...]
    types: tuple[str, ...] = ()
    hours: tuple[str, ...] = ("office",)
    min_age: int | None = None
    max_age: int | None = None
    eligibility: tuple[str, ...] = ()
    #: Open slots drawn from this range; None: capacity is not reported (hotlines).
    capacity: tuple[int, int] | None = (1, 20)
    remote: bool = False
    appointment: bool = False
    fees: str = "free"
    #: NUCC taxonomy code of the practitioners who deliver it (PractitionerRoles), if any.
    role: str | None = None
    description: str = ""


def _t(
    key: str, name: str, categories: tuple[str, ...], types: tuple[str, ...] = (), **kw: object
) -> ServiceTemplate:
    return ServiceTemplate(key, name, categories, types, **kw)  # type: ignore[arg-type]


# NUCC provider taxonomy [K]: 2084P0800X psychiatry, 101YM0800X mental health counselor,
# 1041C0700X clinical social worker, 103T00000X psychologist, 171M00000X case manager/care
# coordinator, 101YA0400X addiction (substance use disorder) counselor.
PSYCHIATRIST, COUNSELOR, SOCIAL_WORKER, PSYCHOLOGIST, CASE_MANAGER, ADDICTION_COUNSELOR = (
    "2084P0800X", "101YM0800X", "1041C0700X", "103T00000X", "171M00000X", "101YA0400X",
)  # fmt: skip
ROLE_DISPLAYS: Final = {
    PSYCHIATRIST: "Psychiatry & Neurology, Psychiatry",
    COUNSELOR: "Counselor, Mental Health",
    SOCIAL_WORKER: "Social Worker, Clinical",
    PSYCHOLOGIST: "Psychologist",
    CASE_MANAGER: "Case Manager/Care Coordinator",
    ADDICTION_COUNSELOR: "Counselor, Addiction (Substance Use Disorder)",
}

SERVICES: Final[dict[str, tuple[ServiceTemplate, ...]]] = {
    "food-bank": (
        _t("pantry", "Food Pantry", ("food-insecurity",), ("344",), hours=("pantry", "evening")),
        _t("hot-meals", "Hot Meals Program", ("food-insecurity", "social-connection"), ("344",), hours=("meals",)),
        _t("snap", "SNAP Enrollment Help", ("food-insecurity", "financial-insecurity"), ("122",), eligibility=("low-income",)),
        _t("mobile-pantry", "Mobile Pantry", ("food-insecurity",), ("344", "345"), hours=("evening",)),
    ),
    "housing": (
        _t("rental", "Rental Assistance", ("housing-instability",), ("125", "121"), eligibility=("low-income",), capacity=(0, 8)),
        _t("navigation", "Housing Navigation", ("housing-instability", "homelessness"), ("128",), role=CASE_MANAGER),
        _t("eviction", "Eviction Prevention", ("housing-instability",), ("121", "128"), eligibility=("resident",)),
        _t("repair", "Home Repair Program", ("inadequate-housing",), ("128",), eligibility=("low-income",), capacity=(0, 5)),
        _t("weatherization", "Weatherization Program", ("utility-insecurity", "inadequate-housing"), ("128",)),
        _t("rehousing", "Rapid Rehousing", ("homelessness",), ("125",), capacity=(0, 6), role=CASE_MANAGER),
    ),
    "shelter": (
        _t("shelter", "Emergency Shelter", ("homelessness",), ("126",), hours=("always",), min_age=18, capacity=(0, 30)),
        _t("family-shelter", "Family Shelter", ("homelessness",), ("126",), hours=("always",), capacity=(0, 12)),
        _t("outreach", "Street Outreach", ("homelessness",), ("127",), hours=("long-office",), capacity=None),
        _t("youth-drop-in", "Youth Drop-in Center", ("homelessness", "social-connection"), ("127",), min_age=12, max_age=24, hours=("long-office",)),
        _t("day-center", "Day Center", ("homelessness", "material-hardship"), ("127", "123"), hours=("weekday-mornings",)),
    ),
    "community-action": (
        _t("energy", "Energy Bill Assistance", ("utility-insecurity",), ("121",), eligibility=("low-income",), capacity=(0, 15)),
        _t("water", "Water Shutoff Prevention", ("utility-insecurity",), ("330",)),
        _t("cash", "Emergency Cash Assistance", ("financial-insecurity",), ("121",), eligibility=("low-income",), capacity=(0, 10)),
        _t("tax", "Free Tax Preparation", ("financial-insecurity",), ("122",), hours=("classes",), eligibility=("low-income",)),
        _t("coaching", "Financial Coaching", ("financial-insecurity", "stress"), ("122",), appointment=True),
        _t("clothing", "Clothing Closet", ("material-hardship",), ("289",), hours=("pantry",)),
        _t("furniture", "Furniture Bank", ("material-hardship",), ("366",), hours=("weekday-mornings",)),
        _t("diapers", "Diaper Bank", ("material-hardship",), ("123",), hours=("pantry",)),
    ),
    "legal-aid": (
        _t("tenant", "Tenant Rights Clinic", ("inadequate-housing", "housing-instability"), ("133",), eligibility=("low-income",)),
        _t("survivor-legal", "Legal Advocacy for Survivors", ("intimate-partner-violence",), ("132",)),
        _t("elder-law", "Elder Law Clinic", ("elder-abuse",), ("133",), min_age=60),
        _t("medical-debt", "Medical Debt Legal Help", ("medical-cost-burden",), ("133",), eligibility=("low-income",)),
        _t("record-clearing", "Record Clearing Clinic", ("incarceration-status", "employment-status"), ("133",)),
    ),
    "behavioral-health": (
        _t("psychiatry", "Outpatient Psychiatry", ("psychiatry",), hours=("clinic",), min_age=18, appointment=True, fees="cost", role=PSYCHIATRIST, capacity=(0, 6)),
        _t("med-management", "Medication Management Clinic", ("psychiatry",), hours=("office",), appointment=True, fees="cost", role=PSYCHIATRIST),
        _t("therapy", "Individual Therapy", ("therapy",), hours=("clinic", "evening"), appointment=True, fees="disc", role=COUNSELOR, capacity=(0, 10)),
        _t("trauma-therapy", "Trauma-Focused Therapy", ("therapy", "stress"), hours=("office",), appointment=True, fees="disc", role=PSYCHOLOGIST),
        _t("group-therapy", "Group Therapy", ("therapy", "social-connection"), ("224",), hours=("evening",), fees="disc"),
        _t("family-therapy", "Family Therapy", ("therapy",), hours=("clinic",), appointment=True, fees="disc", role=SOCIAL_WORKER),
        _t("bh-case-management", "Mental Health Case Management", ("case-management",), hours=("office",), min_age=18, role=CASE_MANAGER),
        _t("ips", "Supported Employment (IPS)", ("employment-status",), ("118",), min_age=18, description="Individual Placement and Support for people in mental-health treatment"),
        _t("stress-class", "Stress Management Classes", ("stress",), ("305",), hours=("classes",)),
        _t("peer-support", "Peer Support Group", ("social-connection", "stress"), ("224",), hours=("evening",), capacity=None),
    ),
    "crisis": (
        _t("mobile-crisis", "Mobile Crisis Team", ("crisis",), hours=("always",), capacity=None, role=SOCIAL_WORKER),
        _t("crisis-line", "Crisis Line", ("crisis", "stress"), hours=("always",), capacity=None, remote=True),
        _t("stabilization", "Crisis Stabilization Unit", ("crisis",), hours=("always",), min_age=18, capacity=(0, 8)),
        _t("warm-line", "Peer Warm Line", ("social-connection", "stress"), ("224",), hours=("evening",), capacity=None, remote=True),
    ),
    "recovery": (
        _t("sud-outpatient", "Outpatient Substance Use Treatment", ("sud-treatment",), hours=("clinic",), min_age=18, appointment=True, fees="disc", role=ADDICTION_COUNSELOR),
        _t("sud-residential", "Residential Substance Use Treatment", ("sud-treatment",), ("111",), hours=("always",), min_age=18, capacity=(0, 6)),
        _t("detox", "Withdrawal Management (Detox)", ("sud-treatment",), ("317",), hours=("always",), min_age=18, capacity=(0, 4)),
        _t("moud", "Medication for Opioid Use Disorder", ("sud-treatment",), ("109",), hours=("weekday-mornings",), appointment=True, role=PSYCHIATRIST),
        _t("recovery-group", "Recovery Support Group", ("sud-treatment", "social-connection"), ("224",), hours=("evening",), capacity=None),
    ),
    "senior": (
        _t("home-meals", "Home-Delivered Meals", ("food-insecurity",), ("344",), min_age=60, capacity=(0, 25)),
        _t("companions", "Senior Companion Visits", ("social-connection",), ("296",), min_age=60),
        _t("aps", "Adult Protective Services Intake", ("elder-abuse",), ("233",), hours=("always",), min_age=60, capacity=None, remote=True),
        _t("caregiver", "Caregiver Support Group", ("stress", "social-connection"), ("155",), hours=("evening",)),
        _t("medicare", "Medicare Counseling", ("health-insurance-coverage-status", "medical-cost-burden"), ("240",), min_age=60, appointment=True),
    ),
    "veterans": (
        _t("vso", "Veterans Service Office", ("veteran-status", "financial-insecurity"), ("241",), eligibility=("veteran",)),
        _t("veteran-housing", "Veterans Transitional Housing", ("homelessness", "veteran-status"), ("125",), eligibility=("veteran",), capacity=(0, 10), hours=("always",)),
        _t("veteran-peer", "Veteran Peer Mentoring", ("veteran-status", "social-connection"), ("224",), eligibility=("veteran",), hours=("evening",)),
        _t("veteran-jobs", "Veteran Employment Program", ("employment-status", "veteran-status"), ("118",), eligibility=("veteran",)),
    ),
    "family-justice": (
        _t("dv-hotline", "Domestic Violence Hotline", ("intimate-partner-violence",), ("233",), hours=("always",), capacity=None, remote=True),
        _t("safe-shelter", "Confidential Safe Shelter", ("intimate-partner-violence", "homelessness"), ("310",), hours=("always",), capacity=(0, 8)),
        _t("advocacy", "Survivor Advocacy", ("intimate-partner-violence",), ("241",), role=SOCIAL_WORKER),
        _t("survivor-counseling", "Counseling for Survivors", ("intimate-partner-violence", "therapy"), hours=("clinic",), appointment=True, role=COUNSELOR),
    ),
    "learning": (
        _t("ged", "GED Preparation", ("educational-attainment",), ("112",), hours=("classes",), min_age=16),
        _t("literacy", "Adult Literacy Tutoring", ("educational-attainment", "personal-health-literacy"), ("112",), hours=("classes",), min_age=18),
        _t("esl", "English Classes for Adults", ("educational-attainment",), ("112",), hours=("classes",), min_age=18),
        _t("bridge", "College and Career Bridge", ("educational-attainment", "employment-status"), ("116",), hours=("office",)),
    ),
    "workforce": (
        _t("job-readiness", "Job Readiness Workshop", ("employment-status",), ("375",), hours=("weekday-mornings",)),
        _t("placement", "Job Placement Services", ("employment-status",), ("118",), role=CASE_MANAGER),
        _t("voc-rehab", "Vocational Rehabilitation", ("employment-status",), ("119",), appointment=True),
        _t("youth-jobs", "Youth Employment Program", ("employment-status",), ("118",), min_age=16, max_age=24),
    ),
    "transit": (
        _t("medical-rides", "Rides to Medical Appointments", ("transportation-insecurity",), ("230",), hours=("rides",), appointment=True, capacity=(0, 12)),
        _t("reduced-fare", "Reduced-Fare Transit Pass", ("transportation-insecurity",), ("228",), eligibility=("low-income",)),
        _t("volunteer-drivers", "Volunteer Driver Program", ("transportation-insecurity",), ("295",), hours=("rides",), min_age=60),
    ),
    "health-center": (
        _t("enrollment", "Health Coverage Enrollment Help", ("health-insurance-coverage-status",), ("240", "241"), eligibility=("uninsured",)),
        _t("navigator", "Health Navigator", ("personal-health-literacy",), ("370",), role=CASE_MANAGER),
        _t("rx-assistance", "Prescription Assistance", ("medical-cost-burden",), ("121",), eligibility=("low-income",)),
        _t("billing", "Medical Bill Advocacy", ("medical-cost-burden", "financial-insecurity"), ("241",)),
        _t("integrated-bh", "Integrated Behavioral Health", ("therapy", "psychiatry"), hours=("clinic",), appointment=True, fees="disc", role=PSYCHOLOGIST),
    ),
    "community": (
        _t("community-meals", "Community Supper", ("food-insecurity", "social-connection"), ("344",), hours=("evening",), capacity=None),
        _t("friendly-visitor", "Friendly Visitor Program", ("social-connection",), ("296",)),
        _t("free-store", "Free Store", ("material-hardship",), ("289", "366"), hours=("pantry",)),
        _t("support-circle", "Neighbors Support Circle", ("social-connection", "stress"), ("224",), hours=("evening",), capacity=None),
    ),
    "youth": (
        _t("youth-counseling", "Youth Counseling", ("therapy",), hours=("long-office",), min_age=12, max_age=24, role=COUNSELOR),
        _t("tutoring", "After-School Tutoring", ("educational-attainment",), ("112",), hours=("evening",), min_age=12, max_age=18),
        _t("youth-shelter", "Youth Shelter", ("homelessness",), ("126",), hours=("always",), min_age=12, max_age=24, capacity=(0, 10)),
    ),
    "reentry": (
        _t("reentry-navigation", "Reentry Navigation", ("incarceration-status", "housing-instability"), ("376",), role=CASE_MANAGER),
        _t("reentry-jobs", "Second Chance Employment", ("incarceration-status", "employment-status"), ("118",)),
    ),
}  # fmt: skip


#: Organization kinds: how many, their names, FHIR organization-type code, and whether they
#: take electronic referrals (an Endpoint).
@dataclass(frozen=True, slots=True)
class OrganizationKind:
    key: str
    count: int
    names: tuple[str, ...]
    org_type: str
    endpoint: bool


KINDS: Final = (
    OrganizationKind("food-bank", 4, ("Food Bank", "Community Pantry", "Hunger Relief Network"), "cg", False),
    OrganizationKind("housing", 4, ("Housing Partners", "Housing Authority", "Home Alliance"), "govt", True),
    OrganizationKind("shelter", 3, ("Shelter Network", "Welcome House", "Harbor Mission"), "cg", False),
    OrganizationKind("community-action", 4, ("Community Action Agency", "Neighborhood Services"), "cg", True),
    OrganizationKind("legal-aid", 2, ("Legal Aid Society", "Justice Center"), "other", True),
    OrganizationKind(
        "behavioral-health",
        5,
        ("Behavioral Health Center", "Counseling Center", "Wellness Clinic"),
        "prov",
        True,
    ),
    OrganizationKind("crisis", 2, ("Crisis Services",), "prov", True),
    OrganizationKind("recovery", 3, ("Recovery Center", "Treatment Center"), "prov", True),
    OrganizationKind("senior", 3, ("Senior Services", "Area Agency on Aging"), "govt", False),
    OrganizationKind("veterans", 2, ("Veterans Center", "Veterans Alliance"), "cg", False),
    OrganizationKind("family-justice", 2, ("Family Justice Center", "Safe Haven"), "cg", True),
    OrganizationKind("learning", 3, ("Adult Learning Center", "Literacy Council"), "edu", False),
    OrganizationKind("workforce", 3, ("Workforce Center", "Career Hub"), "govt", False),
    OrganizationKind("transit", 2, ("Transit Authority", "Ride Connect"), "govt", False),
    OrganizationKind("health-center", 4, ("Community Health Center", "Family Clinic"), "prov", True),
    OrganizationKind(
        "community", 3, ("Neighbors Network", "Community Hub", "Friendship Center"), "reli", False
    ),
    OrganizationKind("youth", 2, ("Youth Services",), "cg", False),
    OrganizationKind("reentry", 1, ("Reentry Council",), "cg", False),
)
