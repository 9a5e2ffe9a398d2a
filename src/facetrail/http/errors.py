"""Every error as JSON ``{"error": {"type": ..., "message": ...}}`` with the status that fits it."""

from __future__ import annotations

import json
import logging
import re
import secrets
import traceback
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from facetrail.http.schemas import ErrorResponse
from facetrail.errors import (
    AccountabilityError,
    AuthenticationError,
    CorruptImageError,
    BusyError,
    CryptoError,
    DuplicateError,
    EmptyImageError,
    FacetrailError,
    ImageTooLargeError,
    IndexFileError,
    NotFoundError,
    PermissionDeniedError,
    PolicyError,
    RefusedError,
    UnsupportedImageError,
)

logger = logging.getLogger("facetrail.api")

STATUS_OF: dict[type[FacetrailError], int] = {
    AuthenticationError: 401,
    PermissionDeniedError: 403,
    NotFoundError: 404,
    DuplicateError: 409,
    RefusedError: 422,
    PolicyError: 422,
    ImageTooLargeError: 413,
    BusyError: 503,
    UnsupportedImageError: 415,
    EmptyImageError: 415,
    CorruptImageError: 400,
    FacetrailError: 400,
}
"""The status of each kind of facetrail error; a subclass takes its nearest listed ancestor's."""

KEEPS_CAUSE_STATUS = (PermissionDeniedError, NotFoundError, ImageTooLargeError, UnsupportedImageError, EmptyImageError,
                      CorruptImageError)
"""Causes of a refused search whose own status the refusal keeps."""

STORED_DATA_FAULTS = (CryptoError, IndexFileError)
"""Faults of the installation's stored data (a blob that does not decrypt, a damaged index): their text names files
on the server, so a user is given a reference to the logged text instead (``stored_data_fault``)."""

_HTTP_TYPES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


class ApiError(Exception):
    """An error raised by the API layer itself (not by the accountable system)."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers or {}


def csrf_failed(message: str) -> ApiError:
    return ApiError(403, "csrf_failed", message)


def rate_limited(retry_after: float, limit: int) -> ApiError:
    seconds = max(1, int(retry_after + 0.999))
    return ApiError(429, "rate_limited", f"more than {limit} requests in a minute; try again in {seconds} s",
                    {"Retry-After": str(seconds)})


def error_json(status: int, kind: str, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """An error response in the API's one shape."""
    return JSONResponse({"error": {"type": kind, "message": message, **extra}}, status_code=status, headers=headers)


def status_of(exc: FacetrailError) -> int:
    return next(STATUS_OF[cls] for cls in type(exc).__mro__ if cls in STATUS_OF)


def kind_of(exc: FacetrailError) -> str:
    """'PermissionDeniedError' -> 'permission_denied'; the general classes -> 'bad_request'."""
    if type(exc) in (FacetrailError, AccountabilityError):
        return "bad_request"
    name = type(exc).__name__.removesuffix("Error")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _stored_data_fault(exc: FacetrailError) -> JSONResponse:
    """A 500 naming a reference to the logged text of a STORED_DATA_FAULTS error (or of the one that refused a
    search), never its server paths."""
    reference = secrets.token_hex(4)
    logger.error(json.dumps({"event": "stored_data_fault", "reference": reference, "error": type(exc).__name__,
                             "message": str(exc), "cause": str(exc.__cause__ or "")}))
    return error_json(500, "stored_data", "the stored data this needs could not be read; it has been logged for an "
                      f"administrator (reference {reference})")


def facetrail_error_response(exc: FacetrailError) -> JSONResponse:
    if isinstance(exc, STORED_DATA_FAULTS) or isinstance(exc.__cause__, STORED_DATA_FAULTS):
        return _stored_data_fault(exc)
    if isinstance(exc, RefusedError):
        # The service has audited the refusal. Refused for lack of permission, an unknown gallery or an unusable
        # image: that cause's status; under the policy or for want of a usable face: 422.
        cause = exc.__cause__
        status = status_of(cause) if isinstance(cause, KEEPS_CAUSE_STATUS) else 422
        return error_json(status, "refused", str(exc), reason=str(cause or exc))
    if isinstance(exc, PolicyError):
        problems = [{"line": line, "message": message} for line, message in exc.problems]
        return error_json(422, "policy", "the policy was refused; the one in force is unchanged", problems=problems)
    return error_json(status_of(exc), kind_of(exc), str(exc))


async def _facetrail_error(request: Request, exc: FacetrailError) -> JSONResponse:
    return facetrail_error_response(exc)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_json(exc.status, exc.kind, exc.message, exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [{"field": ".".join(str(part) for part in error["loc"]), "message": error["msg"]} for error in exc.errors()]
    first = problems[0] if problems else {"field": "", "message": "invalid request"}
    return error_json(422, "validation", f"invalid request: {first['field']}: {first['message']}", problems=problems)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return error_json(exc.status_code, _HTTP_TYPES.get(exc.status_code, "http_error"), str(exc.detail), exc.headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error(json.dumps({"event": "unhandled_error", "method": request.method, "path": request.url.path,
                             "error": type(exc).__name__, "traceback": "".join(traceback.format_exception(exc))}))
    return error_json(500, "internal", "internal error; it has been logged")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(FacetrailError, _facetrail_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses."""
    descriptions = {
        400: "Bad request (e.g. a corrupt image or a malformed field)", 401: "Not authenticated",
        403: "Not permitted (role, grant or CSRF check)", 404: "Not found", 409: "Already exists or already decided",
        413: "Upload or image too large", 415: "Not an accepted image", 422: "Invalid request, policy or refused search",
        429: "Rate limit reached (see Retry-After)", 503: "Busy: try again in a few seconds",
    }
    return {status: {"model": ErrorResponse, "description": descriptions[status]} for status in statuses}


COMMON_ERRORS = documented(400, 401, 403, 404, 422, 429)
"""What any authenticated route may answer."""
UPLOAD_ERRORS = documented(413, 415)
"""What a route taking photographs may answer too."""
