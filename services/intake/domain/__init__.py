"""Intake's clinical logic, without I/O (STYLE.md, "Domain code does no I/O").

- matching.py: is this Patient someone we already know? (identifier, then a demographic score)
- names.py: name folding, nicknames, Soundex for matching
- instruments.py (instrument_model.py, screening_codes.py), scoring.py
  (questionnaire_reading.py), observations.py: screening instruments, their scores and the
  Observations that record them
- responses.py: does a QuestionnaireResponse fit its Questionnaire?
- triage.py: which results raise a safety Flag or an SDOH need
"""
