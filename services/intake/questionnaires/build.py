"""Generates our FHIR R4 Questionnaires (one JSON file per instrument) from the instrument table.

The JSON files beside this script are its output, committed so the service and clients read
plain resources; tests/unit/intake/test_instruments.py fails when they are out of date.
Regenerate with:  python -m services.intake.questionnaires.build

Shape (DOMAIN.md §1.1, SDC): Questionnaire.code = the LOINC panel; each item has linkId
"/<LOINC>" (the LHC-Forms convention), item.code, type choice, and answerOption valueCodings
carrying the ordinalValue extension (the item score) where the answer is scored; required on
every item the scoring needs; the C-SSRS follow-ups use enableWhen; the total (or, for the
C-SSRS, the risk level) is a read-only item that we never trust (DOMAIN.md §1.9). No
calculatedExpression: the server computes the score.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from services.intake.domain import screening_codes as c
from services.intake.domain.instrument_model import Instrument, Item
from services.intake.domain.instruments import CSSRS_SCREENER, INSTRUMENTS

HERE = Path(__file__).resolve().parent
PUBLISHER = "CareBridge"
_RISK_LEVELS = (
    (c.LA_RISK_LOW, "Low"),
    (c.LA_RISK_MODERATE, "Moderate"),
    (c.LA_RISK_HIGH, "High"),
)


def _link_id(code: str) -> str:
    return f"/{code}"


def _answer_option(option_coding: dict[str, str], score: int | None) -> dict[str, Any]:
    option: dict[str, Any] = {"valueCoding": option_coding}
    if score is not None:
        option["extension"] = [{"url": c.ORDINAL_VALUE, "valueDecimal": score}]
    return option


def _question(item: Item) -> dict[str, Any]:
    question: dict[str, Any] = {
        "linkId": _link_id(item.code),
        "code": [{"system": c.LOINC, "code": item.code, "display": item.text}],
        "text": item.text,
        "type": "choice",
        "required": item.required,
    }
    if item.repeats:
        question["repeats"] = True
    if item.enable_when is not None:
        question["enableWhen"] = [
            {
                "question": _link_id(item.enable_when.question),
                "operator": "=",
                "answerCoding": {"system": c.LOINC, "code": item.enable_when.answer},
            }
        ]
    question["answerOption"] = [_answer_option(o.coding.as_fhir(), o.score) for o in item.options]
    return question


def _result_item(instrument: Instrument) -> dict[str, Any] | None:
    if instrument.total is None:
        return None
    result: dict[str, Any] = {
        "linkId": _link_id(instrument.total.code),
        "code": [instrument.total.as_fhir()],
        "text": instrument.total.display,
        "readOnly": True,
    }
    if instrument is CSSRS_SCREENER:
        result["type"] = "choice"
        result["answerOption"] = [
            {"valueCoding": {"system": c.LOINC, "code": code, "display": display}}
            for code, display in _RISK_LEVELS
        ]
    else:
        result["type"] = "integer"
        result["extension"] = [
            {
                "url": c.QUESTIONNAIRE_UNIT,
                "valueCoding": {"system": c.UCUM, "code": c.SCORE_UNIT, "display": c.SCORE_UNIT},
            }
        ]
    return result


def questionnaire_resource(instrument: Instrument) -> dict[str, Any]:
    """Our Questionnaire for an instrument, as FHIR R4 JSON."""
    items = [_question(item) for item in instrument.items]
    result = _result_item(instrument)
    if result is not None:
        items.append(result)
    return {
        "resourceType": "Questionnaire",
        "id": instrument.key,
        "meta": {"profile": [c.SDC_QUESTIONNAIRE_PROFILE]},
        "url": instrument.url,
        "version": instrument.version,
        "name": instrument.name,
        "title": instrument.title,
        "status": "active",
        "subjectType": ["Patient"],
        "publisher": PUBLISHER,
        "copyright": instrument.copyright,
        "code": [instrument.panel.as_fhir()],
        "item": items,
    }


def file_for(instrument: Instrument) -> Path:
    return HERE / f"{instrument.key}.json"


def rendered(instrument: Instrument) -> str:
    return json.dumps(questionnaire_resource(instrument), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    for instrument in INSTRUMENTS:
        file_for(instrument).write_text(rendered(instrument), encoding="utf-8")
        print(file_for(instrument).relative_to(HERE.parents[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
