"""What matching knows of a person, from their Patient: languages (preferred first), where they
are (the geolocation of their home address) and their birth date. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from services.referral.domain import directory_codes as codes
from services.referral.domain.directory_index import Position, primary_language
from services.referral.domain.matching import Seeker


def seeker_from_patient(
    patient: Mapping[str, Any] | None,
    *,
    languages: Sequence[str] = (),
    position: Position | None = None,
    qualifications: Iterable[str] = (),
) -> Seeker:
    """What a Patient says about language (communication, preferred first), position (the
    geolocation extension of a home address, else of any) and birth date; given values win."""
    patient = patient or {}
    return Seeker(
        languages=tuple(languages) or patient_languages(patient),
        position=position or patient_position(patient),
        birth_date=_birth_date(patient.get("birthDate")),
        qualifications=frozenset(qualifications),
    )


def patient_languages(patient: Mapping[str, Any]) -> tuple[str, ...]:
    found: list[tuple[bool, str]] = []
    for comm in patient.get("communication") or []:
        for c in (comm.get("language") or {}).get("coding") or []:
            if c.get("code"):
                found.append((comm.get("preferred") is not True, primary_language(str(c["code"]))))
                break
    return tuple(dict.fromkeys(code for _, code in sorted(found, key=lambda item: item[0])))


def patient_position(patient: Mapping[str, Any]) -> Position | None:
    addresses = sorted(patient.get("address") or [], key=lambda a: a.get("use") != "home")
    for address in addresses:
        for ext in address.get("extension") or []:
            if ext.get("url") != codes.GEOLOCATION_EXTENSION:
                continue
            parts = {e.get("url"): e.get("valueDecimal") for e in ext.get("extension") or []}
            lat, lon = parts.get("latitude"), parts.get("longitude")
            if isinstance(lat, int | float) and isinstance(lon, int | float):
                return Position(float(lat), float(lon))
    return None


def _birth_date(text: Any) -> date | None:
    if not isinstance(text, str):
        return None
    # A partial date (YYYY or YYYY-MM) is taken at its middle: ages are whole years anyway.
    full = {4: f"{text}-07-01", 7: f"{text}-15", 10: text}.get(len(text), "")
    try:
        return date.fromisoformat(full)
    except ValueError:
        return None
