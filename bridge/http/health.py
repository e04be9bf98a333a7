"""`GET /health`: no authentication; 200 when MQTT and the database are both healthy, else 503."""

from __future__ import annotations

from litestar import Response, get

from bridge.http.deps import HealthDep
from bridge.http.schemas import Health


@get("/health", summary="Bridge health", tags=["health"], exclude_from_auth=True)
async def health(check_health: HealthDep) -> Health:
    body = check_health()
    status = 200 if body.mqtt == "connected" and body.db == "ok" else 503
    return Response(content=body, status_code=status)  # type: ignore[return-value]
