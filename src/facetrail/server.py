"""The server: one FastAPI application holding the JSON API (``facetrail.api``) and the web pages
(``facetrail.web``) over one accountable system, opened at start-up and closed at shutdown; ``serve`` runs it.

``python -m facetrail.server [--host H] [--port P] [--workers N] [--data DIR]`` (or ``facetrail serve``) runs it."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from facetrail.accountability.service import NOTICE, Facetrail
from facetrail.api.routes import api_router
from facetrail.datadir import DATA_ENV, DataDir
from facetrail.errors import FacetrailError
from facetrail.http import API_PREFIX
from facetrail.http.errors import install_error_handlers
from facetrail.http.middleware import BodySizeLimit, RequestLog, SecurityHeaders, TrustedHosts
from facetrail.http.ratelimit import SlidingWindowLimiter
from facetrail.http.settings import ApiSettings
from facetrail.web import install_web

DESCRIPTION = (
    "Accountable face search. Every request is made by an authenticated user and every search is tied to a case, a "
    "permitted purpose and an offence, checked against the policy in force and audited. " + NOTICE
)
TAGS = [
    {"name": "auth", "description": "Log in for a bearer token (and a cookie session with CSRF protection)."},
    {"name": "users", "description": "Accounts and roles (admins)."},
    {"name": "policy", "description": "The rules every search runs under."},
    {"name": "galleries", "description": "Galleries, unit grants, enrolment and expungement (admins)."},
    {"name": "searches", "description": "Faces in a photograph, case-bound searches and comparisons (investigators)."},
    {"name": "reviews", "description": "Blind two-person review (examiners) and disputes (supervisors)."},
    {"name": "leads", "description": "Reports of verified investigative leads."},
    {"name": "oversight", "description": "Transparency reports and the audit trail (auditors and supervisors)."},
    {"name": "health", "description": "For monitoring; no authentication."},
]


def create_app(datadir: DataDir | None = None, settings: ApiSettings | None = None) -> FastAPI:
    """The API over ``datadir`` (default: the settings' data directory, else ``FACETRAIL_DATA``, else
    ``./facetrail-data``); ``settings`` default to the environment's."""
    settings = settings or ApiSettings.from_env()
    datadir = datadir or DataDir.locate(settings.data_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.system = Facetrail.open(datadir)
        checkpoints = app.state.system.audit.start_timer()  # an idle server still signs (and witnesses) its last entries
        quiet_hour = app.state.system.indexes.start_timer()  # retrains outgrown indexes (index.retrain = "quiet_hour")
        try:
            yield
        finally:
            quiet_hour.stop()
            checkpoints.stop()
            app.state.system.close()

    app = FastAPI(
        title="facetrail", version="1", description=DESCRIPTION, openapi_tags=TAGS, lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json", docs_url=None, redoc_url=None,  # their viewers load from a CDN
    )
    app.state.settings = settings
    app.state.limiter = SlidingWindowLimiter()
    install_error_handlers(app)
    app.include_router(api_router)
    install_web(app, datadir)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    if "*" not in settings.allowed_hosts:
        app.add_middleware(TrustedHosts, allowed_hosts=list(settings.allowed_hosts))
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestLog)
    app.openapi = lambda: _openapi(app, settings)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI, settings: ApiSettings) -> dict[str, Any]:
    """The generated document, with the session cookie beside the bearer token as a way to authenticate."""
    if app.openapi_schema is None:
        document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                               tags=app.openapi_tags)
        schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes["SessionCookie"] = {
            "type": "apiKey", "in": "cookie", "name": settings.session_cookie,
            "description": "Set by POST /auth/login; unsafe methods also need the X-CSRF-Token header.",
        }
        for operations in document["paths"].values():
            for operation in operations.values():
                if {"HTTPBearer": []} in operation.get("security", []):
                    operation["security"].append({"SessionCookie": []})
                for code, response in operation["responses"].items():
                    content = response.get("content", {})
                    if code[0] in "45" and content and "application/json" not in content:
                        # errors are JSON even where the route answers HTML, CSV, an image or a zip
                        response["content"] = {"application/json": next(iter(content.values()))}
        app.openapi_schema = document
    return app.openapi_schema


def configure_logging() -> None:
    """Write the API's JSON log lines to standard error, one per line."""
    logger = logging.getLogger("facetrail.api")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def worker_app() -> FastAPI:
    """The application of one of several server processes (``serve(workers=N)``): settings and data directory from
    the environment, logging configured in this process."""
    configure_logging()
    return create_app()


def serve(host: str = "127.0.0.1", port: int = 8000, data: str | os.PathLike | None = None, workers: int = 1) -> None:
    """Run the API with uvicorn until interrupted, in ``workers`` processes (each with its own system; more than one
    needs PostgreSQL). A bad setting, a data directory that cannot be opened, or several workers over SQLite raise
    FacetrailError before the server starts."""
    import uvicorn

    if workers < 1:
        raise FacetrailError(f"--workers must be at least 1, not {workers}")
    settings = ApiSettings.from_env()
    if data is not None:
        settings = settings.model_copy(update={"data_dir": Path(data)})
    datadir = DataDir.locate(settings.data_dir)
    system = Facetrail.open(datadir, purge=False)
    database = system.database_kind
    system.close()
    if workers > 1 and database != "postgresql":
        raise FacetrailError(
            f"--workers {workers} needs PostgreSQL (store.database_url or FACETRAIL_DATABASE_URL); this data directory "
            f"uses {database}, which lets one process write at a time: serve it with one worker"
        )
    configure_logging()
    if workers == 1:
        uvicorn.Server(server_config(create_app(datadir, settings), settings, host, port)).run()
        return
    os.environ[DATA_ENV] = str(datadir.root)  # the worker processes read their settings from the environment
    uvicorn.run("facetrail.server:worker_app", factory=True, workers=workers, **server_options(settings, host, port))


def server_options(settings: ApiSettings, host: str = "127.0.0.1", port: int = 8000) -> dict[str, Any]:
    """uvicorn's options: forwarded headers are believed only from ``settings.trusted_proxies`` (uvicorn's own default
    trusts them from 127.0.0.1, which lets any local client, or a proxy that passes the header through, choose its
    address)."""
    proxies = list(settings.trusted_proxies)
    return {"host": host, "port": port, "access_log": False, "server_header": False,
            "proxy_headers": bool(proxies), "forwarded_allow_ips": proxies or None}


def server_config(app: FastAPI, settings: ApiSettings, host: str = "127.0.0.1", port: int = 8000):
    """uvicorn's configuration for serving ``app`` in this process (see ``server_options``)."""
    import uvicorn

    return uvicorn.Config(app, **server_options(settings, host, port))


def main(argv: list[str] | None = None) -> None:
    """``python -m facetrail.server``: run the API and the web pages."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m facetrail.server", description="Run the facetrail server.")
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default: 127.0.0.1).")
    parser.add_argument("--port", type=int, default=8000, help="Port (default: 8000).")
    parser.add_argument("--workers", type=int, default=1, help="Server processes (more than 1 needs PostgreSQL).")
    parser.add_argument("--data", default=None, help="Data directory (default: FACETRAIL_DATA or ./facetrail-data).")
    arguments = parser.parse_args(argv)
    try:
        serve(arguments.host, arguments.port, arguments.data, arguments.workers)
    except FacetrailError as exc:
        parser.exit(2, f"error: {exc}\n")


if __name__ == "__main__":
    main()
