"""FHIR resource persistence for every service, on SQLite or PostgreSQL through one code path.

What it offers:

- `Store`: open a database (`await Store.open(url)`), which applies pending migrations; read
  the current version, a version, or the history of a resource as stored canonical JSON bytes;
  a minimal token/string search over the index tables; the outbox the relay publishes, the
  inbox consumers check, and projections of other services' data. `store.engine` and
  `store.tables` are there for service-specific queries.
- `Transaction` (from `async with store.transaction() as tx`): create, update (If-Match,
  update-as-create), delete, read-for-update, `add_outbox`, `claim_event` and
  `put_projection`, plus `tx.connection` for a service's own tables, all committed
  atomically: a write and the events it causes commit together (transactional outbox).
- `Migration` and `create_tables`: a service's own tables, applied once per database after
  the store's own (`Store.open(url, extra_migrations=...)`).
- `StoredResource`, `OutboxRecord`, `Projection`: the immutable records reads hand back.
- `UtcDateTime`: a column type that keeps timezone-aware UTC datetimes on both databases
  (plain `DateTime(timezone=True)` comes back naive from SQLite), for services' own tables.
- `extract_index_rows` / `normalize_string`: the pure functions that turn a resource into
  search-index rows (`normalize_string` is the form string search compares).

Reads and the store's own writes run on the raw driver connection (see `driver.py` for why and
the measurements); DDL, search and service tables use SQLAlchemy Core.

Errors are those of `shared.errors`: NotFound, Gone, Conflict, PreconditionFailed, InvalidInput,
and DependencyUnavailable (retriable) when the database cannot be reached or is busy.
"""

from shared.store.indexing import IndexRows, extract_index_rows, normalize_string
from shared.store.migrations import Migration, create_tables
from shared.store.records import OutboxRecord, Projection, StoredResource
from shared.store.schema import UtcDateTime
from shared.store.store import Store
from shared.store.transaction import Transaction

__all__ = [
    "IndexRows",
    "Migration",
    "OutboxRecord",
    "Projection",
    "Store",
    "StoredResource",
    "Transaction",
    "UtcDateTime",
    "create_tables",
    "extract_index_rows",
    "normalize_string",
]
