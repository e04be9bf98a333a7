"""`GET /health`: no authentication; 200 when MQTT and the database are both healthy, else 503."""

from __future__ import annotations

from litestar import Response, get

from bridge.http.deps import BridgeDep
from bridge.http.schemas import Health


@get("/health", summary="Bridge health", tags=["health"], exclude_from_auth=True)
async def health(bridge: BridgeDep) -> Health:
    body = Health(
        mqtt="connected" if bridge.mqtt_connected else "disconnected",
        db="ok" if bridge.store.check() else "error",
    )
    status = 200 if body.mqtt == "connected" and body.db == "ok" else 503
    return Response(content=body, status_code=status)  # type: ignore[return-value]
