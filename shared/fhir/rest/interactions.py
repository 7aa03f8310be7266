"""The FHIR R4 interactions on one service's resources, without HTTP
(http://hl7.org/fhir/R4/http.html): read, vread, create (and conditional create), update (and
update-as-create, conditional update), patch, delete (and conditional delete).

Writes run inside a store transaction the caller opens, so a single request and a whole
transaction Bundle share this code; each write puts its lifecycle event in the outbox of that
transaction (DESIGN.md, Store). Reads return the stored bytes untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import orjson

from shared.errors import BusinessRuleViolation, Gone, InvalidInput, NotFound, PreconditionFailed
from shared.fhir.events import enqueue_resource_event
from shared.fhir.rest.conditional import Criteria, parse_criteria, single_match
from shared.fhir.rest.patch import PatchDocument
from shared.fhir.rest.searching import Searcher
from shared.fhir.validation import validate_resource
from shared.settings import ServiceSettings
from shared.store import Store, StoredResource, Transaction
from shared.store.content import check_id, new_id

if TYPE_CHECKING:
    from shared.fhir.rest.messages import RestRequest, RestResponse


class StoreHolder(Protocol):
    """Whatever holds the service's store and settings (the ServiceRuntime, or a test's)."""

    store: Store
    settings: ServiceSettings


@dataclass(frozen=True, slots=True)
class Written:
    """The result of a create, update or patch: the version now current, and the status that
    says how it came about (201 created, 200 updated or, for conditional create, found)."""

    stored: StoredResource
    status: int
    message: str


@dataclass(frozen=True, slots=True)
class Deleted:
    """The deletion version written, or None when there was nothing to delete (idempotent)."""

    stored: StoredResource | None
    message: str


#: Stores a resource (the default create or update) and returns what was written.
Proceed = Callable[[dict[str, Any]], Awaitable[Written]]


class WriteHooks:
    """A service's own logic around the writes of one resource type: intake matches every
    Patient against the people it knows, and scores every QuestionnaireResponse. The hook runs
    after the resource is validated, inside the write's transaction, and calls `proceed` to
    store it (or does something else instead, such as updating the record it matched).
    `shared.fhir.rest.current_caller()` says who the write is for."""

    #: Updates and patches from clients must carry If-Match (the Dispatcher answers 428 without).
    requires_if_match: ClassVar[bool] = False

    async def create(
        self,
        rest: FhirRest,
        tx: Transaction,
        resource: dict[str, Any],
        proceed: Proceed,
        *,
        id_promised: bool,
    ) -> Written:
        """`id_promised`: the caller already handed out the new id (a transaction's urn:uuid
        fullUrl, an HL7 message's plan), so the resource must be created under it."""
        return await proceed(resource)

    async def existing_match(self, rest: FhirRest, tx: Transaction, resource: dict[str, Any]) -> str | None:
        """The id of a stored resource that `resource` is, by the service's own rules (intake:
        the same person), for callers that must decide ids before writing (HL7 messages)."""
        return None

    async def update(
        self, rest: FhirRest, tx: Transaction, resource: dict[str, Any], proceed: Proceed
    ) -> Written:
        return await proceed(resource)


class AfterWrite(WriteHooks):
    """Hooks that store what was sent and then act on what was stored, in the same transaction
    (careplan indexes every CarePlan; a fulfilled Appointment is a visit)."""

    async def create(
        self,
        rest: FhirRest,
        tx: Transaction,
        resource: dict[str, Any],
        proceed: Proceed,
        *,
        id_promised: bool,
    ) -> Written:
        written = await proceed(resource)
        await self.written(rest, tx, orjson.loads(written.stored.content))
        return written

    async def update(
        self, rest: FhirRest, tx: Transaction, resource: dict[str, Any], proceed: Proceed
    ) -> Written:
        written = await proceed(resource)
        await self.written(rest, tx, orjson.loads(written.stored.content))
        return written

    async def written(self, rest: FhirRest, tx: Transaction, stored: dict[str, Any]) -> None:
        """What follows a write; `stored` is the version just written, with its id and meta."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class OperationCall:
    """One invocation of a FHIR operation (http://hl7.org/fhir/R4/operations.html)."""

    rest: FhirRest
    request: RestRequest
    #: The instance for `[type]/[id]/$name`, None at type level.
    id: str | None
    #: The enclosing transaction when the call is an entry of a transaction Bundle.
    tx: Transaction | None


#: Runs an operation; registered by the service that owns the type (shared/fhir/operations.py).
Operation = Callable[[OperationCall], Awaitable["RestResponse"]]


class FhirRest:
    """One service's FHIR interactions over its store.

    It reaches the store through its holder because the store opens in the app's lifespan,
    after the routes are built. `hooks` adds a service's logic to the writes of a type, and
    `operations` runs the `$operations` it serves, keyed by (type, name without `$`).
    """

    def __init__(
        self,
        holder: StoreHolder,
        owned_types: Iterable[str],
        *,
        hooks: Mapping[str, WriteHooks] | None = None,
        operations: Mapping[tuple[str, str], Operation] | None = None,
    ) -> None:
        self._holder = holder
        self.settings = holder.settings
        self.owned_types = tuple(owned_types)
        self._owned = frozenset(self.owned_types)
        self.searcher = Searcher(self.owned_types)
        self.hooks = dict(hooks or {})
        self.operations = dict(operations or {})

    @property
    def store(self) -> Store:
        return self._holder.store

    @contextlib.asynccontextmanager
    async def transaction(self, tx: Transaction | None = None) -> AsyncIterator[Transaction]:
        """`tx` when the caller has one (an entry of a transaction Bundle), else a new one."""
        if tx is not None:
            yield tx
            return
        async with self.store.transaction() as own:
            yield own

    def owned_type(self, resource_type: str) -> str:
        if resource_type not in self._owned:
            raise NotFound(f"Resource type {resource_type!r} is not served here")
        return resource_type

    # --- reads: stored bytes, one indexed SELECT ----------------------------------------------

    async def read(self, resource_type: str, id_: str, tx: Transaction | None = None) -> StoredResource:
        self.owned_type(resource_type)
        return await (tx.read(resource_type, id_) if tx else self.store.read(resource_type, id_))

    async def vread(
        self, resource_type: str, id_: str, version: str, tx: Transaction | None = None
    ) -> StoredResource:
        self.owned_type(resource_type)
        if not version.isdigit():
            raise NotFound(f"No version {version!r} of {resource_type}/{id_}")
        if tx is not None:
            return await tx.vread(resource_type, id_, int(version))
        return await self.store.vread(resource_type, id_, int(version))

    # --- writes ---------------------------------------------------------------------------------

    async def create(
        self,
        tx: Transaction,
        resource_type: str,
        resource: dict[str, Any],
        *,
        if_none_exist: str | None = None,
        assigned_id: str | None = None,
    ) -> Written:
        """Create with a server-assigned id (a client's id is ignored, http.html#create);
        `assigned_id` is the id a transaction already promised for a urn:uuid fullUrl."""
        self.owned_type(resource_type)
        validate_resource(resource, resource_type)
        criteria = None
        if if_none_exist is not None:
            criteria = parse_criteria(resource_type, if_none_exist)
            existing = await self.lock_and_match(tx, criteria, "create")
            if existing is not None:
                return Written(existing, 200, f"{_label(existing)} already matches the criteria; not created")

        async def insert(body: dict[str, Any]) -> Written:
            body = {k: v for k, v in body.items() if k != "id"}
            stored = await tx.create(body, id=assigned_id or new_id())
            await enqueue_resource_event(tx, self.settings, stored, "created", body)
            return Written(stored, 201, f"Created {_label(stored)}")

        hooks = self.hooks.get(resource_type)
        written = await (
            hooks.create(self, tx, resource, insert, id_promised=assigned_id is not None)
            if hooks
            else insert(resource)
        )
        if criteria is not None:
            await tx.set_conditional_key(resource_type, criteria.key, written.stored.id)
        return written

    async def update(
        self,
        tx: Transaction,
        resource_type: str,
        id_: str,
        resource: dict[str, Any],
        *,
        if_match: int | None = None,
    ) -> Written:
        """Update, or create with the client's id when there is none (http.html#update); a
        deleted resource comes back as a new version after its deletion."""
        self.owned_type(resource_type)
        check_id(id_)
        validate_resource(resource, resource_type)
        body_id = resource.get("id")
        if body_id is None:
            raise InvalidInput(
                "An update needs the resource id in the body (http.html#update)", expression=["id"]
            )
        if body_id != id_:
            raise InvalidInput(
                f"The id in the body ({body_id!r}) is not the id in the URL ({id_!r})", expression=["id"]
            )
        return await self._replace(tx, resource, if_match=if_match)

    async def _replace(self, tx: Transaction, resource: dict[str, Any], *, if_match: int | None) -> Written:
        """Store a new version (or the first) of a validated resource, through its type's hooks."""

        async def store(body: dict[str, Any]) -> Written:
            stored, created = await tx.update(body, if_match=if_match)
            await enqueue_resource_event(tx, self.settings, stored, "created" if created else "updated", body)
            if created:
                return Written(stored, 201, f"Created {_label(stored)}")
            return Written(stored, 200, f"Updated {_label(stored)}")

        hooks = self.hooks.get(resource["resourceType"])
        return await (hooks.update(self, tx, resource, store) if hooks else store(resource))

    async def conditional_update(
        self,
        tx: Transaction,
        resource_type: str,
        criteria_text: str | Iterable[tuple[str, str]],
        resource: dict[str, Any],
        *,
        if_match: int | None = None,
    ) -> Written:
        """`PUT [type]?criteria` (http.html#cond-update): no match creates, one match is
        updated, several are 412. The key lock keeps two "no match" clients from both creating."""
        self.owned_type(resource_type)
        criteria = parse_criteria(resource_type, criteria_text)
        match = await self.lock_and_match(tx, criteria, "update")
        body_id = resource.get("id")
        if match is not None:
            if body_id is not None and body_id != match.id:
                raise InvalidInput(
                    f"The id in the body ({body_id!r}) is not that of the matching resource ({match.id!r})",
                    expression=["id"],
                )
            return await self.update(
                tx, resource_type, match.id, {**resource, "id": match.id}, if_match=if_match
            )
        if if_match is not None:
            raise PreconditionFailed(
                f"No {resource_type} matches the criteria, so none is at version {if_match}"
            )
        if body_id is not None:
            written = await self.update(tx, resource_type, check_id(body_id), resource)
        else:
            written = await self.create(tx, resource_type, resource)
        await tx.set_conditional_key(resource_type, criteria.key, written.stored.id)
        return written

    async def patch(
        self,
        tx: Transaction,
        resource_type: str,
        id_: str,
        patch: PatchDocument,
        *,
        if_match: int | None = None,
    ) -> Written:
        """JSON Patch (http.html#patch) on the current version; the result is validated like
        any write. A patch that cannot apply, or yields an invalid resource, is 422."""
        current = await self.read(resource_type, id_, tx)
        if if_match is not None and current.version_id != if_match:
            raise PreconditionFailed(f"{_label(current)} is at version {current.version_id}, not {if_match}")
        patched = patch.apply(orjson.loads(current.content))
        if patched.get("resourceType") != resource_type or patched.get("id") != id_:
            raise BusinessRuleViolation(
                "A patch may not change the resourceType or id", issue_code="processing"
            )
        try:
            validate_resource(patched, resource_type)
        except InvalidInput as exc:
            raise BusinessRuleViolation(
                f"The patched resource is not valid: {exc.diagnostics}",
                expression=exc.expression,
                issue_code="processing",
            ) from None
        written = await self._replace(tx, patched, if_match=current.version_id)
        return Written(written.stored, 200, f"Patched {_label(written.stored)}")

    async def conditional_patch(
        self,
        tx: Transaction,
        resource_type: str,
        criteria_text: str | Iterable[tuple[str, str]],
        patch: PatchDocument,
        *,
        if_match: int | None,
    ) -> Written:
        criteria = parse_criteria(resource_type, criteria_text)
        match = single_match(criteria, await self._matches(tx, criteria), "patch")
        if match is None:
            raise NotFound(f"No {resource_type} matches {criteria.canonical}")
        return await self.patch(tx, resource_type, match.id, patch, if_match=if_match)

    async def delete(
        self, tx: Transaction, resource_type: str, id_: str, *, if_match: int | None = None
    ) -> Deleted:
        """Delete (http.html#delete): a new version marked deleted; nothing there is not an error."""
        try:
            current = await self.read(resource_type, id_, tx)
        except (NotFound, Gone):
            if if_match is not None:
                raise PreconditionFailed(
                    f"{resource_type}/{id_} does not exist, so it is not at version {if_match}"
                ) from None
            return Deleted(None, f"{resource_type}/{id_} does not exist or is already deleted")
        stored = await tx.delete(resource_type, id_, if_match=if_match)
        assert stored is not None  # read locked the row (PostgreSQL) or the database (SQLite)
        await enqueue_resource_event(tx, self.settings, stored, "deleted", orjson.loads(current.content))
        return Deleted(stored, f"Deleted {resource_type}/{id_} (version {stored.version_id})")

    async def conditional_delete(
        self, tx: Transaction, resource_type: str, criteria_text: str | Iterable[tuple[str, str]]
    ) -> Deleted:
        """`DELETE [type]?criteria`, single-match flavour (CapabilityStatement conditionalDelete
        "single"): none is an ordinary delete of nothing, several are 412."""
        self.owned_type(resource_type)
        criteria = parse_criteria(resource_type, criteria_text)
        match = single_match(criteria, await self._matches(tx, criteria), "delete")
        if match is None:
            return Deleted(None, f"No {resource_type} matches {criteria.canonical}; nothing deleted")
        return await self.delete(tx, resource_type, match.id)

    # --- conditional helpers --------------------------------------------------------------------

    async def lock_and_match(
        self, tx: Transaction, criteria: Criteria, interaction: str
    ) -> StoredResource | None:
        """Take the criteria's key, then search: the one match, None, or 412 for several."""
        await tx.lock_conditional_key(criteria.resource_type, criteria.key, criteria.canonical)
        return single_match(criteria, await self._matches(tx, criteria), interaction)

    async def _matches(self, tx: Transaction, criteria: Criteria) -> list[StoredResource]:
        return await self.searcher.matches(
            self.store, criteria.resource_type, list(criteria.params), connection=await tx.sql_connection()
        )


def _label(stored: StoredResource) -> str:
    return f"{stored.resource_type}/{stored.id} version {stored.version_id}"
