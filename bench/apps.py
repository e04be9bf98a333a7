"""ASGI app factories for the HTTP benchmarks.

`baseline_app`: a bare Litestar app returning, from memory, the bytes printbridge serves (read once from
the files named by BENCH_BODY_LIST and BENCH_BODY_SINGLE). `printbridge_app`: printbridge's own app built
from PRINTBRIDGE_* like `printbridge serve`, for servers other than uvicorn (granian).
"""

from __future__ import annotations

import os
from pathlib import Path

from litestar import Litestar, Response, get


def baseline_app() -> Litestar:
    bodies = {}
    for key in ("list", "single"):
        path = os.environ.get(f"BENCH_BODY_{key.upper()}")
        bodies[key] = Path(path).read_bytes() if path else b"[]"

    @get("/api/v1/printers/")
    async def printers() -> Response[bytes]:
        return Response(content=bodies["list"], media_type="application/json")

    @get("/api/v1/printers/{printer_id:int}/")
    async def printer(printer_id: int) -> Response[bytes]:
        return Response(content=bodies["single"], media_type="application/json")

    @get("/ready")
    async def ready() -> Response[bytes]:
        return Response(content=b"ok", media_type="text/plain")

    return Litestar(route_handlers=[printers, printer, ready], debug=False)


def printbridge_app() -> Litestar:
    from bridge.app import create_app
    from bridge.config import load_settings

    return create_app(load_settings())
