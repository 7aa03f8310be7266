"""Who a FHIR interaction is done for, as the gateway says in the headers it forwards.

The gateway authenticates every `/fhir` call and tells the owning service who asked: the token's
subject in ACTOR_HEADER and, for a clinic's token, its Organization id in ORGANIZATION_HEADER
(DESIGN.md, Security: a clinic's token carries its Organization). Services trust these headers
because only the gateway reaches them (it forwards an allowlist of client headers, never these).

The Dispatcher makes the caller of each request current for as long as the request runs, so a
type's `WriteHooks` can ask `current_caller()` (referral's Task state machine decides by role).
Entries of a batch or transaction Bundle carry no such headers and run as the Bundle's caller.
Writes made outside a request (an event consumer applying an HL7 message, a scheduler) run as
`SYSTEM`: no actor, no organization.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass

from shared.fhir.audit import ACTOR_HEADER

#: Request header the gateway sets on what it forwards for a clinic's token: its Organization id.
ORGANIZATION_HEADER = "x-carebridge-organization"


@dataclass(frozen=True, slots=True)
class Caller:
    #: The authenticated subject (the token's `sub`), None for the system itself.
    actor: str | None = None
    #: The Organization id of a clinic's token (its `organization` claim), else None.
    organization: str | None = None


SYSTEM = Caller()
_CURRENT: ContextVar[Caller] = ContextVar("carebridge_fhir_caller", default=SYSTEM)


def current_caller() -> Caller:
    return _CURRENT.get()


def caller_of(headers: Mapping[str, str], enclosing: Caller) -> Caller:
    """The caller the headers name; `enclosing` when they name none (a Bundle entry)."""
    actor = headers.get(ACTOR_HEADER) or None
    organization = headers.get(ORGANIZATION_HEADER) or None
    if actor is None and organization is None:
        return enclosing
    return Caller(actor, organization)


@contextlib.contextmanager
def calling_as(caller: Caller) -> Iterator[Caller]:
    """Make `caller` current inside the block (and only there)."""
    token = _CURRENT.set(caller)
    try:
        yield caller
    finally:
        _CURRENT.reset(token)
