"""Map domain errors to HTTP responses, in one place.

Every error body is JSON with a `detail` message; errors about one input also
carry `field`. Unexpected exceptions become a 500 that is logged once, with
no internals in the body.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from minijenkin.api.schemas import ErrorBody, ValidationErrorBody
from minijenkin.errors import (
    AuthenticationError,
    ConflictError,
    DatabaseUnavailableError,
    InvalidInputError,
    MiniJenkinError,
    NotFoundError,
    PermissionDeniedError,
    PipelineError,
    RemoteError,
)

logger = logging.getLogger(__name__)

_STATUS_BY_ERROR: list[tuple[type[MiniJenkinError], int]] = [
    (NotFoundError, 404),
    (ConflictError, 409),
    (InvalidInputError, 422),
    (PipelineError, 422),
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (DatabaseUnavailableError, 503),
    (RemoteError, 502),
]


def status_for(exc: MiniJenkinError) -> int:
    for error_class, status in _STATUS_BY_ERROR:
        if isinstance(exc, error_class):
            return status
    return 500


def _validation_message(error: dict) -> tuple[str, str | None]:
    location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
    field = ".".join(location) or None
    message = error.get("msg", "invalid value")
    if field is None and tuple(error.get("loc", ())) == ("body",):
        # An error about the body as a whole: missing, or not a JSON object.
        message = f"request body: {message}"
    return (f"{field}: {message}" if field else message), field


def _unparsable_body(request: Request, errors: list[dict]) -> str | None:
    """Describe a body that is not JSON, or return None when the body parsed."""
    for error in errors:
        location = tuple(error.get("loc", ()))
        if error.get("type") != "json_invalid" or location[:1] != ("body",):
            continue
        # FastAPI puts the character offset of the syntax error after "body".
        position = f" at character {location[1]}" if len(location) > 1 else ""
        reason = (error.get("ctx") or {}).get("error") or error.get("msg", "invalid JSON")
        return f"the request body is not valid JSON{position}: {reason}"
    content_type = request.headers.get("content-type", "")
    if content_type and "json" not in content_type.lower() and any(
            tuple(error.get("loc", ())) == ("body",) for error in errors):
        return (f"the request body must be JSON with Content-Type: application/json, "
                f"not {content_type}")
    # Without a Content-Type, FastAPI passes the body on as bytes, which fail
    # validation as "not an object". A missing body is reported as missing instead.
    if not content_type and any(
            tuple(error.get("loc", ())) == ("body",) and error.get("type") != "missing"
            for error in errors):
        return ("the request body must be JSON with Content-Type: application/json; "
                "the request has no Content-Type header")
    return None


def _undecodable_body(exc: StarletteHTTPException) -> str | None:
    """Describe a JSON body that is not Unicode text, or return None for other errors.

    FastAPI rejects such a body with a 400 "There was an error parsing the
    body" whose cause is the UnicodeDecodeError of json.loads, which accepts
    UTF-8, UTF-16 and UTF-32.
    """
    cause = exc.__cause__
    if exc.status_code != 400 or not isinstance(cause, UnicodeDecodeError):
        return None
    return (f"the request body is not valid JSON text: {cause.encoding} cannot decode "
            f"byte {cause.start}; send JSON encoded as UTF-8")


# Responses any operation may send before its route runs (RequestLimits,
# body parsing), documented on every operation that lacks them.
_COMMON_RESPONSES = {
    "431": "Request headers too large or too many.",
}
_BODY_RESPONSES = {
    "400": "The body cannot be parsed.",
    "408": "The body did not arrive in time.",
    "413": "The body is too large.",
}


def describe_common_responses(app: FastAPI) -> None:
    """Make the OpenAPI schema describe the error responses every route may send.

    FastAPI documents every 422 as its own HTTPValidationError (a list in
    `detail`), which `_validation_error` replaces with a sentence, the first
    field and a list of field errors. The request limits and body parsing
    respond with 400, 408, 413 and 431 before a route runs.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        components = document.setdefault("components", {}).setdefault("schemas", {})
        template = "#/components/schemas/{model}"
        for name, model in (("HTTPValidationError", ValidationErrorBody), ("ErrorBody", ErrorBody)):
            body = model.model_json_schema(ref_template=template)
            components.update(body.pop("$defs", {}))
            components[name] = body
        error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                extra = dict(_COMMON_RESPONSES)
                if "requestBody" in operation:
                    extra.update(_BODY_RESPONSES)
                for status, description in extra.items():
                    responses.setdefault(status, {"description": description, **error})
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MiniJenkinError)
    async def _domain_error(request: Request, exc: MiniJenkinError) -> JSONResponse:
        status = status_for(exc)
        if status == 500:
            logger.exception("request failed", exc_info=exc,
                             extra={"action": "http_error", "path": request.url.path})
            return JSONResponse({"detail": "internal error"}, status_code=500)
        body: dict[str, object] = {"detail": str(exc)}
        if exc.field:
            body["field"] = exc.field
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [dict(error) for error in exc.errors()]
        unparsable = _unparsable_body(request, errors)
        if unparsable is not None:
            return JSONResponse({"detail": unparsable}, status_code=400)
        messages = [_validation_message(error) for error in errors]
        detail = "; ".join(message for message, _ in messages) or "invalid request"
        body: dict[str, object] = {
            "detail": detail,
            "errors": [{"field": field, "message": message} for message, field in messages],
        }
        if messages and messages[0][1]:
            body["field"] = messages[0][1]
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        undecodable = _undecodable_body(exc)
        if undecodable is not None:
            return JSONResponse({"detail": undecodable}, status_code=400)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(psycopg.DataError)
    async def _data_error(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # SQLSTATE class 22 (and the driver's own NUL check): the input
        # reached the database but does not fit a column. Routes validate
        # what they can first; this keeps the rest from becoming a 500.
        message = exc.diag.message_primary or str(exc)
        logger.info("request rejected by the database", extra={
            "action": "http_data_error", "path": request.url.path, "error": message})
        return JSONResponse({"detail": f"invalid input: {message}"}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error while serving a request", exc_info=exc,
                         extra={"action": "http_error", "path": request.url.path})
        return JSONResponse({"detail": "internal error"}, status_code=500)
