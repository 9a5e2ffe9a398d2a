"""Wiring the web application into the FastAPI application: its routes, static files and HTML error pages."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from facetrail.http import API_PREFIX
from facetrail.datadir import DataDir
from facetrail.web.jobs import EnrolmentJobs
from facetrail.web.pages import problem_page
from facetrail.web.routes import web_router
from facetrail.web.session import LoginRequired, login_url

STATIC = Path(__file__).parent / "static"


def install_web(app: FastAPI, datadir: DataDir) -> None:
    """Add the pages, ``/static`` and HTML error pages (the API keeps its JSON errors). Call after the API's error
    handlers are installed."""
    app.include_router(web_router)
    app.state.enrolment_jobs = EnrolmentJobs(datadir.jobs_dir)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for error_type, json_handler in list(app.exception_handlers.items()):
        app.add_exception_handler(error_type, _html_unless_api(json_handler))
    app.add_exception_handler(LoginRequired, _to_login)


def _html_unless_api(json_handler):
    """An error handler that answers pages with an HTML error page and API paths with the API's JSON error."""

    async def handle(request: Request, exc: Exception) -> Response:
        response = await json_handler(request, exc)
        accept = request.headers.get("accept", "")
        wants_json = "application/json" in accept and "text/html" not in accept
        if request.url.path.startswith((API_PREFIX + "/", "/static/")) or wants_json:
            return response
        return problem_page(request, response)

    return handle


async def _to_login(request: Request, exc: LoginRequired) -> RedirectResponse:
    return RedirectResponse(login_url(exc.next_path, exc.reason), status_code=303)
