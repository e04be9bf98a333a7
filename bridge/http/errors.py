"""One mapping from exceptions to HTTP responses: every error is JSON with a `detail` string."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from bridge.http.validation import InvalidInput
from bridge.state.store import StoreError

log = logging.getLogger("printbridge.http")


class NotFound(Exception):
    """The printer does not exist for this caller (another user's, deleted, archived or unknown)."""


class NotAuthenticated(Exception):
    pass


def _json(detail: str, status: int, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(content={"detail": detail}, status_code=status, headers=headers)


def _not_found(_: Request[Any, Any, Any], __: NotFound) -> Response[Any]:
    return _json("Not found.", 404)


def _not_authenticated(_: Request[Any, Any, Any], exc: NotAuthenticated) -> Response[Any]:
    return _json(str(exc), 401, {"WWW-Authenticate": 'Bearer realm="printbridge"'})


def _invalid(_: Request[Any, Any, Any], exc: InvalidInput) -> Response[Any]:
    return _json(str(exc), 400)


def _store_error(_: Request[Any, Any, Any], exc: StoreError) -> Response[Any]:
    log.error("request failed on the database: %s", exc)
    return _json("The database is not writable right now; nothing was changed.", 503)


def _litestar_validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    fields = [str(e.get("key")) for e in (exc.extra or []) if isinstance(e, dict) and e.get("key")]
    detail = exc.detail
    if fields:
        detail = f"{', '.join(fields)}: {exc.detail}"
    return _json(detail, 400)


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    # Litestar's own 404 (no route, or an id that is not an int) reads like ours: docs/rest.md "Not found.".
    detail = "Not found." if exc.status_code == 404 else exc.detail
    return _json(detail, exc.status_code, dict(exc.headers or {}))


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return _json("Internal error; it has been logged.", 500)


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    NotFound: _not_found,
    NotAuthenticated: _not_authenticated,
    InvalidInput: _invalid,
    StoreError: _store_error,
    ValidationException: _litestar_validation,
    HTTPException: _http,
    Exception: _unexpected,
}
