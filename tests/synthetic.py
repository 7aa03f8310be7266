"""Synthetic people for tests that go through the gateway.

Every Patient write goes through identity matching (services/intake/patients.py), so two test
patients that share a name and birth date are one person. Tests that need distinct people give
each a unique name from `letters_tag`.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import date, timedelta
from typing import NamedTuple

_DIGITS_TO_LETTERS = str.maketrans("0123456789", "ghijklmnop")


def letters_tag(length: int = 10) -> str:
    """A unique tag of letters only: matching folds names to letters, so digits would not keep
    two synthetic people apart."""
    return uuid.uuid4().hex[:length].translate(_DIGITS_TO_LETTERS)


class SyntheticPerson(NamedTuple):
    family: str
    given: str
    birth_date: date

    @property
    def hl7_name(self) -> str:
        """PID-5 (XPN): family^given."""
        return f"{self.family.upper()}^{self.given.upper()}"

    @property
    def hl7_birth_date(self) -> str:
        """PID-7 (DTM) to the day."""
        return self.birth_date.strftime("%Y%m%d")


def synthetic_person(seed: str) -> SyntheticPerson:
    """The same made-up person for the same seed (an MRN, say), and unrelated people for different
    seeds: a letters-only family name and a birth date between 1940 and 2005, both from a hash."""
    digest = hashlib.sha256(seed.encode()).digest()
    family = "".join(chr(ord("a") + b % 26) for b in digest[:9]).capitalize()
    given = "".join(chr(ord("a") + b % 26) for b in digest[9:15]).capitalize()
    days = int.from_bytes(digest[15:19], "big") % (65 * 365)
    return SyntheticPerson(family, given, date(1940, 1, 1) + timedelta(days=days))


def synthetic_ssn_identifier() -> dict[str, str]:
    """A made-up SSN (area 9xx is never issued): two test people who share a name and a birth
    date on purpose stay two people, because their SSNs disagree."""
    digits = f"{uuid.uuid4().int % 10**8:08d}"
    return {"system": "http://hl7.org/fhir/sid/us-ssn", "value": f"9{digits[:2]}-{digits[2:4]}-{digits[4:]}"}
