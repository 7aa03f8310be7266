"""Careplan's domain: pure functions over plain data, no I/O.

- `plans`: the case-management CarePlan, what careplan keeps of a Patient, same-day safety
  activities from intake's triage.
- `valuesets`: which diagnoses, encounter classes and settings count, with their sources.
"""
