"""Is this Patient someone intake already knows? (issue 5, "Patient identity")

1. An identifier shared by system and value (an MRN with its assigning authority) is the same
   person, whatever the demographics say; when they flatly contradict it, the result says so.
2. Otherwise each demographic feature adds a Fellegi-Sunter weight (Fellegi & Sunter, "A Theory
   for Record Linkage", JASA 64:1183, 1969): log2(m/u) for the outcome seen, m its probability
   when the two records are one person, u when they are two. The m and u below are hand-set
   [K] from the record-linkage literature's usual magnitudes (Grannis et al., AMIA 2003:259,
   for MPI data; DuVall et al., J Biomed Inform 43:24, 2010, for graded string outcomes), not
   fitted to CareBridge data: re-estimate them (EM on unlabelled pairs) once real reviews exist.
   A value missing on either side adds 0 (missing at random: Li, Xu & Grannis, JMIR 2022,
   e33775).
3. Independence fails for one case that matters: people of one household share family name,
   address and phone, and twins a birth date too. When the records share an address or phone,
   a "household" line re-weighs those agreements as u within a household (see
   `_household_evidence`), which keeps twins, parents and juniors apart.

Scale: `log_odds` is the sum of the evidence weights, in bits. `score` maps it to 0..1 with a
logistic curve pinned so that MATCH_LOG_ODDS gives 0.9 and POSSIBLE_LOG_ODDS gives 0.6, the
default thresholds (intake settings). It orders candidates and fills FHIR
`Bundle.entry.search.score` ($match, R4 patient-operation-match.html); it is not a calibrated
probability. The bit levels were chosen on the synthetic population of
tests/unit/intake/test_matching_population.py.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any, Final, Literal, NamedTuple

from services.intake.domain.names import (
    family_outcome,
    given_outcome,
    given_roots,
    person_name,
    soundex,
    spelling_outcome,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "MATCH_LOG_ODDS",
    "POSSIBLE_LOG_ODDS",
    "Address",
    "Demographics",
    "Evidence",
    "MatchResult",
    "MatchThresholds",
    "blocking_keys",
    "demographics",
    "rank_candidates",
    "score_of",
    "score_pair",
]

Decision = Literal["match", "possible", "new"]
Grade = Literal["certain", "probable", "possible", "certainly-not"]


# --- what matching reads of a Patient -------------------------------------------------------

US_SSN: Final = "http://hl7.org/fhir/sid/us-ssn"
US_SSN_OID: Final = "urn:oid:2.16.840.1.113883.4.1"  # the same system as an OID (HL7 OID registry)
#: v2 table 0203 identifier types that do not single out one person: SSNs (only their last 4
#: digits are compared, as evidence), social beneficiary numbers, and insurance subscriber and
#: member numbers (dependants often carry the subscriber's).
_NOT_PERSON_IDENTIFIERS: Final = frozenset(("SS", "SB", "SN", "MB"))


class Address(NamedTuple):
    line: str  # the lines joined, USPS abbreviations, unit designators dropped ("12 main st 4b")
    city: str
    state: str
    postal_code: str  # a US ZIP's first five digits, else folded without spaces


@dataclass(frozen=True, slots=True)
class Demographics:
    """What matching needs of one FHIR R4 Patient, normalised (names folded: names.fold).

    `identifiers` are the (system, value) pairs that single out a person: MRNs and the like.
    A US SSN is not among them: the issue asks for its last 4 digits as demographic evidence,
    full SSNs are mis-keyed, shared in families and replaced by placeholders often enough that
    letting one alone merge two records would be unsafe, and keeping only 4 digits keeps less
    PHI in memory and in logs. Insurance subscriber and member numbers are left out too."""

    family: tuple[str, ...]  # current family names first, then maiden and old ones
    family_parts: frozenset[str]  # parts of compound family names
    given: tuple[str, ...]  # the first given name of each name
    middle: frozenset[str]  # the other given names
    suffix: str | None  # generation: jr, sr, ii, iii...
    birth_date: date | None  # None unless a full, valid date
    birth_year: int | None  # also from "1980" or "1980-05"
    gender: str | None  # male, female, other (unknown is None)
    phones: frozenset[str]  # digits, the last 10
    addresses: frozenset[Address]
    ssn_last4: str | None
    identifiers: frozenset[tuple[str, str]]


def demographics(patient: dict[str, Any]) -> Demographics:
    """Read a Patient as stored (a dict); anything malformed is read as missing, never raised."""
    if not isinstance(patient, dict):
        patient = {}
    name = person_name(patient.get("name"))
    birth_date, birth_year = _birth(patient.get("birthDate"))
    gender = patient.get("gender")
    ssn_last4, identifiers = _identifiers(patient.get("identifier"))
    return Demographics(
        family=name.family,
        family_parts=name.family_parts,
        given=name.given,
        middle=name.middle,
        suffix=name.suffix,
        birth_date=birth_date,
        birth_year=birth_year,
        gender=gender if gender in ("male", "female", "other") else None,
        phones=_phones(patient.get("telecom")),
        addresses=_addresses(patient.get("address")),
        ssn_last4=ssn_last4,
        identifiers=identifiers,
    )


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


_BIRTH_DATE: Final = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


def _birth(value: Any) -> tuple[date | None, int | None]:
    """FHIR `date`: "1980", "1980-05" or "1980-05-17" (a dateTime's date part is accepted)."""
    found = _BIRTH_DATE.fullmatch(_text(value)[:10])
    if found is None or not 1850 <= int(found[1]) <= 2200:
        return None, None
    year = int(found[1])
    if found[3] is None:
        return None, year
    try:
        return date(year, int(found[2]), int(found[3])), year
    except ValueError:
        return None, year


def _identifiers(identifiers: Any) -> tuple[str | None, frozenset[tuple[str, str]]]:
    ssn_last4: str | None = None
    found: set[tuple[str, str]] = set()
    for identifier in _dicts(identifiers):
        system, value = _text(identifier.get("system")), _text(identifier.get("value"))
        kind = identifier.get("type")
        codings = _dicts(kind.get("coding")) if isinstance(kind, dict) else []
        types = {_text(c.get("code")) for c in codings if _text(c.get("system")).endswith("0203")}
        if system in (US_SSN, US_SSN_OID) or "SS" in types:
            ssn_last4 = ssn_last4 or _ssn_last4(value)
        elif system and value and not types & _NOT_PERSON_IDENTIFIERS:
            found.add((system, value))
    return ssn_last4, frozenset(found)


def _ssn_last4(value: str) -> str | None:
    """The last 4 digits, unless the serial is 0000 (never issued, SSA) or the number is a
    placeholder (one digit repeated, 123456789). Masked values ("***-**-1234") still give 4."""
    digits = re.sub(r"\D", "", value)
    if len(digits) < 4 or digits[-4:] == "0000" or len(set(digits)) == 1 or digits == "123456789":
        return None
    return digits[-4:]


def _phones(telecom: Any) -> frozenset[str]:
    phones = set()
    for contact in _dicts(telecom):
        if contact.get("system") not in ("phone", "sms", None):
            continue
        digits = re.sub(r"\D", "", _text(contact.get("value")))
        if len(digits) >= 7 and len(set(digits)) > 1:  # 000-000-0000 and the like are placeholders
            phones.add(digits[-10:])
    return frozenset(phones)


#: USPS Publication 28 standard abbreviations (Appendix C1 street suffixes, C2 unit designators,
#: section 233 directionals), the commonest of them. Unit designators are dropped, so "Apt 4B",
#: "Unit 4B" and "#4B" read alike.
_ADDRESS_WORDS: Final = {
    "street": "st", "str": "st", "avenue": "ave", "av": "ave", "road": "rd", "drive": "dr",
    "lane": "ln", "boulevard": "blvd", "court": "ct", "place": "pl", "terrace": "ter",
    "circle": "cir", "highway": "hwy", "parkway": "pkwy", "square": "sq", "trail": "trl",
    "north": "n", "south": "s", "east": "e", "west": "w", "northeast": "ne", "northwest": "nw",
    "southeast": "se", "southwest": "sw",
}  # fmt: skip
_UNIT_WORDS: Final = frozenset(("apt", "apartment", "unit", "suite", "ste", "no", "number", "rm", "room"))


def _address_words(text: str) -> list[str]:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    plain = "".join(
        c if c.isascii() and c.isalnum() else " " for c in decomposed if not unicodedata.combining(c)
    )
    return [_ADDRESS_WORDS.get(w, w) for w in plain.split() if w not in _UNIT_WORDS]


def _addresses(addresses: Any) -> frozenset[Address]:
    found = set()
    for address in _dicts(addresses):
        lines = address.get("line")
        texts = [text for text in lines if isinstance(text, str)] if isinstance(lines, list) else []
        line = " ".join(word for text in texts for word in _address_words(text))
        postal = _text(address.get("postalCode"))
        digits = re.sub(r"\D", "", postal)
        postal = digits[:5] if len(digits) in (5, 9) else "".join(_address_words(postal))
        city, state = (
            " ".join(_address_words(_text(address.get("city")))),
            _text(address.get("state")).lower(),
        )
        if line or postal or city:
            found.add(Address(line, city, state, postal))
    return frozenset(found)


@dataclass(frozen=True, slots=True)
class MatchThresholds:
    match: float  # score >= match: the same person, merged automatically
    possible: float  # possible <= score < match: kept apart, a review item raised

    def __post_init__(self) -> None:
        if not 0.0 <= self.possible <= self.match <= 1.0:
            raise ValueError("match thresholds need 0 <= possible <= match <= 1")


#: Log-odds (bits) at the default thresholds. Typical duplicates score 20-45. Twins, and a father
#: and his junior of the same name at one home, score about 10-12 (a review item). A duplicate
#: with an inexact birth date (one digit, or day and month swapped), a move and a new phone
#: scores 15-19, and so, on the synthetic population, did a few pairs of different people
#: (namesakes born days apart, twins named a letter apart): those go to review too. No pair of
#: different people there reached 20 bits at 5,000 people; at 20,000, four did (exact namesakes
#: without an SSN, twins whose SSN last 4 agreed by chance).
MATCH_LOG_ODDS: Final = 20.0
POSSIBLE_LOG_ODDS: Final = 9.0
_SCALE: Final = (MATCH_LOG_ODDS - POSSIBLE_LOG_ODDS) / (math.log(9.0) - math.log(1.5))
_CENTRE: Final = POSSIBLE_LOG_ODDS - _SCALE * math.log(1.5)
DEFAULT_THRESHOLDS: Final = MatchThresholds(match=0.9, possible=0.6)


def score_of(log_odds: float) -> float:
    """The 0..1 score of a log-odds sum (module docstring)."""
    return 1.0 / (1.0 + math.exp(-(log_odds - _CENTRE) / _SCALE))


@dataclass(frozen=True, slots=True)
class Evidence:
    feature: str  # identifier, family, given, suffix, birthDate, gender, phone, address, ssn4, household
    outcome: str  # exact, nickname, transposed, typo, swapped-day-month, different, missing, ...
    weight: float  # bits added to the log-odds (negative: against the match)


@dataclass(frozen=True, slots=True)
class MatchResult:
    candidate_id: str
    score: float  # 0..1, see the module docstring
    decision: Decision
    grade: Grade  # http://terminology.hl7.org/CodeSystem/match-grade
    evidence: tuple[Evidence, ...]
    log_odds: float  # the sum of the evidence weights, in bits

    @property
    def needs_review(self) -> bool:
        """A possible match, or an identifier match its demographics contradict."""
        return self.decision == "possible" or (self.decision == "match" and self.grade != "certain")

    def explain(self) -> str:
        """One line of features, outcomes and weights: no value of the person (safe to log)."""
        lines = " ".join(f"{e.feature}={e.outcome}({e.weight:+.1f})" for e in self.evidence)
        return f"{self.decision}/{self.grade} score {self.score:.3f} log-odds {self.log_odds:+.1f}: {lines}"


# --- weights --------------------------------------------------------------------------------

#: (feature, outcome) -> (m, u): the outcome's probability for one person's two records and for
#: two people's, given both values are present. Hand-set [K]; the comments say why.
_M_U: Final[dict[tuple[str, str], tuple[float, float]]] = {
    ("family", "exact"): (0.90, 0.01),  # the commonest US surnames hold ~1% of people each
    ("family", "transposed"): (0.01, 0.0003),
    ("family", "typo"): (0.04, 0.002),
    ("family", "compound"): (0.02, 0.002),  # Garcia vs Garcia-Lopez
    ("family", "different"): (0.03, 0.98),  # marriage, divorce, hyphenation dropped
    ("given", "exact"): (0.88, 0.01),
    ("given", "transposed"): (0.01, 0.0003),
    ("given", "nickname"): (0.05, 0.002),
    ("given", "typo"): (0.04, 0.002),
    ("given", "middle-name"): (0.01, 0.001),
    ("given", "initial"): (0.01, 0.004),
    ("given", "different"): (0.02, 0.98),
    ("suffix", "exact"): (0.98, 0.5),
    ("suffix", "different"): (0.02, 0.5),  # Jr vs Sr, II vs III
    ("suffix", "one-sided"): (0.3, 0.6),  # suffixes are often dropped, by juniors' records too
    ("birthDate", "exact"): (0.93, 4e-5),  # 1 / (365 days x ~70 years of birth)
    ("birthDate", "swapped-day-month"): (0.01, 4e-5),
    ("birthDate", "year-off-by-one"): (0.01, 8e-5),
    ("birthDate", "transposed"): (0.005, 2e-4),
    ("birthDate", "typo"): (0.03, 1e-3),  # ~25 valid dates are one digit away
    ("birthDate", "same-year"): (0.95, 0.0125),  # a partial date ("1980", "1980-05")
    ("birthDate", "different"): (0.01, 0.998),
    ("gender", "exact"): (0.98, 0.5),
    ("gender", "different"): (0.02, 0.5),  # entry errors and changes of administrative gender
    ("phone", "exact"): (0.65, 2e-4),  # numbers change; shared mostly within a household
    ("phone", "typo"): (0.02, 5e-4),
    ("phone", "different"): (0.33, 0.9993),
    ("address", "exact"): (0.60, 2e-4),  # people move
    ("address", "typo"): (0.05, 5e-4),
    ("address", "same-postal-code"): (0.05, 0.01),
    ("address", "different"): (0.30, 0.99),
    ("ssn4", "exact"): (0.95, 1e-4),
    ("ssn4", "transposed"): (0.01, 3e-4),
    ("ssn4", "typo"): (0.02, 3.6e-3),
    ("ssn4", "different"): (0.01, 0.996),
}
#: The same outcomes between two people of one household (they share an address or phone): a
#: family name is shared by most of them, a birth date by twins (~3% of births [K]).
_M_U_IN_HOUSEHOLD: Final[dict[tuple[str, str], tuple[float, float]]] = {
    ("family", "exact"): (0.90, 0.75),
    ("family", "transposed"): (0.01, 0.01),
    ("family", "typo"): (0.04, 0.04),
    ("family", "compound"): (0.02, 0.02),
    ("family", "different"): (0.03, 0.2),
    ("birthDate", "exact"): (0.93, 0.03),
}
#: Address and phone both shared: one piece of household evidence, not two independent ones.
_CONTACT_JOINT: Final = math.log2(0.45 / 2e-4)
#: Given and family names swapped (half the weight on each line).
_SWAP: Final = math.log2(0.005 / 1e-6) / 2
#: A shared identifier: an MRN is issued to one person (u: a mis-keyed MRN that hits another).
_IDENTIFIER: Final = math.log2(0.999 / 1e-9)

WEIGHTS: Final = {key: math.log2(m / u) for key, (m, u) in _M_U.items()}
_HOUSEHOLD_WEIGHTS: Final = {key: math.log2(m / u) for key, (m, u) in _M_U_IN_HOUSEHOLD.items()}
_AGREES: Final = frozenset(("exact", "typo", "transposed"))


def _evidence(feature: str, outcome: str) -> Evidence:
    return Evidence(feature, outcome, WEIGHTS.get((feature, outcome), 0.0))


# --- comparisons ----------------------------------------------------------------------------


def _name_evidence(a: Demographics, b: Demographics) -> list[Evidence]:
    family = family_outcome(a.family, a.family_parts, b.family, b.family_parts)
    given = given_outcome(a.given, a.middle, b.given, b.middle)
    if family == "different" and given == "different" and _swapped(a, b):
        return [
            Evidence("family", "swapped-with-given", _SWAP),
            Evidence("given", "swapped-with-family", _SWAP),
        ]
    found = [_evidence("family", family), _evidence("given", given)]
    if a.suffix or b.suffix:  # Jr, Sr, II: a line only when a record has one
        if a.suffix is None or b.suffix is None:
            found.append(_evidence("suffix", "one-sided"))
        else:
            found.append(_evidence("suffix", "exact" if a.suffix == b.suffix else "different"))
    return found


def _swapped(a: Demographics, b: Demographics) -> bool:
    def close(xs: tuple[str, ...], ys: tuple[str, ...]) -> bool:
        return any(x == y or spelling_outcome(x, y) != "different" for x in xs for y in ys)

    return close(a.given, b.family) and close(a.family, b.given)


def _birth_evidence(a: Demographics, b: Demographics) -> Evidence:
    x, y = a.birth_date, b.birth_date
    if x is None or y is None:
        if a.birth_year is None or b.birth_year is None:
            return _evidence("birthDate", "missing")
        return _evidence("birthDate", "same-year" if a.birth_year == b.birth_year else "different")
    if x == y:
        return _evidence("birthDate", "exact")
    if x.year == y.year and x.month == y.day and x.day == y.month:
        return _evidence("birthDate", "swapped-day-month")
    if x.month == y.month and x.day == y.day and abs(x.year - y.year) == 1:
        return _evidence("birthDate", "year-off-by-one")
    return _evidence("birthDate", _digit_outcome(x.strftime("%Y%m%d"), y.strftime("%Y%m%d")))


def _digit_outcome(x: str, y: str) -> str:
    """Two digit strings of one length: "typo" (one digit wrong), "transposed" (two neighbours
    swapped), else "different"."""
    wrong = [i for i in range(len(x)) if x[i] != y[i]]
    if len(wrong) == 1:
        return "typo"
    if (
        len(wrong) == 2
        and wrong[1] == wrong[0] + 1
        and x[wrong[0]] == y[wrong[1]]
        and x[wrong[1]] == y[wrong[0]]
    ):
        return "transposed"
    return "different"


def _gender_evidence(a: Demographics, b: Demographics) -> Evidence:
    if a.gender is None or b.gender is None:
        return _evidence("gender", "missing")
    if a.gender == b.gender:
        return _evidence("gender", "exact")
    # "other" against male or female says nothing either way.
    return _evidence("gender", "different" if "other" not in (a.gender, b.gender) else "missing")


def _phone_evidence(a: Demographics, b: Demographics) -> Evidence:
    if not a.phones or not b.phones:
        return _evidence("phone", "missing")
    if not a.phones.isdisjoint(b.phones):
        return _evidence("phone", "exact")
    for x in a.phones:
        for y in b.phones:
            if len(x) == len(y) and _digit_outcome(x, y) != "different":
                return _evidence("phone", "typo")
    return _evidence("phone", "different")


def _address_evidence(a: Demographics, b: Demographics) -> Evidence:
    if not a.addresses or not b.addresses:
        return _evidence("address", "missing")
    best = "different"
    for x in a.addresses:
        for y in b.addresses:
            outcome = _address_outcome(x, y)
            if outcome == "exact":
                return _evidence("address", outcome)
            if outcome == "typo" or best == "different":
                best = outcome
    return _evidence("address", best)


def _address_outcome(x: Address, y: Address) -> str:
    same_place = (
        x.postal_code == y.postal_code
        if x.postal_code and y.postal_code
        else (x.city == y.city if x.city and y.city else bool(x.line and y.line))
    )
    if not same_place:
        return "different"
    if x.line and x.line == y.line:
        return "exact"
    if x.line and y.line and spelling_outcome(x.line, y.line) != "different":
        return "typo"
    return "same-postal-code" if x.postal_code and x.postal_code == y.postal_code else "different"


def _ssn_evidence(a: Demographics, b: Demographics) -> Evidence:
    if a.ssn_last4 is None or b.ssn_last4 is None:
        return _evidence("ssn4", "missing")
    if a.ssn_last4 == b.ssn_last4:
        return _evidence("ssn4", "exact")
    return _evidence("ssn4", _digit_outcome(a.ssn_last4, b.ssn_last4))


def _household_evidence(found: dict[str, Evidence]) -> Evidence | None:
    """When the records share an address or a phone they may be two people of one household,
    among whom a shared family name is the rule and a shared birth date means twins: the
    family and birth-date weights become those within a household, and an address and phone
    both shared count once (`_CONTACT_JOINT`). One line carries the whole correction."""
    address, phone = found["address"], found["phone"]
    shared = [e.feature for e in (address, phone) if e.outcome in _AGREES]
    if not shared:
        return None
    correction = 0.0
    if len(shared) == 2:
        correction += _CONTACT_JOINT - address.weight - phone.weight
    for feature in ("family", "birthDate"):
        evidence = found.get(feature)
        if evidence is not None and (feature, evidence.outcome) in _HOUSEHOLD_WEIGHTS:
            correction += _HOUSEHOLD_WEIGHTS[(feature, evidence.outcome)] - evidence.weight
    return Evidence("household", "shared-" + "-and-".join(shared), correction)


def demographic_evidence(a: Demographics, b: Demographics) -> tuple[Evidence, ...]:
    """Every demographic comparison of two records, household correction last."""
    evidence = [
        *_name_evidence(a, b),
        _birth_evidence(a, b),
        _gender_evidence(a, b),
        _phone_evidence(a, b),
        _address_evidence(a, b),
        _ssn_evidence(a, b),
    ]
    household = _household_evidence({e.feature: e for e in evidence})
    return (*evidence, household) if household is not None else tuple(evidence)


def _contradicts(evidence: Iterable[Evidence]) -> bool:
    """Demographics that cannot be the identifier's person: another birth date and another
    given name (a mis-keyed MRN, a newborn under the mother's MRN). Gender alone is not used:
    administrative gender changes, and family names change at marriage."""
    outcomes = {e.feature: e.outcome for e in evidence}
    return outcomes.get("birthDate") == "different" and outcomes.get("given") == "different"


# --- scoring --------------------------------------------------------------------------------


def score_pair(
    incoming: Demographics, candidate: Demographics, candidate_id: str, thresholds: MatchThresholds
) -> MatchResult:
    """Is `candidate` the person `incoming` describes? See the module docstring."""
    demographic = demographic_evidence(incoming, candidate)
    shared = any(system and value for system, value in incoming.identifiers & candidate.identifiers)
    if shared:
        lines = [Evidence("identifier", "exact", _IDENTIFIER)]
        contradicted = _contradicts(demographic)
        if contradicted:
            lines.append(Evidence("identifier", "contradicted", 0.0))
        evidence = (*lines, *demographic)
        log_odds = sum(e.weight for e in evidence)
        grade: Grade = "probable" if contradicted else "certain"
        return MatchResult(candidate_id, score_of(log_odds), "match", grade, evidence, log_odds)
    outcome = "different" if incoming.identifiers and candidate.identifiers else "missing"
    # A second MRN is what a duplicate looks like: no weight against.
    evidence = (Evidence("identifier", outcome, 0.0), *demographic)
    log_odds = sum(e.weight for e in evidence)
    score = score_of(log_odds)
    decision: Decision = (
        "match" if score >= thresholds.match else "possible" if score >= thresholds.possible else "new"
    )
    return MatchResult(candidate_id, score, decision, _grade(decision, score, thresholds), evidence, log_odds)


def _grade(decision: Decision, score: float, thresholds: MatchThresholds) -> Grade:
    """FHIR match-grade: "certain" is merged automatically; the review band splits into
    "probable" (upper half) and "possible"; a new person is "certainly-not"."""
    if decision == "match":
        return "certain"
    if decision == "possible":
        return "probable" if score >= (thresholds.match + thresholds.possible) / 2 else "possible"
    return "certainly-not"


_DECISION_RANK: Final = {"match": 2, "possible": 1, "new": 0}


def rank_candidates(
    incoming: Demographics, candidates: Iterable[tuple[str, Demographics]], thresholds: MatchThresholds
) -> list[MatchResult]:
    """Every candidate scored, best first: matches, then possible matches, then the rest, each
    by log-odds (an identifier match its demographics contradict ranks below a clean match)."""
    results = [score_pair(incoming, d, cid, thresholds) for cid, d in candidates]
    results.sort(key=lambda r: (_DECISION_RANK[r.decision], r.log_odds), reverse=True)
    return results


# --- blocking -------------------------------------------------------------------------------


def blocking_keys(d: Demographics) -> frozenset[str]:
    """Index keys: two records of one person share at least one despite a typo, a nickname, a
    swapped day and month, a move, a new phone or a new family name; each is selective (a
    name's Soundex with a birth date, a phone, an address, SSN last 4 with a year). Keys are
    "kind:" plus a 16-hex BLAKE2b digest, so the index holds no readable dates or numbers."""
    families = {soundex(f) for f in d.family} - {""}
    givens = {soundex(root) for g in d.given for root in given_roots(g)} - {""}
    plain: set[str] = {f"ph:{phone}" for phone in d.phones}
    plain |= {f"ad:{a.line}|{a.postal_code or a.city}" for a in d.addresses if a.line}
    if d.birth_date is not None:
        low, high = sorted((d.birth_date.month, d.birth_date.day))
        unordered = f"{d.birth_date.year}-{low}-{high}"  # a swapped day and month gives the same
        plain |= {f"fd:{f}:{unordered}" for f in families}
        plain |= {f"gd:{g}:{unordered}" for g in givens}
        plain |= {f"fgmd:{f}:{g}:{low}-{high}" for f in families for g in givens}
    if d.birth_year is not None:
        plain |= {f"fgy:{f}:{g}:{d.birth_year}" for f in families for g in givens}
        if d.ssn_last4:
            plain.add(f"sy:{d.ssn_last4}:{d.birth_year}")
    else:
        plain |= {f"fg:{f}:{g}" for f in families for g in givens}
    if d.ssn_last4:
        plain |= {f"sg:{d.ssn_last4}:{g}" for g in givens}
    return frozenset(_hashed(key) for key in plain)


def _hashed(key: str) -> str:
    kind, _, rest = key.partition(":")
    return f"{kind}:{hashlib.blake2b(rest.encode(), digest_size=8).hexdigest()}"
