"""What a screening instrument is: items, answer options with scores, bands (data only, no rules)."""

from __future__ import annotations

from dataclasses import dataclass

from services.intake.domain import screening_codes as c


@dataclass(frozen=True, slots=True)
class Coding:
    system: str
    code: str
    display: str

    def as_fhir(self) -> dict[str, str]:
        return {"system": self.system, "code": self.code, "display": self.display}


@dataclass(frozen=True, slots=True)
class AnswerOption:
    code: str  # a LOINC answer (LA) code
    display: str
    score: int | None = None
    # The Gravity SDOH category this answer is evidence of (the AHC tool's underlined answers).
    sdoh_need: str | None = None

    @property
    def coding(self) -> Coding:
        return Coding(c.LOINC, self.code, self.display)


@dataclass(frozen=True, slots=True)
class EnableWhen:
    """Ask this item only when `question` was answered with `answer` (SDC enableWhen)."""

    question: str
    answer: str


@dataclass(frozen=True, slots=True)
class Item:
    code: str
    text: str
    options: tuple[AnswerOption, ...]
    scored: bool = True
    repeats: bool = False  # "choose all that apply"
    required: bool = True
    enable_when: EnableWhen | None = None
    domain: str | None = None  # AHC HRSN domain

    def option(self, code: str) -> AnswerOption | None:
        return next((o for o in self.options if o.code == code), None)

    def option_scoring(self, score: int) -> AnswerOption | None:
        return next((o for o in self.options if o.score == score), None)


@dataclass(frozen=True, slots=True)
class Band:
    low: int
    high: int
    coding: Coding


@dataclass(frozen=True, slots=True)
class Instrument:
    key: str
    name: str  # computable name of our Questionnaire
    title: str
    version: str
    panel: Coding
    total: Coding | None  # the total score, or for the C-SSRS the risk level
    items: tuple[Item, ...]
    bands: tuple[Band, ...]
    positive_at: int | None  # total at or above which the screen is positive
    copyright: str
    sources: tuple[str, ...]
    sdoh: bool = False

    @property
    def url(self) -> str:
        return f"{c.QUESTIONNAIRE_BASE}/{self.key}"

    @property
    def scored_items(self) -> tuple[Item, ...]:
        return tuple(i for i in self.items if i.scored)

    def item(self, code: str) -> Item | None:
        return next((i for i in self.items if i.code == code), None)

    def band_for(self, total: int) -> Band | None:
        return next((b for b in self.bands if b.low <= total <= b.high), None)
