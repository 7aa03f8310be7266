"""Does a QuestionnaireResponse fit its Questionnaire? (FHIR R4; issue 5)

`response_problems()` lists every way a response breaks its Questionnaire, in document order;
`check_response()` raises the project's error for them. Index a Questionnaire once with
`index_questionnaire()` and pass the index on every call.

Checked, from R4 questionnaire.html and questionnaireresponse.html: linkIds exist at that nesting
level and follow the Questionnaire's order; groups carry items and no answers, display items carry
nothing, a question's nested items sit under `answer.item` (qrs-1); a question appears once per level
(qrs-2); value[x] fits the item type and is valid JSON for it; choice answers are among the
answerOptions or the codes of a contained ValueSet; `repeats`; `maxLength`; the minValue/maxValue
extensions; enableWhen (all operators, enableBehavior) and `required`, which binds only a
definitive response (status completed or amended) and only items that are enabled.

Not checked, on purpose:
- answerValueSet that is not a contained, enumerable ValueSet: expanding it needs a terminology
  server, so any Coding is accepted.
- SDC enableWhenExpression (FHIRPath/CQL): such an item's enablement is unknown, so it is neither
  required nor refused for being answered. The same holds for an enableWhen that cannot be
  evaluated (unknown question, junk answer[x]) or is circular.
- Item `text` against the Questionnaire, `initial`, `readOnly` (calculated totals may be answered),
  answers given only as a primitive extension (`_valueString`), and whether QR.questionnaire names
  this Questionnaire (the caller resolved it from that reference).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from shared.errors import BusinessRuleViolation, InvalidInput

__all__ = [
    "ItemDefinition",
    "QuestionnaireIndex",
    "ResponseProblem",
    "check_response",
    "index_questionnaire",
    "questionnaire_reference",
    "response_problems",
]

ROOT = "QuestionnaireResponse"
MIN_VALUE = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_VALUE = "http://hl7.org/fhir/StructureDefinition/maxValue"
# R4 QuestionnaireResponse.status; `required` binds the statuses that say the content is definitive.
STATUSES = frozenset({"in-progress", "completed", "amended", "entered-in-error", "stopped"})
DEFINITIVE_STATUSES = frozenset({"completed", "amended"})
OPERATORS = frozenset({"exists", "=", "!=", ">", "<", ">=", "<="})

# R4 Questionnaire.item.type -> QuestionnaireResponse.item.answer.value[x] (questionnaire.html).
ANSWER_TYPES: dict[str, frozenset[str]] = {
    "boolean": frozenset({"valueBoolean"}),
    "decimal": frozenset({"valueDecimal"}),
    "integer": frozenset({"valueInteger"}),
    "date": frozenset({"valueDate"}),
    "dateTime": frozenset({"valueDateTime"}),
    "time": frozenset({"valueTime"}),
    "string": frozenset({"valueString"}),
    "text": frozenset({"valueString"}),
    "url": frozenset({"valueUri"}),
    "choice": frozenset({"valueCoding"}),
    "open-choice": frozenset({"valueCoding", "valueString"}),
    "attachment": frozenset({"valueAttachment"}),
    "reference": frozenset({"valueReference"}),
    "quantity": frozenset({"valueQuantity"}),
    "group": frozenset(),
    "display": frozenset(),
}
ANY_ANSWER = frozenset().union(*ANSWER_TYPES.values())  # for item types R4 does not define
OPTION_TYPES = frozenset(
    {"valueInteger", "valueDate", "valueTime", "valueString", "valueCoding", "valueReference"}
)
_KIND = {
    "valueBoolean": "boolean", "valueDecimal": "number", "valueInteger": "number",
    "valueDate": "moment", "valueDateTime": "moment", "valueInstant": "moment", "valueTime": "time",
    "valueString": "string", "valueUri": "string", "valueCoding": "coding",
    "valueQuantity": "quantity", "valueReference": "reference", "valueAttachment": "attachment",
}  # fmt: skip

# FHIR R4 datatype regexes (datatypes.html).
_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_DATE = re.compile(_YEAR + r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?", re.ASCII)
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_DATE_TIME = re.compile(
    _YEAR + r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T" + _TIME
    + r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?",
    re.ASCII,
)  # fmt: skip
_TIME_ONLY = re.compile(_TIME, re.ASCII)


@dataclass(frozen=True, slots=True)
class ResponseProblem:
    link_id: str | None
    expression: str  # FHIRPath into the QuestionnaireResponse (OperationOutcome.issue.expression)
    code: str  # OperationOutcome.issue.code
    message: str  # names the item; never echoes a patient's answer beyond a code
    malformed: bool = False  # True: the response is malformed (400); False: it breaks a rule (422)


@dataclass(frozen=True, slots=True)
class _Condition:
    question: str
    operator: str
    expected: tuple[str, Any]  # answer[x] renamed to value[x], e.g. ("valueCoding", {...})


@dataclass(frozen=True, slots=True)
class AnswerOptions:
    value_types: frozenset[str]
    codings: frozenset[tuple[str | None, str]] | None  # None: the codes cannot be listed here
    values: frozenset[tuple[str, Any]]  # the options that are not codings
    source: str


@dataclass(frozen=True, slots=True, eq=False)
class ItemDefinition:
    link_id: str
    type: str
    text: str | None
    required: bool
    repeats: bool
    answer_types: frozenset[str]
    options: AnswerOptions | None
    max_length: int | None
    min_value: tuple[str, Any] | None
    max_value: tuple[str, Any] | None
    enable_when: tuple[_Condition | None, ...]  # None: a condition that cannot be evaluated
    enable_any: bool
    enabled_by_expression: bool
    path: tuple[str, ...]  # linkIds from the top level down to this item
    children: dict[str, tuple[int, ItemDefinition]]  # linkId -> (position, definition)

    @property
    def is_question(self) -> bool:
        return self.type not in ("group", "display")


Items = dict[str, tuple[int, ItemDefinition]]  # linkId -> (position among siblings, definition)


@dataclass(frozen=True, slots=True)
class QuestionnaireIndex:
    url: str | None
    version: str | None
    items: Items
    by_link_id: dict[str, ItemDefinition]


def index_questionnaire(questionnaire: dict[str, Any]) -> QuestionnaireIndex:
    """The Questionnaire's items by linkId, for validating many responses. Junk items are skipped;
    of two items with one linkId (que-2 forbids it) the first wins."""
    if not isinstance(questionnaire, dict) or questionnaire.get("resourceType") != "Questionnaire":
        raise InvalidInput("This is not a FHIR Questionnaire.", expression=["Questionnaire"])
    valuesets = {
        c["id"]: c
        for c in _list(questionnaire.get("contained"))
        if isinstance(c, dict) and c.get("resourceType") == "ValueSet" and isinstance(c.get("id"), str)
    }
    by_link_id: dict[str, ItemDefinition] = {}
    items = _index_items(questionnaire.get("item"), (), valuesets, by_link_id)
    return QuestionnaireIndex(
        _str(questionnaire.get("url")), _str(questionnaire.get("version")), items, by_link_id
    )


def _index_items(
    raw_items: Any, parent: tuple[str, ...], valuesets: dict[str, Any], by_link_id: dict[str, ItemDefinition]
) -> Items:
    items: Items = {}
    for raw in _list(raw_items):
        link_id = raw.get("linkId") if isinstance(raw, dict) else None
        if not isinstance(link_id, str) or link_id in by_link_id or link_id in items:
            continue
        definition = _define_item(raw, (*parent, link_id), valuesets, by_link_id)
        by_link_id[link_id] = definition
        items[link_id] = (len(items), definition)
    return items


def _define_item(
    raw: dict[str, Any],
    path: tuple[str, ...],
    valuesets: dict[str, Any],
    by_link_id: dict[str, ItemDefinition],
) -> ItemDefinition:
    item_type = _str(raw.get("type")) or ""
    options = _answer_options(raw, valuesets)
    answer_types = ANSWER_TYPES.get(item_type, ANY_ANSWER)
    if options is not None and item_type in ("choice", "open-choice"):
        answer_types = answer_types | options.value_types
    urls = {e["url"]: e for e in _list(raw.get("extension")) if isinstance(e, dict) and _str(e.get("url"))}
    return ItemDefinition(
        link_id=path[-1],
        type=item_type,
        text=_str(raw.get("text")),
        required=raw.get("required") is True,
        repeats=raw.get("repeats") is True,
        answer_types=answer_types,
        options=options,
        max_length=raw["maxLength"] if type(raw.get("maxLength")) is int else None,
        min_value=_answer_value(urls.get(MIN_VALUE)),
        max_value=_answer_value(urls.get(MAX_VALUE)),
        enable_when=tuple(_condition(c) for c in _list(raw.get("enableWhen"))),
        enable_any=raw.get("enableBehavior") == "any",
        enabled_by_expression=any(url.endswith("enableWhenExpression") for url in urls),
        path=path,
        children=_index_items(raw.get("item"), path, valuesets, by_link_id),
    )


def _condition(raw: Any) -> _Condition | None:
    if (
        not isinstance(raw, dict)
        or _str(raw.get("operator")) not in OPERATORS
        or not _str(raw.get("question"))
    ):
        return None
    expected = _single_value(raw, "answer")
    if expected is None or _json_problem(expected[0], expected[1]):
        return None
    return _Condition(raw["question"], raw["operator"], expected)


def _answer_options(raw: dict[str, Any], valuesets: dict[str, Any]) -> AnswerOptions | None:
    types: set[str] = set()
    codings: set[tuple[str | None, str]] = set()
    values: set[tuple[str, Any]] = set()
    for option in _list(raw.get("answerOption")):
        for key in OPTION_TYPES.intersection(option) if isinstance(option, dict) else ():
            types.add(key)
            if key == "valueCoding" and isinstance(option[key], dict) and _str(option[key].get("code")):
                codings.add((_str(option[key].get("system")), option[key]["code"]))
            elif (value := _comparable(key, option[key])) is not None:
                values.add((key, value))
    if types:
        return AnswerOptions(frozenset(types), frozenset(codings), frozenset(values), "answerOptions")
    reference = _str(raw.get("answerValueSet"))
    if reference is None:
        return None
    codes = _valueset_codes(valuesets.get(reference[1:])) if reference.startswith("#") else None
    return AnswerOptions(frozenset({"valueCoding"}), codes, frozenset(), f"ValueSet {reference}")


def _valueset_codes(valueset: Any) -> frozenset[tuple[str | None, str]] | None:
    """The codes of a contained ValueSet, when it lists them (an expansion, or compose concepts
    without filters or imports); None when it would take a terminology server."""
    if not isinstance(valueset, dict):
        return None
    codes: set[tuple[str | None, str]] = set()
    expansion = valueset.get("expansion")
    if isinstance(expansion, dict) and _list(expansion.get("contains")):
        stack = list(_list(expansion["contains"]))
        while stack:
            entry = stack.pop()
            if isinstance(entry, dict):
                stack.extend(_list(entry.get("contains")))
                if _str(entry.get("code")):
                    codes.add((_str(entry.get("system")), entry["code"]))
        return frozenset(codes)
    compose = valueset.get("compose")
    if not isinstance(compose, dict) or not _list(compose.get("include")):
        return None
    listed: dict[str, set[tuple[str | None, str]]] = {"include": set(), "exclude": set()}
    for part, found in listed.items():
        for rule in _list(compose.get(part)):
            if (
                not isinstance(rule, dict)
                or rule.get("filter")
                or rule.get("valueSet")
                or not rule.get("concept")
            ):
                return None
            found.update(
                (_str(rule.get("system")), c["code"])
                for c in _list(rule["concept"])
                if isinstance(c, dict) and _str(c.get("code"))
            )
    return frozenset(listed["include"] - listed["exclude"])


def questionnaire_reference(response: dict[str, Any]) -> tuple[str, str | None]:
    """(canonical url, version or None) from QuestionnaireResponse.questionnaire "url|version"."""
    reference = response.get("questionnaire") if isinstance(response, dict) else None
    if not isinstance(reference, str) or not reference.strip():
        raise InvalidInput(
            "QuestionnaireResponse.questionnaire is missing: a response must name its Questionnaire.",
            expression=[f"{ROOT}.questionnaire"],
            issue_code="required",
        )
    url, _, version = reference.partition("|")
    if not url or any(c.isspace() for c in reference):
        raise InvalidInput(
            "QuestionnaireResponse.questionnaire is not a canonical URL (url or url|version).",
            expression=[f"{ROOT}.questionnaire"],
            issue_code="value",
        )
    return url, version or None


def response_problems(
    questionnaire: dict[str, Any] | QuestionnaireIndex, response: dict[str, Any]
) -> list[ResponseProblem]:
    """Every way `response` breaks `questionnaire`, in document order; empty when it fits."""
    index = (
        questionnaire if isinstance(questionnaire, QuestionnaireIndex) else index_questionnaire(questionnaire)
    )
    if not isinstance(response, dict):
        return [
            ResponseProblem(None, ROOT, "structure", "The QuestionnaireResponse is not a JSON object.", True)
        ]
    checker = _Checker(index, response)
    checker.check_header(response)
    root = _Node(response, ROOT, None, None, [])
    if "item" in response and not isinstance(response["item"], list):
        checker.malformed(None, f"{ROOT}.item", "structure", "QuestionnaireResponse.item must be a list.")
    _parse(response.get("item"), root, index.items, ROOT, None)
    checker.check_level(root, root.children, index.items, ROOT, off=False)
    return checker.problems


def check_response(questionnaire: dict[str, Any] | QuestionnaireIndex, response: dict[str, Any]) -> None:
    """Raise InvalidInput (malformed: 400) or BusinessRuleViolation (breaks a rule: 422) naming the
    first problem, malformed ones first, and counting the others; return when the response fits."""
    problems = response_problems(questionnaire, response)
    if not problems:
        return
    first = next((p for p in problems if p.malformed), problems[0])
    message = first.message
    if len(problems) > 1:
        others = len(problems) - 1
        message = f"{message.rstrip('.')}, and {others} more problem{'s' if others > 1 else ''}."
    error = InvalidInput if first.malformed else BusinessRuleViolation
    raise error(message, expression=[first.expression], issue_code=first.code)


@dataclass(eq=False, slots=True)
class _Node:
    """One QuestionnaireResponse item (or the response itself, the root) as found."""

    raw: Any
    path: str
    definition: ItemDefinition | None  # None: the root, junk, or an item not allowed here
    parent: _Node | None
    answers: list[Any]
    answer_index: int | None = None  # which answer of the parent question holds this item
    children: list[_Node] = field(default_factory=list)  # item[] of groups, answer[].item of questions


def _parse(raw_items: Any, parent: _Node, definitions: Items, base: str, answer: int | None) -> None:
    for i, raw in enumerate(_list(raw_items)):
        link_id = raw.get("linkId") if isinstance(raw, dict) else None
        entry = definitions.get(link_id) if isinstance(link_id, str) else None
        answers = _list(raw.get("answer")) if isinstance(raw, dict) else []
        node = _Node(raw, f"{base}.item[{i}]", entry[1] if entry else None, parent, answers, answer)
        parent.children.append(node)
        if entry is None:
            continue
        if entry[1].type == "group":
            _parse(raw.get("item"), node, entry[1].children, node.path, None)
        elif entry[1].is_question:
            for j, given in enumerate(answers):
                if isinstance(given, dict):
                    _parse(given.get("item"), node, entry[1].children, f"{node.path}.answer[{j}]", j)


class _Checker:
    """One pass over the parsed response; `problems` fills in document order. Messages about a
    known item start with its description: `what` continues that sentence."""

    def __init__(self, index: QuestionnaireIndex, response: dict[str, Any]):
        self.index = index
        self.problems: list[ResponseProblem] = []
        self.enforce_required = _str(response.get("status")) in DEFINITIVE_STATUSES
        self._enabled: dict[_Node, bool | None] = {}
        self._evaluating: set[_Node] = set()

    def add(
        self, item: ItemDefinition | str | None, path: str, code: str, what: str, malformed: bool
    ) -> None:
        if isinstance(item, ItemDefinition):
            self.problems.append(ResponseProblem(item.link_id, path, code, _describe(item) + what, malformed))
        else:
            self.problems.append(ResponseProblem(item, path, code, what, malformed))

    def malformed(self, item: ItemDefinition | str | None, path: str, code: str, what: str) -> None:
        self.add(item, path, code, what, True)

    def breaks(self, item: ItemDefinition, path: str, code: str, what: str) -> None:
        self.add(item, path, code, what, False)

    def check_header(self, response: dict[str, Any]) -> None:
        if response.get("resourceType") != "QuestionnaireResponse":
            self.malformed(None, ROOT, "invalid", "resourceType must be QuestionnaireResponse.")
        try:
            questionnaire_reference(response)
        except InvalidInput as exc:
            self.malformed(None, f"{ROOT}.questionnaire", exc.issue_code, exc.diagnostics)
        status = response.get("status")
        if status is None:
            self.malformed(None, f"{ROOT}.status", "required", "QuestionnaireResponse.status is missing.")
        elif _str(status) not in STATUSES:
            self.malformed(None, f"{ROOT}.status", "value", "QuestionnaireResponse.status is not an R4 code.")

    def check_level(
        self, parent: _Node, nodes: list[_Node], definitions: Items, container: str, off: bool
    ) -> None:
        """The items at one level: under the root, a group instance or one answer. `off`: an
        enclosing item is disabled (and was reported if answered)."""
        last_position, seen = -1, dict[str, int]()
        for node in nodes:
            last_position = self._check_item(node, definitions, last_position, seen, off)
        if self.enforce_required and not off:
            self._check_required(parent, nodes, definitions, container)

    def _check_item(self, node: _Node, definitions: Items, last: int, seen: dict[str, int], off: bool) -> int:
        raw, item = node.raw, node.definition
        if not isinstance(raw, dict):
            self.malformed(
                None, node.path, "structure", f"{node.path} must be an object, not {_json_type(raw)}."
            )
            return last
        if item is None:
            self._not_allowed_here(node, raw.get("linkId"))
            return last
        position = definitions[item.link_id][0]
        if position < last:  # R4: items SHALL be in the same order as in the Questionnaire
            self.malformed(item, node.path, "structure", " is out of the Questionnaire's order.")
        seen[item.link_id] = count = seen.get(item.link_id, 0) + 1
        if count > 1 and item.is_question:
            what = " appears more than once here; list all its answers in one item (qrs-2)."
            self.malformed(item, node.path, "structure", what)
        elif count > 1 and not item.repeats:
            self.breaks(item, node.path, "business-rule", " does not repeat but appears again.")
        if not off and self._is_enabled(node) is False:
            off = True
            if _has_any_answer(node):
                what = " is answered, but its enableWhen conditions are not met."
                self.breaks(item, node.path, "business-rule", what)
        if item.is_question:
            self._check_question(node, item, raw, off)
        else:
            self._check_group_or_display(node, item, raw, off)
        return max(position, last)

    def _not_allowed_here(self, node: _Node, link_id: Any) -> None:
        if not isinstance(link_id, str) or not link_id:
            self.malformed(None, node.path, "structure", f"{node.path} has no linkId.")
        elif (home := self.index.by_link_id.get(link_id)) is None:
            what = f"Item '{link_id[:64]}' is not in the Questionnaire."
            self.malformed(link_id, node.path, "structure", what)
        else:
            where = f"under '{home.path[-2]}'" if len(home.path) > 1 else "at the top level"
            what = f" is not allowed here: the Questionnaire places it {where}."
            self.malformed(home, node.path, "structure", what)

    def _check_group_or_display(
        self, node: _Node, item: ItemDefinition, raw: dict[str, Any], off: bool
    ) -> None:
        kind = "a group" if item.type == "group" else "display text"
        if "answer" in raw:
            self.malformed(item, f"{node.path}.answer", "structure", f" is {kind}: it takes no answers.")
        if item.type == "display":
            if "item" in raw:
                self.malformed(item, f"{node.path}.item", "structure", f" is {kind}: it takes no items.")
            return
        if "item" in raw and not isinstance(raw["item"], list):
            self.malformed(item, f"{node.path}.item", "structure", ": item must be a list.")
        self.check_level(node, node.children, item.children, node.path, off)

    def _check_question(self, node: _Node, item: ItemDefinition, raw: dict[str, Any], off: bool) -> None:
        if "item" in raw:  # qrs-1; a question's nested items belong to one of its answers
            what = " is a question: nested items belong under answer.item."
            self.malformed(item, f"{node.path}.item", "structure", what)
        if "answer" in raw and not isinstance(raw["answer"], list):
            self.malformed(item, f"{node.path}.answer", "structure", ": answer must be a list.")
            return
        if len(node.answers) > 1 and not item.repeats:
            what = f" does not repeat but has {len(node.answers)} answers."
            self.breaks(item, f"{node.path}.answer[1]", "business-rule", what)
        for j, answer in enumerate(node.answers):
            path = f"{node.path}.answer[{j}]"
            self._check_answer(item, answer, path)
            if isinstance(answer, dict):
                if "item" in answer and not isinstance(answer["item"], list):
                    self.malformed(item, f"{path}.item", "structure", ": item must be a list.")
                nested = [c for c in node.children if c.answer_index == j]
                self.check_level(node, nested, item.children, path, off)

    def _check_answer(self, item: ItemDefinition, answer: Any, path: str) -> None:
        if not isinstance(answer, dict):
            self.malformed(item, path, "structure", ": each answer must be an object.")
            return
        keys = [k for k in answer if k.startswith("value")]
        if len(keys) != 1:
            if keys or "item" not in answer:
                self.malformed(
                    item, path, "structure", f": an answer has {'more than one' if keys else 'no'} value."
                )
            return
        key, value = keys[0], answer[keys[0]]
        path = f"{path}.{key}"
        if key not in item.answer_types:
            takes = " or ".join(sorted(item.answer_types)) or "no answer"
            self.malformed(
                item, path, "value", f": {key} does not fit a {item.type} item, which takes {takes}."
            )
        elif requirement := _json_problem(key, value):
            self.malformed(item, path, "value", f": {key} must be {requirement}, not {_json_type(value)}.")
        else:
            self._check_answer_rules(item, key, value, path)

    def _check_answer_rules(self, item: ItemDefinition, key: str, value: Any, path: str) -> None:
        if (not_an_option := _not_an_option(item, key, value)) is not None:
            self.breaks(item, path, "code-invalid", f": {not_an_option}")
        for bound, sign, word in (
            (item.min_value, -1, "below the minValue"),
            (item.max_value, 1, "above the maxValue"),
        ):
            if bound is not None and _compare((key, value), bound) == sign:
                self.breaks(item, path, "value", f": the answer is {word} {_show(bound)}.")
        too_long = (
            item.max_length is not None
            and key in ("valueString", "valueUri")
            and len(value) > item.max_length
        )
        if too_long:
            self.breaks(
                item, path, "value", f": the answer is longer than its maxLength of {item.max_length}."
            )

    def _check_required(self, parent: _Node, nodes: list[_Node], definitions: Items, container: str) -> None:
        """R4 `required`: a question needs an answer of its own, a group an answered descendant;
        only within a parent that is present, and only while the item is enabled."""
        for link_id, (_, item) in definitions.items():
            if not item.required or item.type == "display":
                continue
            present = [n for n in nodes if n.definition is item]
            if any(_answered(n) for n in present) or self._conditions_hold(item, parent) is not True:
                continue
            path = present[0].path if present else f"{container}.item.where(linkId='{link_id}')"
            what = "none of its questions is answered" if item.type == "group" else "it has no answer"
            self.breaks(item, path, "required", f" is required, but {what}.")

    def _is_enabled(self, node: _Node) -> bool | None:
        """True, False, or None when it cannot be told (SDC expression, broken or circular enableWhen)."""
        if node.definition is None or node.parent is None:
            return True
        if node in self._enabled:
            return self._enabled[node]
        if node in self._evaluating:
            return None
        self._evaluating.add(node)
        try:
            above = self._is_enabled(node.parent)
            own = False if above is False else self._conditions_hold(node.definition, node.parent)
        finally:
            self._evaluating.discard(node)
        self._enabled[node] = result = _all((above, own))
        return result

    def _conditions_hold(self, item: ItemDefinition, context: _Node) -> bool | None:
        if item.enabled_by_expression:
            return None
        if not item.enable_when:
            return True
        results = [None if c is None else self._condition_holds(c, context) for c in item.enable_when]
        if item.enable_any:  # enableBehavior; R4 requires it with several conditions, "all" if absent
            return True if True in results else (None if None in results else False)
        return _all(results)

    def _condition_holds(self, condition: _Condition, context: _Node) -> bool | None:
        question = self.index.by_link_id.get(condition.question)
        if question is None or not question.is_question:
            return None
        answers = self._answers_in_scope(question, context)
        expected, operator = condition.expected, condition.operator
        if operator == "exists":
            return bool(answers) == expected[1] if expected[0] == "valueBoolean" else None  # que-7
        if operator in ("=", "!="):
            equal = any(_equal(expected, a) for a in answers)
            return equal if operator == "=" else not equal  # "!=": no answer equals it
        signs = {">": (1,), "<": (-1,), ">=": (0, 1), "<=": (-1, 0)}[operator]
        return any(_compare(a, expected) in signs for a in answers)

    def _answers_in_scope(self, question: ItemDefinition, context: _Node) -> list[tuple[str, Any]]:
        """The answers of `question` in the nearest instance of the innermost item that holds both
        it and `context` (R4: a repeating group's conditions read their own repetition). An
        instance that is itself disabled counts as unanswered (R4 Questionnaire.item.enableWhen)."""
        scope = context
        while scope.definition is not None and scope.definition.link_id not in question.path:
            assert scope.parent is not None
            scope = scope.parent
        start = 0 if scope.definition is None else question.path.index(scope.definition.link_id) + 1
        found = [scope]
        for link_id in question.path[start:]:
            found = [c for n in found for c in n.children if c.definition and c.definition.link_id == link_id]
        answers: list[tuple[str, Any]] = []
        for node in found:
            if self._is_enabled(node) is not False:
                answers.extend(v for v in map(_answer_value, node.answers) if v is not None)
        return answers


def _not_an_option(item: ItemDefinition, key: str, value: Any) -> str | None:
    """Why a choice answer is not among the item's options, or None when it is (or cannot be told:
    an open-choice's free text, or a ValueSet that cannot be listed here)."""
    options = item.options
    if options is None or item.type not in ("choice", "open-choice"):
        return None
    if key == "valueCoding":
        if options.codings is None:
            return None
        system, code = _str(value.get("system")), value["code"]
        if (system, code) in options.codings or (None, code) in options.codings:
            return None
        label = f"{system}|{code}" if system else code
        return f"{label[:200]} is not one of its {options.source}."
    if item.type == "open-choice" and key == "valueString":
        return None
    if (key, _comparable(key, value)) in options.values:
        return None
    return f"the answer is not one of its {options.source}."


def _all(results: Any) -> bool | None:
    results = tuple(results)
    return False if False in results else (None if None in results else True)


def _answer_value(answer: Any) -> tuple[str, Any] | None:
    value = _single_value(answer, "value")
    return value if value is not None and not _json_problem(*value) else None


def _answered(node: _Node) -> bool:
    if node.definition is not None and node.definition.type == "group":
        return any(_answered(c) for c in node.children)
    return any(_answer_value(a) is not None for a in node.answers)


def _has_any_answer(node: _Node) -> bool:
    return any(isinstance(a, dict) and any(k.startswith("value") for k in a) for a in node.answers) or any(
        _has_any_answer(c) for c in node.children
    )


def _single_value(element: Any, prefix: str) -> tuple[str, Any] | None:
    """("valueX", value) from the one `{prefix}X` key of an element (answer[x] becomes valueX)."""
    if not isinstance(element, dict):
        return None
    keys = [k for k in element if k.startswith(prefix)]
    return ("value" + keys[0][len(prefix) :], element[keys[0]]) if len(keys) == 1 else None


def _json_problem(key: str, value: Any) -> str | None:
    """What `value` must be to be a valid FHIR JSON `key`, or None when it is."""
    if key == "valueBoolean":
        return None if isinstance(value, bool) else "true or false"
    if key == "valueInteger":
        ok = type(value) is int and -(2**31) <= value < 2**31
        return None if ok else "a whole number between -2147483648 and 2147483647"
    if key == "valueDecimal":
        ok = type(value) in (int, float) and value == value and abs(value) != float("inf")
        return None if ok else "a number"
    if key in ("valueDate", "valueDateTime", "valueInstant", "valueTime"):
        pattern = {"valueDate": _DATE, "valueTime": _TIME_ONLY}.get(key, _DATE_TIME)
        return (
            None
            if isinstance(value, str) and pattern.fullmatch(value) and _real_date(value)
            else _FORMATS[key]
        )
    if key in ("valueString", "valueUri"):
        ok = (
            isinstance(value, str)
            and value != ""
            and not (key == "valueUri" and any(c.isspace() for c in value))
        )
        return None if ok else "a non-empty string" + (" without spaces" if key == "valueUri" else "")
    if key == "valueCoding":
        ok = isinstance(value, dict) and bool(_str(value.get("code"))) and _optional_str(value, "system")
        return None if ok else "a Coding with a code"
    if key == "valueQuantity":
        number = value.get("value") if isinstance(value, dict) else None
        return None if type(number) in (int, float) else "a Quantity with a numeric value"
    if key == "valueReference":
        ok = isinstance(value, dict) and any(k in value for k in ("reference", "identifier", "display"))
        return None if ok and _optional_str(value, "reference") else "a Reference"
    if key == "valueAttachment":
        return None if isinstance(value, dict) and value else "an Attachment"
    return "an R4 answer type"


_FORMATS = {
    "valueDate": "a date (YYYY, YYYY-MM or YYYY-MM-DD)",
    "valueDateTime": "a dateTime (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a time zone)",
    "valueInstant": "an instant (YYYY-MM-DDThh:mm:ss with a time zone)",
    "valueTime": "a time (hh:mm:ss)",
}


def _real_date(value: str) -> bool:
    if len(value) < 10 or value[2] == ":":
        return True
    try:
        date.fromisoformat(value[:10])
    except ValueError:
        return False
    return True


def _optional_str(element: dict[str, Any], key: str) -> bool:
    return key not in element or isinstance(element[key], str)


def _comparable(key: str, value: Any) -> Any:
    """A hashable form of an option or answer that is not a Coding, or None."""
    if key == "valueReference":
        return _str(value.get("reference")) if isinstance(value, dict) else None
    if key == "valueInteger":
        return value if type(value) is int else None
    return value if isinstance(value, str) else None


def _equal(expected: tuple[str, Any], actual: tuple[str, Any]) -> bool:
    kind = _KIND.get(expected[0])
    if kind != _KIND.get(actual[0]):
        return False
    if kind == "coding":  # the Questionnaire's coding decides: when it names a system, so must the answer
        system = _str(expected[1].get("system"))
        return expected[1]["code"] == actual[1].get("code") and (
            system is None or system == actual[1].get("system")
        )
    if kind == "reference":
        return _comparable(*expected) == _comparable(*actual)
    if kind in ("boolean", "attachment"):
        return bool(expected[1] == actual[1])
    return _compare(actual, expected) == 0


def _compare(actual: tuple[str, Any], bound: tuple[str, Any]) -> int | None:
    """-1, 0 or 1 comparing two answers of one ordered kind; None when they do not compare. Dates
    compare at the shorter precision ("2020" is not below "2020-05-01"); time zones are not resolved."""
    kind = _KIND.get(actual[0])
    if kind != _KIND.get(bound[0]) or kind not in ("number", "moment", "time", "string", "quantity"):
        return None
    a, b = actual[1], bound[1]
    if kind == "quantity":
        unit_a, unit_b = a.get("code", a.get("unit")), b.get("code", b.get("unit"))
        if unit_a and unit_b and unit_a != unit_b:
            return None
        a, b = a.get("value"), b.get("value")
    elif kind in ("moment", "time"):
        a, b = a[: min(len(a), len(b))], b[: min(len(a), len(b))]
    return (a > b) - (a < b)


def _describe(item: ItemDefinition) -> str:
    if not item.text:
        return f"Item '{item.link_id}'"
    text = item.text if len(item.text) <= 80 else item.text[:77] + "..."
    return f"Item '{item.link_id}' (\"{text}\")"


def _show(bound: tuple[str, Any]) -> str:
    return str(bound[1].get("value")) if isinstance(bound[1], dict) else str(bound[1])


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    kinds = ((str, "a string"), ((int, float), "a number"), (dict, "an object"), (list, "a list"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "something else")


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
