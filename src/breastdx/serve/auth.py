"""Access control: every ``/v1/...`` request carries ``Authorization: Bearer TOKEN`` of a valid API token.

Tokens are made with ``breastdx token create NAME`` and stored only as SHA-256 hashes, in the database of the
prediction record (:class:`breastdx.serve.db.PredictionStore`), so every worker process sees a revocation at
its next request. ``/healthz``, the page and its static files stay open. A refused request gets 401 in the
service's error format (``{"error": {"code": "unauthorized", ...}}``) with ``WWW-Authenticate: Bearer``,
before its body is read; when the database cannot be read to check the token, 503 ``database_unavailable``.

``--no-auth`` (``ServeSettings.auth = False``) is accepted only on a loopback address
(:func:`is_loopback`).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from breastdx.serve.db import DatabaseError, unavailable_message

log = logging.getLogger(__name__)

PROTECTED_PREFIX = "/v1/"
"""Paths under this prefix need a token."""


def is_loopback(host: str) -> bool:
    """True when ``host`` is ``localhost`` or a loopback address (127.0.0.0/8, ``::1``): only this machine can
    connect. A host name other than ``localhost`` is not resolved and counts as not loopback."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header (scheme case-insensitive), or None."""
    for key, value in headers:
        if key.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


class BearerAuth:
    """ASGI middleware: refuses ``/v1/...`` requests without a valid token (401) and puts the token's name in
    ``request.state.token_name`` for the record. A token that cannot be checked because the database cannot be
    read is answered 503 ``database_unavailable``, as the endpoints answer a database failure.

    Args:
        app: The wrapped ASGI app.
        enabled: False serves every request without a token (``token_name`` None).
        error: ``(status, code, message) -> Response`` in the service's error format
            (:func:`breastdx.serve.middleware.error_response`).
    """

    def __init__(self, app: Any, error: Callable[..., Any], enabled: bool = True) -> None:
        self.app = app
        self.error = error
        self.enabled = bool(enabled)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.enabled or not scope.get("path", "").startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope.get("headers", []))
        if token is None:
            message = ("This address needs an API token: send the header 'Authorization: Bearer TOKEN'. An "
                       "administrator makes one with 'breastdx token create NAME'.")
        else:
            store = scope["app"].state.store
            try:
                name = await run_in_threadpool(store.token_owner, token) if len(token) <= 256 else None
            except DatabaseError as e:
                log.error("%s", e)  # the cause names the database: logged, not told to a client not yet known
                await self.error(503, "database_unavailable", unavailable_message(
                    "The API token could not be checked"))(scope, receive, send)
                return
            if name is not None:
                scope.setdefault("state", {})["token_name"] = name
                await self.app(scope, receive, send)
                return
            message = "The API token was refused: it is unknown or has been revoked. Ask for a valid token."
        response = self.error(401, "unauthorized", message)
        response.headers["WWW-Authenticate"] = 'Bearer realm="breastdx"'
        await response(scope, receive, send)


def document_bearer_auth(app: Any) -> None:
    """Declare the bearer scheme in the OpenAPI schema, on every ``/v1/...`` operation (``/docs`` then offers
    an *Authorize* button), with its refusals: 401, and 503 when the token cannot be checked, each with the body
    ``ErrorResponse`` (:mod:`breastdx.serve.schemas`, in the schema through the app's error answers)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
            "type": "http", "scheme": "bearer",
            "description": "An API token made with `breastdx token create NAME`."}
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}  # the app's
        for path, operations in schema.get("paths", {}).items():
            if path.startswith(PROTECTED_PREFIX):
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}]
                    responses = operation.setdefault("responses", {})
                    responses.setdefault("401", {"description": "No valid API token.", "content": error})
                    responses.setdefault("503", {"description": "The token (or the record) could not be checked: "
                                                                "the database cannot be read.", "content": error})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
