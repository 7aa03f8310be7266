"""Referral domain logic. No I/O here.

- workflow.py: the closed loop, the Gravity SDOHCC Task for Referral Management and its state
  machine by role.
- directory_codes.py, directory.py, directory_import.py: the resource directory as data (its
  codes, CSV rows to resources, opening hours, importing a Bundle as conditional updates).
- directory_index.py, matching.py, opening_hours.py, seeker.py, match_parameters.py: ranking
  services for needs with the reason for every rank, and HealthcareService/$match's Parameters
  and searchset.

`referral_patient` is what referral keeps of each Patient: what a receiving clinic needs to
identify and contact the person a referral is about (name, birth date, record numbers, phone,
address), and nothing more (minimum necessary, 45 CFR 164.502(b)).
"""

from __future__ import annotations

from typing import Any

_KEPT = ("id", "identifier", "name", "birthDate", "gender", "telecom", "address", "communication", "active")


def referral_patient(patient: dict[str, Any]) -> dict[str, Any]:
    return {k: patient[k] for k in _KEPT if k in patient}
