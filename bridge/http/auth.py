"""Token authentication: `Authorization: Bearer|Token <token>` or `X-API-KEY: <token>`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from litestar import Request

from bridge.http.errors import NotAuthenticated
from bridge.state.users import Users


def token_from_headers(request: Request[Any, Any, Any]) -> str | None:
    return token_from_scope_headers(request.scope["headers"])


def token_from_scope_headers(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The API token from raw ASGI headers (lower-case names, first occurrence wins): building
    `request.headers` for two look-ups cost more per request than the rest of the authentication."""
    header = key = None
    for name, value in headers:
        if name == b"authorization" and header is None:
            header = value.decode("latin-1")
        elif name == b"x-api-key" and key is None:
            key = value.decode("latin-1")
    if header:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() in ("bearer", "token") and token.strip():
            return token.strip()
        return None
    return key.strip() if key and key.strip() else None


def authenticate(users: Users, request: Request[Any, Any, Any]) -> int:
    """The caller's user id, or NotAuthenticated (401)."""
    token = token_from_headers(request)
    if token is None:
        raise NotAuthenticated("Authentication credentials were not provided.")
    user_id = users.for_token(token)
    if user_id is None:
        raise NotAuthenticated("Invalid token.")
    return user_id


def user_id_provider(users: Users) -> Callable[[Request[Any, Any, Any]], Awaitable[int]]:
    """The `user_id` dependency: the authenticated caller."""

    async def provide_user_id(request: Request[Any, Any, Any]) -> int:
        return authenticate(users, request)

    return provide_user_id
