"""The store's core tables, described with SQLAlchemy Core so one definition serves both databases.

Tables are built per `Store` (`CoreTables(metadata)`) rather than at import, so two stores in
one process never share or collide in a MetaData.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

#: FHIR ids are at most 64 characters ([A-Za-z0-9-.]{1,64}); resource type names are shorter.
ID_LENGTH = 64

#: Derived rows in idx_string, under the parameter's name with a suffix (a search parameter's
#: own name never contains ":"): display texts of a token parameter for `:text`, and a string
#: parameter's values as written for `:exact` (see indexing.py).
TEXT_SUFFIX = ":text"
EXACT_SUFFIX = ":exact"


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both databases.

    PostgreSQL stores `timestamptz`. SQLite has no datetime type: SQLAlchemy writes a
    fixed-width "YYYY-MM-DD HH:MM:SS.ffffff" string, which sorts and compares correctly as
    text, but drops the offset, so values are converted to UTC going in and marked UTC coming out.
    The store's driver-level SQL writes the same text (`driver.sqlite_time`).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UtcDateTime needs a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _binary_collation_text() -> TypeEngine[Any]:
    # Prefix search runs as a range scan (value >= 'jos' AND value < 'jot') on the index, which
    # is only right under code-point order: SQLite's default BINARY collation is, PostgreSQL's
    # database collation (e.g. en_US) is not, so PostgreSQL gets COLLATE "C".
    return Text().with_variant(Text(collation="C"), "postgresql")


class CoreTables:
    """Current resources, their history, search indexes, outbox, inbox and projections."""

    def __init__(self, metadata: MetaData) -> None:
        self.metadata = metadata
        self.schema_migrations = Table(
            "schema_migrations", metadata,
            Column("component", String(100), nullable=False),
            Column("version", Integer, nullable=False),
            Column("description", Text, nullable=False),
            Column("applied_at", UtcDateTime, nullable=False),
            PrimaryKeyConstraint("component", "version", name="pk_schema_migrations"),
        )  # fmt: skip
        self.resources = Table(
            "resources", metadata,
            *_resource_version_columns(),
            PrimaryKeyConstraint("resource_type", "id", name="pk_resources"),
            # _lastUpdated ordering and paging of unfiltered searches.
            Index("ix_resources_last_updated", "resource_type", "last_updated", "id"),
        )  # fmt: skip
        self.resource_history = Table(
            "resource_history", metadata,
            *_resource_version_columns(),
            PrimaryKeyConstraint("resource_type", "id", "version_id", name="pk_resource_history"),
        )  # fmt: skip
        self.idx_token = _index_table(
            metadata, "idx_token",
            [Column("system", Text, nullable=True), Column("code", Text, nullable=False)],
            # resource_id trails so a search is answered from the index alone (core migration
            # 2 added it to the date and reference indexes).
            ("param", "code", "system", "resource_id"),
            ("param", "code"),
        )  # fmt: skip
        self.idx_string = _index_table(
            metadata, "idx_string",
            [Column("value", _binary_collation_text(), nullable=False)],
            ("param", "value", "resource_id"),
            ("param", "value"),
        )  # fmt: skip
        self.idx_date = _index_table(
            metadata, "idx_date",
            [Column("low", UtcDateTime, nullable=False), Column("high", UtcDateTime, nullable=False)],
            ("param", "low", "high", "resource_id"),
            ("param", "low", "high"),
        )  # fmt: skip
        self.idx_reference = _index_table(
            metadata, "idx_reference",
            [Column("target_type", String(ID_LENGTH), nullable=False),
             Column("target_id", Text, nullable=False)],
            ("param", "target_type", "target_id", "resource_id"),
            ("param", "target_id"),
        )  # fmt: skip
        # Core migration 2: number and quantity parameters. Values are doubles on both
        # databases; the precision rules of search (R4 search.html#number) are applied to the
        # bounds a search computes, not to what is stored.
        self.idx_number = _index_table(
            metadata, "idx_number",
            [Column("value", Float, nullable=False)],
            ("param", "value", "resource_id"),
            ("param", "value"),
        )  # fmt: skip
        self.idx_quantity = _index_table(
            metadata, "idx_quantity",
            [Column("value", Float, nullable=False), Column("system", Text, nullable=True),
             Column("code", Text, nullable=True), Column("unit", Text, nullable=True)],
            ("param", "value", "resource_id"),
            ("param", "value"),
        )  # fmt: skip
        self.outbox = Table(
            "outbox", metadata,
            # On SQLite this is INTEGER PRIMARY KEY AUTOINCREMENT: never reuses a seq, even
            # after published rows are pruned.
            Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
            Column("event_id", String(200), nullable=False, unique=True),
            Column("topic", String(255), nullable=False),
            Column("key", LargeBinary, nullable=True),
            Column("value", LargeBinary, nullable=False),
            Column("headers", LargeBinary, nullable=False),  # JSON [[name, latin-1 text], ...]
            Column("created_at", UtcDateTime, nullable=False),
            Column("published_at", UtcDateTime, nullable=True),
            sqlite_autoincrement=True,
        )  # fmt: skip
        # Partial index: the relay's "unpublished, ascending seq" stays cheap however many
        # published rows accumulate.
        Index(
            "ix_outbox_unpublished", self.outbox.c.seq,
            postgresql_where=self.outbox.c.published_at.is_(None),
            sqlite_where=self.outbox.c.published_at.is_(None),
        )  # fmt: skip
        self.inbox = Table(
            "inbox", metadata,
            Column("consumer", String(200), nullable=False),
            Column("event_id", String(200), nullable=False),
            Column("processed_at", UtcDateTime, nullable=False),
            PrimaryKeyConstraint("consumer", "event_id", name="pk_inbox"),
        )  # fmt: skip
        self.projections = Table(
            "projections", metadata,
            Column("name", String(100), nullable=False),
            Column("key", String(200), nullable=False),
            Column("version", BigInteger, nullable=False),
            Column("data", LargeBinary, nullable=False),
            Column("change_count", Integer, nullable=False),
            Column("updated_at", UtcDateTime, nullable=False),
            PrimaryKeyConstraint("name", "key", name="pk_projections"),
        )  # fmt: skip

    @property
    def index_tables(self) -> tuple[Table, ...]:
        """The index tables of core migration 1."""
        return (self.idx_token, self.idx_string, self.idx_date, self.idx_reference)

    @property
    def all_index_tables(self) -> tuple[Table, ...]:
        return (*self.index_tables, *self.version_2)

    @property
    def version_2(self) -> tuple[Table, ...]:
        """The tables core migration 2 creates."""
        return (self.idx_number, self.idx_quantity)

    @property
    def version_1(self) -> tuple[Table, ...]:
        """The tables core migration 1 creates (schema_migrations is created before any migration)."""
        return (
            self.resources, self.resource_history, *self.index_tables,
            self.outbox, self.inbox, self.projections,
        )  # fmt: skip


def _resource_version_columns() -> list[Column[Any]]:
    return [
        Column("resource_type", String(ID_LENGTH), nullable=False),
        Column("id", String(ID_LENGTH), nullable=False),
        Column("version_id", Integer, nullable=False),
        Column("last_updated", UtcDateTime, nullable=False),
        Column("deleted", Boolean, nullable=False),
        Column("content", LargeBinary, nullable=False),
    ]


def _index_table(
    metadata: MetaData,
    name: str,
    value_columns: list[Column[Any]],
    search_key: tuple[str, ...],
    resource_key: tuple[str, ...],
) -> Table:
    table = Table(
        name, metadata,
        Column("resource_type", String(ID_LENGTH), nullable=False),
        Column("resource_id", String(ID_LENGTH), nullable=False),
        Column("param", String(100), nullable=False),
        *value_columns,
        Index(f"ix_{name}_search", "resource_type", *search_key),
        # By resource: re-indexing on update and delete removes a resource's rows; search looks
        # up one resource's values of a parameter here (sort keys, :missing, :not), from the
        # index alone. Core migration 2 widened it from (resource_type, resource_id).
        Index(f"ix_{name}_resource", "resource_type", "resource_id", *resource_key),
    )  # fmt: skip
    return table
