"""The witness's HTTP service (FastAPI, served by Uvicorn), under ``/witness/v1``:

- ``POST /heads``: submit a signed head (JSON); 201 with the receipt, 200 with the same receipt for a head already
  held; refusals are 4xx ``{"error": {"type", "message"}}`` naming the reason, and logged.
- ``GET /logs/{key_id}/heads``: every head held for a registered log, by entry count.
- ``GET /logs``: the registered logs; ``GET /key``: the witness's public key and key id.

Every request counts against a per-address limit (``rate_limit`` a minute; 429 beyond it), and a request body over
``max_body_bytes`` is refused (413) without being read further.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from facetrail.accountability.remote_witness import API_PATH
from facetrail.errors import FacetrailError
from facetrail.http.ratelimit import SlidingWindowLimiter
from facetrail.witness.office import Refusal, WitnessOffice, WitnessSettings

logger = logging.getLogger("facetrail.witness")


class _RequestRefused(Refusal):
    """A request refused before its head is looked at (too large, not JSON, too many)."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.headers = status, kind, headers or {}


def _log(event: str, request: Request, **fields: Any) -> None:
    client = request.client.host if request.client else ""
    logger.info(json.dumps({"event": event, "client": client, "path": request.url.path, **fields}, default=str))


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes ``limit`` bytes, whatever its Content-Length says."""
    declared = request.headers.get("content-length", "")
    too_large = _RequestRefused(413, "payload_too_large", f"the request body exceeds the limit of {limit:,} bytes")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def create_app(office: WitnessOffice, settings: WitnessSettings | None = None) -> FastAPI:
    """The witness service over ``office`` (whose directory and key are created if missing)."""
    settings = settings or WitnessSettings()
    office.prepare()
    limiter = SlidingWindowLimiter()

    def rate_limited(request: Request) -> None:
        wait = limiter.hit(request.client.host if request.client else "", settings.rate_limit)
        if wait:
            seconds = max(1, int(wait + 0.999))
            raise _RequestRefused(429, "rate_limited", f"more than {settings.rate_limit} requests in a minute from "
                                  f"this address; try again in {seconds} s", {"Retry-After": str(seconds)})

    router = APIRouter(prefix=API_PATH, dependencies=[Depends(rate_limited)])

    @router.get("/key")
    def witness_key() -> dict[str, str]:
        """The witness's public key (PEM) and key id, which a log's operator pins and checks receipts with."""
        return {"key_id": office.key_id(), "public_key": office.public_key_pem()}

    @router.get("/logs")
    def registered_logs() -> dict[str, list[dict[str, str]]]:
        """The logs whose heads this witness accepts."""
        return {"logs": [log.describe() for log in office.logs()]}

    @router.get("/logs/{key_id}/heads")
    def log_heads(key_id: str) -> dict[str, Any]:
        """Every head held for the log, by entry count: what an auditor compares the trail with."""
        return {"key_id": key_id, "heads": office.heads(key_id)}

    @router.post("/heads", status_code=201)
    async def submit_head(request: Request) -> JSONResponse:
        """Accept a signed head from a registered log; answer with the witness's receipt."""
        body = await _read_body(request, settings.max_body_bytes)
        try:
            head = json.loads(body)
        except ValueError as error:
            raise _RequestRefused(400, "malformed_json", f"the request body is not JSON: {error}") from None
        receipt, created = await run_in_threadpool(office.submit, head)
        _log("accepted" if created else "accepted_again", request, log=receipt["key_id"],
             entry_count=receipt["entry_count"], head_hash=receipt["head_hash"])
        return JSONResponse(receipt, status_code=201 if created else 200)

    app = FastAPI(title="facetrail witness", version="1", docs_url=None, redoc_url=None,
                  openapi_url=f"{API_PATH}/openapi.json")
    app.include_router(router)

    @app.exception_handler(Refusal)
    async def refused(request: Request, exc: Refusal) -> JSONResponse:
        _log("refused", request, status=exc.status, reason=exc.kind, message=str(exc))
        return _error(exc.status, exc.kind, str(exc), getattr(exc, "headers", None))

    @app.exception_handler(FacetrailError)
    async def failed(request: Request, exc: FacetrailError) -> JSONResponse:
        _log("failed", request, message=str(exc))  # the witness's own directory or key is unusable
        return _error(503, "unavailable", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "not_found" if exc.status_code == 404 else "bad_request", str(exc.detail))

    return app


def serve(office: WitnessOffice, settings: WitnessSettings, host: str = "127.0.0.1", port: int = 8100,
          tls_cert: Path | None = None, tls_key: Path | None = None) -> None:
    """Run the witness service until interrupted (one process: heads are appended under a file lock anyway)."""
    import uvicorn

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    app = create_app(office, settings)
    uvicorn.Server(uvicorn.Config(
        app, host=host, port=port, access_log=False, server_header=False,
        ssl_certfile=str(tls_cert) if tls_cert else None, ssl_keyfile=str(tls_key) if tls_key else None,
    )).run()
