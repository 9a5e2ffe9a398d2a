"""Wiring the web application into the FastAPI application: its routes, static files and HTML error pages."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    app.add_middleware(FormRedirects)


class FormRedirects:
    """A redirect answering a form that static/forms.js sent (marked by its ``Facetrail-Form`` header) becomes a 200
    naming the target in ``Facetrail-Location``, for the script to go there: fetch would follow a 303 itself, loading
    the next page twice (every view of a page counts against the rate limit, and many are audited)."""

    REQUEST_HEADER = b"facetrail-form"
    LOCATION_HEADER = b"facetrail-location"

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not any(name == self.REQUEST_HEADER for name, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return

        async def send_unredirected(message: Message) -> None:
            if message["type"] == "http.response.start" and 300 <= message["status"] < 400:
                headers = message.get("headers", [])
                location = next((value for name, value in headers if name.lower() == b"location"), None)
                if location is not None:
                    kept = [(name, value) for name, value in headers if name.lower() != b"location"]
                    message = {**message, "status": 200, "headers": [*kept, (self.LOCATION_HEADER, location)]}
            await send(message)

        await self.app(scope, receive, send_unredirected)


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
