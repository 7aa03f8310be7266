"""Our shipped FHIR Questionnaires, generated from the instrument table by build.py."""
