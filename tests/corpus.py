"""The shared test corpus (../shared/corpus beside the checkout): public HL7 v2 messages and FHIR
Questionnaires written by others. See ../shared/corpus/hl7v2/SOURCES.md for where each came from."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
HL7V2 = CORPUS / "hl7v2"


@dataclass(frozen=True)
class CorpusMessage:
    path: Path
    msg_type: str  # MSH-9 as in the manifest, e.g. ADT^A01
    version: str
    has_bom: bool

    @property
    def id(self) -> str:
        return str(self.path.relative_to(HL7V2))


def hl7_messages() -> list[CorpusMessage]:
    with open(HL7V2 / "manifest.csv", newline="") as fh:
        return [
            CorpusMessage(HL7V2 / row["file"], row["msg_type"], row["version"], row["bom"] == "True")
            for row in csv.DictReader(fh)
        ]


def hl7_messages_of_type(prefix: str) -> list[CorpusMessage]:
    return [m for m in hl7_messages() if m.msg_type.startswith(prefix)]
