"""Composition root: `create_app(settings)` builds the Litestar app whose lifespan owns the bridge."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin

from bridge import __version__
from bridge.config import Settings
from bridge.core import Bridge
from bridge.http.auth import provide_user_id
from bridge.http.dashboard import dashboard, static_files
from bridge.http.errors import EXCEPTION_HANDLERS
from bridge.http.fastpath import ReadFastPath
from bridge.http.health import health
from bridge.http.openapi import document_error_responses
from bridge.http.printers import PrinterController
from bridge.http.scores import ScoresController
from bridge.http.stream import StreamController
from bridge.live import LiveHub, StreamTiming

MAX_BODY_BYTES = 1024 * 1024


def create_app(settings: Settings, clock: Callable[[], float] = time.time) -> ReadFastPath:
    """The ASGI app: the Litestar app behind the fast path for the two hottest reads
    (`bridge.http.fastpath`); `.app` is the Litestar app, and its attributes are reachable on the wrapper."""
    app = create_litestar_app(settings, clock)
    bridge: Bridge = app.state.bridge
    return ReadFastPath(app, bridge)


def create_litestar_app(settings: Settings, clock: Callable[[], float] = time.time) -> Litestar:
    bridge = Bridge(settings, clock)
    hub = LiveHub(
        bridge.store,
        StreamTiming(
            min_interval_s=settings.stream_min_interval_s,
            heartbeat_s=settings.stream_heartbeat_s,
            stall_s=settings.stream_stall_s,
        ),
    )
    bridge.store.listener = hub  # every change the store records reaches the event streams

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await bridge.start()
        try:
            yield
        finally:
            hub.close_all("bridge shutting down")
            await bridge.stop()

    def provide_bridge(state: State) -> Bridge:
        return bridge

    app = Litestar(
        route_handlers=[PrinterController, StreamController, ScoresController, health, dashboard, static_files()],
        dependencies={
            "bridge": Provide(provide_bridge, use_cache=True, sync_to_thread=False),
            "user_id": Provide(provide_user_id),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=OpenAPIConfig(
            title="printbridge",
            version=__version__,
            description="The Obico printer API, served from SQLite and kept current over MQTT.",
            path="/schema",
            render_plugins=[ScalarRenderPlugin()],
        ),
        state=State({"bridge": bridge, "hub": hub}),
        # The command line configures logging; Litestar's default config would replace its handlers.
        logging_config=None,
        debug=False,
    )
    document_error_responses(app)
    return app
