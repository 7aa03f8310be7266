"""One record per person: every Patient write in intake goes through matching.

- A create (FHIR `POST`, a conditional update that finds nothing, an HL7 message about a
  Patient not known by identifier) is first matched against the people intake holds
  (domain/matching.py): a **match** (shared identifier, or a demographic score at or above the
  match threshold) makes the write an update of that record, identifiers unioned; a **possible
  match** is stored apart and raises a review item (table below, MATCH_REVIEW_EVENT, listed by
  `Patient/$match-reviews`); otherwise it is a new person.
- An update is never merged automatically (two records a person kept apart stay apart): if the
  new demographics match someone else, that raises a review item.
- Candidates come from an index of blocking keys (`patient_match_keys`) kept with each write, so
  a match costs one indexed query and a few hundred comparisons, not a scan.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from services.intake.domain.matching import (
    Demographics,
    MatchResult,
    MatchThresholds,
    blocking_keys,
    demographics,
    rank_candidates,
)
from shared.events import topics
from shared.fhir.events import enqueue_domain_event
from shared.fhir.inbound import merge_resource
from shared.fhir.patient_merge import replaced_by
from shared.fhir.rest import FhirRest, Proceed, WriteHooks, Written
from shared.settings import IntakeSettings
from shared.store import Migration, Transaction, UtcDateTime, create_tables

log = logging.getLogger(__name__)

#: Candidates compared per write at most (the blocking keys are selective; this bounds a bad key).
MAX_CANDIDATES = 200
OPEN, MERGED, DISTINCT = "open", "merged", "distinct"

metadata = sa.MetaData()
match_keys = sa.Table(
    "patient_match_keys",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("patient_id", sa.String(64), primary_key=True),
    sa.Index("ix_patient_match_keys_patient", "patient_id"),
)
match_reviews = sa.Table(
    "patient_match_reviews",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    # The pair, in sorted order, so A~B and B~A are one review.
    sa.Column("patient_a", sa.String(64), nullable=False),
    sa.Column("patient_b", sa.String(64), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("explanation", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("resolved_at", UtcDateTime()),
    sa.Column("resolved_by", sa.String(255)),
    sa.UniqueConstraint("patient_a", "patient_b", name="uq_patient_match_reviews_pair"),
    sa.Index("ix_patient_match_reviews_status", "status", "created_at"),
)
MIGRATIONS = (
    Migration(
        "intake.identity", 1, create_tables(match_keys, match_reviews), "patient matching keys, reviews"
    ),
)


def thresholds_of(settings: IntakeSettings) -> MatchThresholds:
    return MatchThresholds(
        match=settings.patient_match_threshold, possible=settings.patient_possible_threshold
    )


@dataclass(frozen=True, slots=True)
class Review:
    id: str
    patients: tuple[str, str]
    score: float
    decision: str
    explanation: str
    status: str
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None


class PatientIdentity(WriteHooks):
    """The Patient write hooks of intake (see the module docstring)."""

    def __init__(self, settings: IntakeSettings) -> None:
        self.thresholds = thresholds_of(settings)

    async def create(
        self,
        rest: FhirRest,
        tx: Transaction,
        resource: dict[str, Any],
        proceed: Proceed,
        *,
        id_promised: bool,
    ) -> Written:
        incoming = demographics(resource)
        ranked = [] if replaced_by(resource) else await self.rank(rest, tx, incoming, exclude=None)
        best = ranked[0] if ranked else None
        if best is not None and best.decision == "match" and not id_promised:
            # The same person: what was sent is laid over the record held (identifiers unioned).
            log.debug("Patient create matched an existing record: %s", best.explain())
            stored = orjson.loads((await tx.read("Patient", best.candidate_id)).content)
            written = await rest.update(tx, "Patient", best.candidate_id, merge_resource(stored, resource))
            return Written(
                written.stored, 200, f"Matched Patient/{best.candidate_id}, the same person; updated it"
            )
        written = await proceed(resource)
        await index_keys(tx, written.stored.id, incoming)
        await self.raise_reviews(rest, tx, written.stored.id, ranked)
        return written

    async def update(
        self, rest: FhirRest, tx: Transaction, resource: dict[str, Any], proceed: Proceed
    ) -> Written:
        written = await proceed(resource)
        patient_id = written.stored.id
        incoming = demographics(resource)
        await index_keys(tx, patient_id, incoming)
        if resource.get("active") is not False and not replaced_by(resource):
            linked = {_linked(link) for link in resource.get("link") or []}
            ranked = await self.rank(rest, tx, incoming, exclude=patient_id)
            await self.raise_reviews(
                rest, tx, patient_id, [r for r in ranked if r.candidate_id not in linked]
            )
        return written

    async def existing_match(self, rest: FhirRest, tx: Transaction, resource: dict[str, Any]) -> str | None:
        """The Patient an incoming record is (decision "match"), for HL7 messages that name a
        Patient by an identifier intake does not know yet."""
        ranked = await self.rank(rest, tx, demographics(resource), exclude=None)
        return ranked[0].candidate_id if ranked and ranked[0].decision == "match" else None

    async def rank(
        self, rest: FhirRest, tx: Transaction, incoming: Demographics, *, exclude: str | None
    ) -> list[MatchResult]:
        """Candidates sharing a blocking key, scored, best first; merged-away and inactive
        records are not candidates (their survivor is)."""
        keys = sorted(blocking_keys(incoming))
        if not keys:
            return []
        connection = await tx.sql_connection()
        ids = sa.select(match_keys.c.patient_id).where(match_keys.c.key.in_(keys)).distinct()
        if exclude is not None:
            ids = ids.where(match_keys.c.patient_id != exclude)
        resources = rest.store.tables.resources
        query = sa.select(resources.c.id, resources.c.content).where(
            resources.c.resource_type == "Patient",
            resources.c.deleted.is_(False),
            resources.c.id.in_(ids.limit(MAX_CANDIDATES).scalar_subquery()),
        )
        candidates = []
        for row in (await connection.execute(query)).all():
            patient = orjson.loads(row.content)
            if patient.get("active") is False or replaced_by(patient):
                continue
            candidates.append((row.id, demographics(patient)))
        return rank_candidates(incoming, candidates, self.thresholds)

    async def raise_reviews(
        self, rest: FhirRest, tx: Transaction, patient_id: str, ranked: Sequence[MatchResult]
    ) -> None:
        """A review item for each candidate at "possible" or better that is not already
        reviewed (a pair decided "distinct" is not raised again)."""
        for result in ranked:
            if result.decision == "new":
                continue
            review = await open_review(tx, patient_id, result)
            if review is not None:
                await _publish_review(tx, rest, review)


def _linked(link: Any) -> str | None:
    reference = ((link or {}).get("other") or {}).get("reference") if isinstance(link, dict) else None
    return (
        reference[len("Patient/") :]
        if isinstance(reference, str) and reference.startswith("Patient/")
        else None
    )


async def index_keys(tx: Transaction, patient_id: str, incoming: Demographics) -> None:
    """Replace the Patient's blocking keys with those of its current demographics."""
    connection = await tx.sql_connection()
    await connection.execute(sa.delete(match_keys).where(match_keys.c.patient_id == patient_id))
    keys = sorted(blocking_keys(incoming))
    if keys:
        await connection.execute(sa.insert(match_keys), [{"key": k, "patient_id": patient_id} for k in keys])


