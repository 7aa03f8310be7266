"""The HTTP headers of FHIR's versioning and preference rules, parsed and produced without HTTP
machinery (http://hl7.org/fhir/R4/http.html#versioning, #concurrency, #ops)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

from shared.errors import InvalidInput
from shared.store import StoredResource

ReturnPreference = Literal["minimal", "representation", "OperationOutcome"]
_RETURN_VALUES: dict[str, ReturnPreference] = {
    "minimal": "minimal",
    "representation": "representation",
    "operationoutcome": "OperationOutcome",
}
# W/"3", "3" or a bare 3: clients differ in how faithfully they echo the ETag.
_ETAG_RE = re.compile(r'^\s*(?:W/)?"?([^"\s]*)"?\s*$')


@dataclass(frozen=True, slots=True)
class Prefer:
    """The parts of RFC 7240 `Prefer` that FHIR defines (http.html#ops and search.html#errors).

    `return_`: what a create, update or patch answers with (default: the resource).
    `lenient`: `handling=lenient`, ignore unknown search parameters instead of a 400.
    """

    return_: ReturnPreference = "representation"
    lenient: bool = False


DEFAULT_PREFER = Prefer()


def parse_prefer(value: str | None) -> Prefer:
    """Unknown preferences are ignored, as RFC 7240 section 2 requires."""
    if not value:
        return DEFAULT_PREFER
    return_: ReturnPreference = "representation"
    lenient = False
    for part in value.split(","):
        for token in part.split(";"):
            name, _, raw = token.strip().partition("=")
            setting = raw.strip().strip('"')
            name = name.strip().lower()
            if name == "return" and setting.lower() in _RETURN_VALUES:
                return_ = _RETURN_VALUES[setting.lower()]
            elif name == "handling":
                lenient = setting.lower() == "lenient"
    return Prefer(return_, lenient)


def etag(version_id: int) -> str:
    return f'W/"{version_id}"'


def parse_version_tag(value: str | None, header: str = "If-Match") -> int | None:
    """The version an If-Match (or Bundle entry.request.ifMatch) names; None when absent."""
    if value is None or not value.strip():
        return None
    match = _ETAG_RE.match(value)
    if not match or not match.group(1).isdigit():
        raise InvalidInput(f'{header} must be a version ETag such as W/"3", not {value!r}')
    return int(match.group(1))


def http_date(moment: datetime) -> str:
    """RFC 7231 IMF-fixdate, as Last-Modified carries it."""
    return moment.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def parse_http_date(value: str | None) -> datetime | None:
    """If-Modified-Since: an unparseable date is ignored, as RFC 7232 section 3.3 requires."""
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def not_modified(stored: StoredResource, if_none_match: str | None, if_modified_since: str | None) -> bool:
    """Conditional read (http.html#cread): True when the client's copy is current (304).

    If-None-Match wins over If-Modified-Since when both are sent (RFC 7232 section 6).
    """
    if if_none_match:
        tags = {t.strip() for t in if_none_match.split(",")}
        return "*" in tags or any(_same_version(t, stored.version_id) for t in tags)
    since = parse_http_date(if_modified_since)
    # HTTP dates have whole seconds; lastUpdated has milliseconds.
    return since is not None and stored.last_updated.replace(microsecond=0) <= since


def _same_version(tag: str, version_id: int) -> bool:
    match = _ETAG_RE.match(tag)
    return bool(match) and match.group(1) == str(version_id)  # type: ignore[union-attr]


def version_headers(stored: StoredResource, base: str, *, location: bool = True) -> dict[str, str]:
    """ETag, Last-Modified and (for writes) Location of one version (http.html#create)."""
    headers = {"ETag": etag(stored.version_id), "Last-Modified": http_date(stored.last_updated)}
    if location:
        headers["Location"] = f"{base}/{stored.resource_type}/{stored.id}/_history/{stored.version_id}"
    return headers
