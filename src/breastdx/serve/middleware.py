"""ASGI middleware of the service and the error answer they share.

From the outside in (:func:`breastdx.serve.app.create_app` adds them in this order):

* :class:`Notice`: the research-use header and the security headers on every answer, a refusal included;
* :class:`breastdx.serve.auth.BearerAuth`: access control, from the request's headers alone;
* :class:`BodyLimit`: the request body limit (413) and the wait for its next chunk (408).

So a client without a valid token is answered 401 before anything else, whatever size its body says it has, and no
byte of that body is read.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from breastdx import RESEARCH_USE_ONLY

NOTICE_HEADER = "X-Research-Use-Only"

PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
"""Content-Security-Policy of every answer (JSON, the page, its files), but the API documentation pages."""

DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'")
"""Content-Security-Policy of ``/docs`` and ``/redoc``: Swagger UI and ReDoc are served from the package
(``fastapi-offline``, under :data:`breastdx.serve.app.DOCS_STATIC`), since hospital networks are often offline;
FastAPI's pages start them with an inline script. Nothing is loaded from another host."""

DOCS_PATHS = ("/docs", "/redoc")


class BodyTooLargeError(Exception):
    """A request body grew over the limit while it was being received (no or a false Content-Length)."""


class BodyTimeoutError(Exception):
    """A client stopped sending its request body: no chunk of it came within the idle time limit."""


def error_response(status: int, code: str, message: str, problems: list[str] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON answer of a failed request: ``{"error": {"code", "message", "problems"}, "research_use_only"}``,
    with ``headers`` (a 405's ``Allow``, a 401's ``WWW-Authenticate``)."""
    body = {"error": {"code": code, "message": message, "problems": list(problems or [])},
            "research_use_only": RESEARCH_USE_ONLY}
    return JSONResponse(body, status_code=status, headers=headers)


def answer_head(app: Any) -> None:
    """Answer ``HEAD`` wherever ``GET`` is answered (the page, ``/healthz``, the documentation, ``/v1/...``), as
    uptime probes and web servers expect: the same endpoint, left out of the OpenAPI schema; :class:`Notice` drops
    the body. Call it once every route is in place; a ``HEAD`` on an address without ``GET`` stays 405."""
    from fastapi.routing import APIRoute

    for route in list(app.router.routes):
        if isinstance(route, APIRoute) and "GET" in route.methods and "HEAD" not in route.methods:
            app.router.add_api_route(route.path, route.endpoint, methods=["HEAD"], include_in_schema=False,
                                     response_model=route.response_model, response_class=route.response_class,
                                     name=f"{route.name}_head")


class Notice:
    """ASGI middleware: adds to every answer the research-use header, a Content-Security-Policy
    (:data:`PAGE_CSP`, :data:`DOCS_CSP` on the documentation pages) unless the answer has one, and
    ``X-Content-Type-Options: nosniff``; sends no body in the answer to a ``HEAD`` (its headers, ``Content-Length``
    included, are those of the ``GET``)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope.get("path", "").startswith(DOCS_PATHS) else PAGE_CSP
        head = scope.get("method", "").upper() == "HEAD"

        async def send_with_notice(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {bytes(k).lower() for k, _ in headers}
                headers.append((NOTICE_HEADER.lower().encode(), RESEARCH_USE_ONLY.encode("latin-1")))
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", csp.encode()))
                if b"x-content-type-options" not in names:
                    headers.append((b"x-content-type-options", b"nosniff"))
                message["headers"] = headers
            elif message["type"] == "http.response.body" and head:
                message = {**message, "body": b""}
            await send(message)

        await self.app(scope, receive, send_with_notice)


class BodyLimit:
    """ASGI middleware: refuses request bodies over ``max_body`` bytes (413 ``upload_too_large``), and clients
    that stop sending theirs (408).

    ``path_limits`` gives some paths a smaller limit of their own, with the reason said in the refusal. A declared
    ``Content-Length`` over the limit is answered at once, before the body is read; a body that grows over the limit
    while it is received raises :class:`BodyTooLargeError` in the endpoint reading it. A body whose
    next chunk does not come within ``idle_timeout_s`` seconds raises :class:`BodyTimeoutError` there: a client
    that sends its headers and then stalls would otherwise hold its connection and the part of the upload
    received, in memory, for ever (the server has no time limit of its own on a request body).
    """

    def __init__(self, app: Any, max_body: int, idle_timeout_s: float | None = None,
                 path_limits: dict[str, tuple[int, str]] | None = None) -> None:
        self.app = app
        self.max_body = int(max_body)
        self.idle_timeout_s = idle_timeout_s
        self.path_limits = dict(path_limits or {})  # path -> (bytes, why): a smaller limit on some endpoints

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, why = self.path_limits.get(scope.get("path", ""), (self.max_body, "upload limit plus multipart framing"))
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared > limit:
                response = error_response(413, "upload_too_large", f"The request body is {declared:,} bytes, over "
                                          f"the limit of {limit:,} bytes ({why}); send a smaller file.")
                await response(scope, receive, send)
                return
        received = 0
        complete = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal received, complete
            if complete or self.idle_timeout_s is None:  # once the body is in, receive waits for a disconnect
                message = await receive()
            else:
                import anyio

                try:
                    with anyio.fail_after(self.idle_timeout_s):
                        message = await receive()
                except TimeoutError:
                    raise BodyTimeoutError(f"The request body stopped arriving: nothing came for "
                                           f"{self.idle_timeout_s:g} s after {received:,} bytes; send it "
                                           f"again.") from None
            complete = complete or message["type"] != "http.request" or not message.get("more_body", False)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(f"The request body is over the limit of {limit:,} bytes ({why}); send "
                                            f"a smaller file.")
            return message

        await self.app(scope, limited_receive, send)