async def open_review(tx: Transaction, patient_id: str, result: MatchResult) -> Review | None:
    """Insert the review of this pair unless the pair has one (open or decided)."""
    a, b = sorted((patient_id, result.candidate_id))
    connection = await tx.sql_connection()
    existing = await connection.execute(
        sa.select(match_reviews.c.id).where(match_reviews.c.patient_a == a, match_reviews.c.patient_b == b)
    )
    if existing.first() is not None:
        return None
    review = Review(
        uuid.uuid4().hex, (a, b), result.score, result.decision, result.explain(), OPEN, _now(), None, None
    )
    await connection.execute(
        sa.insert(match_reviews).values(
            id=review.id,
            patient_a=a,
            patient_b=b,
            score=review.score,
            decision=review.decision,
            explanation=review.explanation,
            status=OPEN,
            created_at=review.created_at,
        )
    )
    return review


async def list_reviews(tx: Transaction, status: str | None, limit: int) -> list[Review]:
    connection = await tx.sql_connection()
    query = sa.select(match_reviews).order_by(match_reviews.c.created_at, match_reviews.c.id).limit(limit)
    if status:
        query = query.where(match_reviews.c.status == status)
    return [_review(row) for row in (await connection.execute(query)).all()]


async def get_review(tx: Transaction, review_id: str) -> Review | None:
    connection = await tx.sql_connection()
    row = (await connection.execute(sa.select(match_reviews).where(match_reviews.c.id == review_id))).first()
    return _review(row) if row is not None else None


async def close_review(tx: Transaction, review_id: str, status: str, actor: str) -> None:
    connection = await tx.sql_connection()
    await connection.execute(
        sa.update(match_reviews)
        .where(match_reviews.c.id == review_id)
        .values(status=status, resolved_at=_now(), resolved_by=actor)
    )


def _review(row: Any) -> Review:
    return Review(
        row.id,
        (row.patient_a, row.patient_b),
        row.score,
        row.decision,
        row.explanation,
        row.status,
        row.created_at,
        row.resolved_at,
        row.resolved_by,
    )


def review_parameters(review: Review) -> dict[str, Any]:
    """A review as a FHIR Parameters part list (what the event carries and the API lists)."""
    parts: list[dict[str, Any]] = [
        {"name": "id", "valueString": review.id},
        {"name": "patient", "valueReference": {"reference": f"Patient/{review.patients[0]}"}},
        {"name": "patient", "valueReference": {"reference": f"Patient/{review.patients[1]}"}},
        {"name": "score", "valueDecimal": round(review.score, 4)},
        {"name": "decision", "valueCode": review.decision},
        {"name": "explanation", "valueString": review.explanation},
        {"name": "status", "valueCode": review.status},
        {"name": "created", "valueDateTime": review.created_at.isoformat(timespec="seconds")},
    ]
    if review.resolved_at is not None:
        parts.append({"name": "resolved", "valueDateTime": review.resolved_at.isoformat(timespec="seconds")})
    if review.resolved_by:
        parts.append({"name": "resolvedBy", "valueString": review.resolved_by})
    return {"name": "review", "part": parts}


async def _publish_review(tx: Transaction, rest: FhirRest, review: Review) -> None:
    await enqueue_domain_event(
        tx,
        rest.settings,
        topic=topics.PATIENT,
        event_type=topics.MATCH_REVIEW_EVENT,
        subject=f"Patient/{review.patients[0]}",
        key=review.patients[0],
        data={"resourceType": "Parameters", "parameter": [review_parameters(review)]},
    )


def _now() -> datetime:
    return datetime.now(UTC)
