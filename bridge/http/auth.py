"""Token authentication: `Authorization: Bearer|Token <token>` or `X-API-KEY: <token>`."""

from __future__ import annotations

from typing import Any

from litestar import Request

from bridge.http.deps import BridgeDep
from bridge.http.errors import NotAuthenticated


def token_from_headers(request: Request[Any, Any, Any]) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() in ("bearer", "token") and token.strip():
            return token.strip()
        return None
    key = request.headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


async def provide_user_id(request: Request[Any, Any, Any], bridge: BridgeDep) -> int:
    token = token_from_headers(request)
    if token is None:
        raise NotAuthenticated("Authentication credentials were not provided.")
    user_id = bridge.store.user_for_token(token)
    if user_id is None:
        raise NotAuthenticated("Invalid token.")
    return user_id
