from __future__ import annotations

import pytest

from shared import errors


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (errors.InvalidInput("x"), 400, "invalid"),
        (errors.Unauthorized("x"), 401, "login"),
        (errors.Forbidden("x"), 403, "forbidden"),
        (errors.NotFound("x"), 404, "not-found"),
        (errors.Gone("x"), 410, "deleted"),
        (errors.PreconditionFailed("x"), 412, "conflict"),
        (errors.PayloadTooLarge("x"), 413, "too-costly"),
        (errors.UnsupportedMediaType("x"), 415, "not-supported"),
        (errors.BusinessRuleViolation("x"), 422, "business-rule"),
        (errors.PreconditionRequired("x"), 428, "required"),
        (errors.DependencyUnavailable("x"), 503, "transient"),
    ],
)
def test_each_error_maps_to_one_status_and_issue_code(
    exc: errors.CareBridgeError, status: int, code: str
) -> None:
    assert errors.http_status(exc) == status
    outcome = errors.operation_outcome(exc)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == code


def test_unexpected_errors_are_500_and_reveal_nothing() -> None:
    exc = RuntimeError("patient Jane Doe MRN 123 broke it")
    assert errors.http_status(exc) == 500
    assert "Jane" not in str(errors.operation_outcome(exc))


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (errors.PoisonMessage("x"), "poison"),
        (errors.InvalidInput("x"), "poison"),
        (errors.DependencyUnavailable("x"), "transient"),
        (ConnectionResetError(), "transient"),
        (ValueError("bug"), "unknown"),
    ],
)
def test_consumer_failures_are_classified(exc: BaseException, kind: str) -> None:
    assert errors.classify_failure(exc) == kind
