"""The two hottest reads, answered before Litestar's routing.

`GET /api/v1/printers/` and `GET /api/v1/printers/{id}/` are what dashboards and scripts poll. Their
answer is bytes the store already holds, so Litestar's routing, dependency injection and response
machinery were most of their cost (bench/RESULTS.md). `ReadFastPath` wraps the Litestar app: an ordinary,
successful read (a valid token, the caller's own printer, a valid or absent `with_archived`) is answered
here with the same bytes and headers; anything else -- a missing or bad token, another user's printer, a
bad parameter, any other method or path -- goes to the Litestar app
untouched, so every error is produced in one place. `tests/integration/test_fastpath.py` checks that both
paths answer byte for byte the same.

As the app's front door it also does what every request needs first: it takes in what another process
(the CLI) committed (`Bridge.catch_up`, one `PRAGMA data_version` when nothing did), so a request that
starts after a command returned sees its effect on either path; and it gives an OPTIONS answer the `Allow`
header Litestar 2 gets wrong (`bridge.http.allow`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast
from urllib.parse import parse_qsl

from litestar import Litestar
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, HTTPScope, Receive, Scope, Send

from bridge.http.allow import AllowedMethods
from bridge.http.auth import token_from_scope_headers
from bridge.http.deps import HotReads
from bridge.http.validation import InvalidInput, parse_bool_param

PREFIX = "/api/v1/printers"
_JSON_HEADERS = [(b"content-type", b"application/json")]


def _with_archived(query: bytes) -> bool | None:
    """The `with_archived` flag; None when the query is one the fast path leaves to Litestar."""
    if not query:
        return False
    values = [v for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True) if k == "with_archived"]
    if not values:
        return False
    if len(values) > 1:
        return None
    try:
        return parse_bool_param("with_archived", values[0], False)
    except InvalidInput:
        return None


class ReadFastPath:
    def __init__(self, app: Litestar, hot: HotReads, catch_up: Callable[[], object]) -> None:
        """`catch_up()`: take in what another process committed (`Bridge.catch_up`)."""
        self.app = app
        self.hot = hot
        self.catch_up = catch_up
        self.allowed = AllowedMethods(app)

    def __getattr__(self, name: str) -> Any:  # the wrapped app's attributes (state, routes...) stay reachable
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.catch_up()
        method = cast(HTTPScope, scope)["method"]
        if method == "GET":
            chunks = self._answer(cast(HTTPScope, scope))
            if chunks is not None:
                start: HTTPResponseStartEvent = {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*_JSON_HEADERS, (b"content-length", str(sum(map(len, chunks))).encode())],
                }
                await send(start)
                last = len(chunks) - 1
                for n, chunk in enumerate(chunks):
                    body: HTTPResponseBodyEvent = {"type": "http.response.body", "body": chunk, "more_body": n < last}
                    await send(body)
                return
        elif method == "OPTIONS":
            send = self.allowed.sender(scope, send)
        await self.app(scope, receive, send)

    def _answer(self, scope: HTTPScope) -> list[bytes] | None:
        """The response body (in one or more chunks), or None to leave the request to Litestar."""
        path: str = scope["path"]
        if not path.startswith(PREFIX):
            return None
        rest = path[len(PREFIX) :]
        if rest.endswith("/"):
            rest = rest[:-1]
        if rest:  # "/{id}": digits only, as Litestar's int path parameter
            rest = rest[1:] if rest.startswith("/") else "x"
            if not (rest.isascii() and rest.isdigit() and len(rest) <= 12):
                return None
        token = token_from_scope_headers(scope["headers"])
        if token is None:
            return None
        hot = self.hot
        user_id = hot.users.for_token(token)
        if user_id is None:
            return None
        with_archived = _with_archived(scope["query_string"])
        if with_archived is None:
            return None
        if not rest:
            return hot.views.owned_json(user_id, with_archived)
        rec = hot.printers.visible(user_id, int(rest), with_archived)
        if rec is None:
            return None
        return [hot.views.printer_json(rec)]
