"""The `Allow` header of an OPTIONS answer: every method its path serves.

Litestar 2 builds the OPTIONS handler of a path when the first handler of that path is registered and
never updates it, so `OPTIONS /api/v1/printers/{id}/` listed `DELETE, OPTIONS` only (litestar#4169, fixed
in Litestar 3). Litestar still routes the request and answers it (404 for an unknown path stays its own);
only the header of a successful answer is set here, from the app's routes once they are all registered.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.types import Message, Scope, Send


class AllowedMethods:
    def __init__(self, app: Litestar) -> None:
        # the path template Litestar puts in the scope (parameters without their type) -> the `Allow` value
        self.by_path = {
            route.path_format: ", ".join(sorted(route.methods)).encode()
            for route in app.routes
            if isinstance(route, HTTPRoute)
        }

    def sender(self, scope: Scope, send: Send) -> Send:
        """`send` with the `Allow` header of a 2xx answer set to every method of the path routed to."""

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                allow = self.by_path.get(scope.get("path_template", ""))
                if allow is not None:
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                    message = {**message, "headers": [*headers, (b"allow", allow)]}
            await send(message)

        return send_with_allow
