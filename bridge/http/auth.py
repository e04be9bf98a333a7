"""Token authentication: `Authorization: Bearer|Token <token>` or `X-API-KEY: <token>`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from litestar import Request

from bridge.core import Bridge
from bridge.http.deps import BridgeDep
from bridge.http.errors import NotAuthenticated


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


def authenticate(bridge: Bridge, request: Request[Any, Any, Any]) -> int:
    """The caller's user id, or NotAuthenticated (401)."""
    token = token_from_headers(request)
    if token is None:
        raise NotAuthenticated("Authentication credentials were not provided.")
    user_id = bridge.store.user_for_token(token)
    if user_id is None:
        raise NotAuthenticated("Invalid token.")
    return user_id


def caller(request: Request[Any, Any, Any]) -> tuple[Bridge, int]:
    """The bridge and the caller's user id, without dependency injection (for the hot read handlers)."""
    bridge: Bridge = request.app.state.bridge
    return bridge, authenticate(bridge, request)


async def provide_user_id(request: Request[Any, Any, Any], bridge: BridgeDep) -> int:
    return authenticate(bridge, request)
