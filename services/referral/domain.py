"""Referral domain logic. No I/O here.

`referral_patient` is what referral keeps of each Patient: what a receiving clinic needs to
identify and contact the person a referral is about (name, birth date, record numbers, phone,
address), and nothing more (minimum necessary, 45 CFR 164.502(b)).
"""

from __future__ import annotations

from typing import Any

_KEPT = ("id", "identifier", "name", "birthDate", "gender", "telecom", "address", "communication", "active")


def referral_patient(patient: dict[str, Any]) -> dict[str, Any]:
    return {k: patient[k] for k in _KEPT if k in patient}
