"""One exception hierarchy for CareBridge, and the one place it becomes HTTP.

Domain and store code raise these; they know nothing of HTTP. `http_status()` and
`operation_outcome()` are the single mapping to a status code and a FHIR OperationOutcome
(issue-type codes from http://hl7.org/fhir/R4/valueset-issue-type.html). Event consumers use
`is_retriable()` to decide between backing off and sending a record to the dead-letter topic.
"""

from __future__ import annotations

from typing import Any


class CareBridgeError(Exception):
    """Base of every error CareBridge raises on purpose."""

    #: FHIR OperationOutcome.issue.code
    issue_code = "exception"
    #: True when trying again later may succeed (a broker or database hiccup).
    retriable = False

    def __init__(
        self, diagnostics: str, *, expression: list[str] | None = None, issue_code: str | None = None
    ):
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.expression = expression
        if issue_code:
            self.issue_code = issue_code


class InvalidInput(CareBridgeError):
    """The request or message is malformed or breaks a FHIR rule."""

    issue_code = "invalid"


class NotFound(CareBridgeError):
    issue_code = "not-found"


class Gone(CareBridgeError):
    """The resource existed and was deleted."""

    issue_code = "deleted"


class Conflict(CareBridgeError):
    issue_code = "conflict"


class PreconditionFailed(CareBridgeError):
    """An If-Match / conditional precondition did not hold."""

    issue_code = "conflict"


class PreconditionRequired(CareBridgeError):
    """A conditional header the write must carry is missing (RFC 6585 section 3: 428), e.g.
    If-Match on an update of a resource both sides of a workflow write (a referral Task)."""

    issue_code = "required"


class BusinessRuleViolation(CareBridgeError):
    issue_code = "business-rule"


class Unauthorized(CareBridgeError):
    issue_code = "login"


class Forbidden(CareBridgeError):
    issue_code = "forbidden"


class MethodNotAllowed(CareBridgeError):
    issue_code = "not-supported"


class NotAcceptable(CareBridgeError):
    issue_code = "not-supported"


class UnsupportedMediaType(CareBridgeError):
    issue_code = "not-supported"


class PayloadTooLarge(CareBridgeError):
    issue_code = "too-costly"


class DependencyUnavailable(CareBridgeError):
    """A database, broker, Redis or peer service could not be reached. Retriable."""

    issue_code = "transient"
    retriable = True


class PoisonMessage(CareBridgeError):
    """An event that can never be processed as it is (undecodable, invalid). Not retriable."""

    issue_code = "invalid"


_HTTP_STATUS: dict[type[CareBridgeError], int] = {
    InvalidInput: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    MethodNotAllowed: 405,
    NotAcceptable: 406,
    Conflict: 409,
    Gone: 410,
    PreconditionFailed: 412,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    BusinessRuleViolation: 422,
    PreconditionRequired: 428,
    PoisonMessage: 400,
    DependencyUnavailable: 503,
}


def http_status(exc: BaseException) -> int:
    """The HTTP status for an exception; anything unexpected is a 500."""
    for cls in type(exc).__mro__:
        status = _HTTP_STATUS.get(cls)
        if status is not None:
            return status
    return 500


def operation_outcome(exc: BaseException) -> dict[str, Any]:
    """A FHIR R4 OperationOutcome for an exception.

    Unexpected exceptions get a generic message: their text may carry PHI or internals.
    """
    if isinstance(exc, CareBridgeError):
        issue: dict[str, Any] = {"severity": "error", "code": exc.issue_code, "diagnostics": exc.diagnostics}
        if exc.expression:
            issue["expression"] = exc.expression
    else:
        issue = {"severity": "fatal", "code": "exception", "diagnostics": "Internal server error"}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def outcome(severity: str, code: str, diagnostics: str) -> dict[str, Any]:
    """An OperationOutcome with one issue, for informational answers (e.g. Prefer: OperationOutcome)."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


def classify_failure(exc: BaseException) -> str:
    """How an event consumer treats a handler failure.

    - ``"poison"``: the record can never succeed as it is (a CareBridge error that is not
      retriable, e.g. PoisonMessage or InvalidInput): straight to the dead-letter topic.
    - ``"transient"``: infrastructure is down (DependencyUnavailable, a connection error, an
      aiokafka error flagged retriable): back off and retry without limit, so an outage does
      not drain a topic into its DLQ.
    - ``"unknown"``: anything else (most likely a bug): retry a bounded number of times, then DLQ.
    """
    if isinstance(exc, CareBridgeError):
        return "transient" if exc.retriable else "poison"
    if getattr(exc, "retriable", None) is True:  # aiokafka's KafkaError carries this flag
        return "transient"
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return "transient"
    return "unknown"
