"""The dashboard: `GET /` is one HTML page, its script and style sheet are under `/static/`. Plain files
shipped in the package (no build step, nothing fetched from elsewhere); the page talks to the REST API and
the event stream with the API token the user pastes into it."""

from __future__ import annotations

from pathlib import Path

from litestar import Response, get
from litestar.datastructures import CacheControlHeader
from litestar.router import Router
from litestar.static_files import create_static_files_router

STATIC_DIR = Path(__file__).parent / "static"

# The page loads only its own files; snapshots are shown from blob: URLs (fetched with the token).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@get("/", include_in_schema=False, media_type="text/html")
async def dashboard() -> Response[bytes]:
    return Response(content=(STATIC_DIR / "index.html").read_bytes(), headers=SECURITY_HEADERS, media_type="text/html")


def static_files() -> Router:
    return create_static_files_router(
        path="/static",
        directories=[STATIC_DIR],
        include_in_schema=False,
        cache_control=CacheControlHeader(no_cache=True),  # a new version of the bridge shows its new page
    )
