"""History interactions (http://hl7.org/fhir/R4/http.html#history): of one resource, of a type,
and of the whole service, newest first, with `_since` and `_count`.

Pages follow each other through a `next` link whose `_cursor` names the last version shown;
the store pages on that key, so versions written meanwhile neither shift nor repeat entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from urllib.parse import urlencode

from shared.errors import Gone, InvalidInput
from shared.fhir import bundles
from shared.store import Store
from shared.store.versions import MAX_HISTORY_PAGE, HistoryCursor

DEFAULT_HISTORY_COUNT = 50
_KNOWN = frozenset({"_since", "_count", "_cursor", "_format", "_pretty"})


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    since: datetime | None = None
    count: int = DEFAULT_HISTORY_COUNT
    cursor: HistoryCursor | None = None


def parse_history_params(params: list[tuple[str, str]], *, lenient: bool) -> HistoryQuery:
    """`_since` (an instant; a date means its start, in UTC), `_count` (1..1000) and `_cursor`.
    Anything else is 400, or ignored under `Prefer: handling=lenient`."""
    since: datetime | None = None
    count = DEFAULT_HISTORY_COUNT
    cursor: HistoryCursor | None = None
    for name, value in params:
        if name == "_since":
            since = parse_instant(value, "_since")
        elif name == "_count":
            if not value.isdigit():
                raise InvalidInput(f"_count must be a whole number, not {value!r}")
            count = max(1, min(int(value), MAX_HISTORY_PAGE))
        elif name == "_cursor":
            cursor = decode_cursor(value)
        elif name not in _KNOWN and not lenient:
            raise InvalidInput(f"History does not support the parameter {name!r}")
    return HistoryQuery(since, count, cursor)


def parse_instant(value: str, what: str) -> datetime:
    text = value.strip().replace("Z", "+00:00").replace(" ", "+")  # a '+' may arrive as a space
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{what} must be a FHIR instant such as 2024-05-01T09:30:00Z, not {value!r}"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def encode_cursor(cursor: HistoryCursor) -> str:
    moment = cursor.last_updated.astimezone(UTC).isoformat(timespec="microseconds")
    return f"{moment}~{cursor.resource_type}~{cursor.id}~{cursor.version_id}"


def decode_cursor(value: str) -> HistoryCursor:
    parts = value.split("~")
    if len(parts) != 4 or not parts[3].isdigit():
        raise InvalidInput("_cursor is not one this server issued")
    return HistoryCursor(parse_instant(parts[0], "_cursor"), parts[1], parts[2], int(parts[3]))


async def history_bundle(
    store: Store,
    resource_type: str | None,
    id_: str | None,
    params: list[tuple[str, str]],
    *,
    base: str,
    lenient: bool,
) -> bytes:
    """The history Bundle of a resource (type and id), a type (type) or the service (neither)."""
    query = parse_history_params(params, lenient=lenient)
    versions = await store.history_page(
        resource_type, id_, since=query.since, cursor=query.cursor, count=query.count + 1
    )
    if not versions and id_ is not None and query.cursor is None and resource_type is not None:
        try:
            await store.read(resource_type, id_)  # NotFound for a resource that never existed
        except Gone:
            pass
    path = "/".join(p for p in (resource_type, id_) if p) + ("/_history" if resource_type else "_history")
    url = f"{base}/{path}"
    kept = [(k, v) for k, v in params if k != "_cursor"]
    self_link = url + (f"?{urlencode(params)}" if params else "")
    next_link = None
    if len(versions) > query.count:
        versions = versions[: query.count]
        last = versions[-1]
        cursor = HistoryCursor(last.last_updated, last.resource_type, last.id, last.version_id)
        next_link = f"{url}?{urlencode([*kept, ('_cursor', encode_cursor(cursor))])}"
    return bundles.history(versions, base_url=base, self_link=self_link, next_link=next_link)
