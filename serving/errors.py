"""One JSON shape for every error the server answers (Nginx's error pages use the same one).

``{"error": message, "code": code, "status": status, "field": field-or-null, "request_id": id}``:
``error`` is a string, as the Open Inference Protocol asks (its error objects are
``{"error": $string}`` and allow more members), so v2 clients read it unchanged.
``serving.pipeline`` is the one place that turns an exception into this body.
"""

from __future__ import annotations

from typing import Any

CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    500: "internal_error",
    503: "not_ready",
}


class ApiError(Exception):
    """An error answered to the client as JSON; ``headers`` go with it (``Allow`` on a 405)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.code = code or CODES.get(status, "error")
        self.headers = headers


def invalid(message: str, field: str | None = None) -> ApiError:
    """A 422: the request is well-formed JSON but not valid input for the model."""
    return ApiError(422, message, field=field)


def error_body(error: ApiError, request_id: str) -> dict[str, Any]:
    """The one error shape (above) for ``error``, answered to the request ``request_id``."""
    return {
        "error": error.message,
        "code": error.code,
        "status": error.status,
        "field": error.field,
        "request_id": request_id,
    }
