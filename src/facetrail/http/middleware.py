"""ASGI middleware: the request-body size limit, one JSON log line per request, and security headers."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.trustedhost import TrustedHostMiddleware, parse_host_header
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facetrail.http.errors import error_json

logger = logging.getLogger("facetrail.api")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
}


class TrustedHosts(TrustedHostMiddleware):
    """Starlette's Host header check (against Host header attacks), answering a refused request in the API's JSON
    error shape: 400 naming the host."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        super().__init__(app, allowed_hosts=allowed_hosts, www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.allow_any:
            host = Headers(scope=scope).get("host")
            parsed = parse_host_header(host)
            name = parsed.host.lower() if parsed else None
            if name is None or not any(name == allowed or (allowed.startswith("*") and name.endswith(allowed[1:]))
                                       for allowed in self.allowed_hosts):
                response = error_json(400, "invalid_host", f"this server does not answer to the host {host!r}; "
                                                           "FACETRAIL_API_ALLOWED_HOSTS names those it does")
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


class BodySizeLimit:
    """Answer 413 to a request whose body exceeds ``max_bytes``: at once when its Content-Length says so, otherwise
    as soon as the bytes read pass the limit (the rest is never read)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self.too_large(scope, receive, send)
            return
        received, exceeded, started = 0, False, False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    return {"type": "http.disconnect"}  # the app stops reading; its response is replaced below
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded or started:
                raise
        if exceeded and not started:
            await self.too_large(scope, receive, send)

    async def too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_json(413, "payload_too_large", f"the request body exceeds the limit of {self.max_bytes:,} bytes")
        await response(scope, receive, send)


class RequestLog:
    """Log one JSON line per request: method, path, status, user, duration and the server process's id (never bodies,
    queries or tokens)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            logger.info(json.dumps({
                "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"), "event": "request",
                "method": scope["method"], "path": scope["path"], "status": status,
                "user": scope.get("state", {}).get("username"), "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                "pid": os.getpid(),
            }))


class SecurityHeaders:
    """Add headers that keep responses out of caches and frames, stop content sniffing, and let pages load only this
    site's own scripts, styles and images (a route may set a stricter Content-Security-Policy)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, add_headers)
