"""The FHIR R4 REST layer, without HTTP (http://hl7.org/fhir/R4/http.html).

- `FhirRest` (interactions.py): read, vread, create, update, patch, delete and their
  conditional forms over one service's store; every write emits its event in its transaction.
  A service adds its own logic to a type's writes (`WriteHooks`) and serves `$operations`
  (`Operation`, listed in shared/fhir/operations.py).
- `Dispatcher` (dispatch.py): which interaction a `RestRequest` is, and running it; serves the
  HTTP routes (shared/fhir/router.py) and batch/transaction Bundle entries (bundles.py) alike.
- caller.py: who a request is for (the gateway's actor and organization headers), current
  while it runs, for write hooks that decide by role.
- headers.py (ETag, If-Match, Prefer, conditional read), patch.py (JSON Patch),
  conditional.py (criteria and their keys), history.py, capability.py (CapabilityStatement).
"""

from shared.fhir.rest.caller import SYSTEM, Caller, calling_as, current_caller
from shared.fhir.rest.capability import capability_statement
from shared.fhir.rest.dispatch import Dispatcher
from shared.fhir.rest.headers import Prefer, parse_prefer
from shared.fhir.rest.interactions import (
    AfterWrite,
    Deleted,
    FhirRest,
    Operation,
    OperationCall,
    Proceed,
    StoreHolder,
    WriteHooks,
    Written,
)
from shared.fhir.rest.messages import RestRequest, RestResponse

__all__ = [
    "SYSTEM",
    "AfterWrite",
    "Caller",
    "Deleted",
    "Dispatcher",
    "FhirRest",
    "Operation",
    "OperationCall",
    "Prefer",
    "Proceed",
    "RestRequest",
    "RestResponse",
    "StoreHolder",
    "WriteHooks",
    "Written",
    "calling_as",
    "capability_statement",
    "current_caller",
    "parse_prefer",
]
