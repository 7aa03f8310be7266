"""Careplan's domain: pure functions over plain data, no I/O.

- `plans`: the case-management CarePlan, what careplan keeps of a Patient, same-day safety
  activities from intake's triage.
- `valuesets`: which diagnoses, encounter classes and settings count, with their sources.
- `followup`: post-discharge obligations, their due dates and what completes them.
- `caseload`: programs, case managers, balanced assignment under caseload limits, the CareTeam.
- `measures`, `measure_report`: HEDIS FUH and FUM, and their MeasureReport.
- `measurement_based_care`: PHQ-9 response and remission goals, PHQ-9 re-administration.
"""
