"""Composition root: `create_app(settings)` wires the bridge's components and the HTTP side.

The running bridge (`bridge.core.Bridge`) starts and stops with the app's lifespan; handlers receive
narrow services by dependency injection: the printer service, the actions, the read model, a health
check, and the authenticated caller's id.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin

from bridge import __version__
from bridge.config import Settings
from bridge.core import Bridge
from bridge.domain.agent_config import AgentConfig, build_agent_config
from bridge.domain.models import PrinterRecord
from bridge.http.auth import user_id_provider
from bridge.http.deps import HotReads
from bridge.http.errors import EXCEPTION_HANDLERS
from bridge.http.fastpath import ReadFastPath
from bridge.http.health import health
from bridge.http.openapi import document_error_responses
from bridge.http.printers import PrinterController
from bridge.http.readmodel import ReadModel
from bridge.http.schemas import Health
from bridge.mqtt.dynsec import printer_username

MAX_BODY_BYTES = 1024 * 1024


def create_app(settings: Settings, clock: Callable[[], float] = time.time) -> ReadFastPath:
    """The ASGI app: the Litestar app behind the fast path for the two hottest reads
    (`bridge.http.fastpath`); `.app` is the Litestar app, and its attributes are reachable on the wrapper."""
    app = create_litestar_app(settings, clock)
    bridge: Bridge = app.state.bridge
    return ReadFastPath(app, app.state.hot_reads, bridge.catch_up)


def _value(value: Any) -> Provide:
    def provide() -> Any:
        return value

    return Provide(provide, use_cache=True, sync_to_thread=False)


def create_litestar_app(settings: Settings, clock: Callable[[], float] = time.time) -> Litestar:
    bridge = Bridge(settings, clock)
    views = ReadModel(bridge.store.printers)
    hot = HotReads(bridge.store.users, bridge.printers, views)

    def agent_configs(rec: PrinterRecord) -> AgentConfig:
        return build_agent_config(
            rec,
            username=printer_username(rec.id),
            broker_url=settings.agent_mqtt_url,
            base_topic=settings.base_topic,
        )

    def check_health() -> Health:
        return Health(
            mqtt="connected" if bridge.mqtt_connected else "disconnected",
            db="ok" if bridge.store.check() else "error",
        )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await bridge.start()
        try:
            yield
        finally:
            await bridge.stop()

    app = Litestar(
        route_handlers=[PrinterController, health],
        dependencies={
            "printers": _value(bridge.printers),
            "actions": _value(bridge.actions),
            "views": _value(views),
            "check_health": _value(check_health),
            "agent_configs": _value(agent_configs),
            "user_id": Provide(user_id_provider(bridge.store.users)),
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
        state=State({"bridge": bridge, "hot_reads": hot}),
        # The command line configures logging; Litestar's default config would replace its handlers.
        logging_config=None,
        debug=False,
    )
    document_error_responses(app)
    return app
