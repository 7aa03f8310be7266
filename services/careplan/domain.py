"""Care-plan domain logic. No I/O here.

`caseload_patient` is what careplan keeps of each Patient it hears about from intake: enough to
list a case manager's caseload (who, born when, which record numbers) without asking intake,
and nothing more (minimum necessary, 45 CFR 164.502(b)).
"""

from __future__ import annotations

from typing import Any

_KEPT = ("id", "identifier", "name", "birthDate", "gender", "active", "link")


def caseload_patient(patient: dict[str, Any]) -> dict[str, Any]:
    return {k: patient[k] for k in _KEPT if k in patient}
