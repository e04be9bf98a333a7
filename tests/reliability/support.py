"""Helpers for the reliability tests.

Litestar's AsyncTestClient runs the app on its own event loop in a portal thread and blocks the caller's
loop for the length of each request, so requests that must overlap (an action waiting for an ack while the
broker restarts, REST load while statuses stream in) go through `rest()`, which runs an httpx ASGI client
on the bridge's own loop and leaves the test's loop free.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from bridge.mqtt.link import Incoming
from tests.support.env import BridgeEnv


async def rest(env: BridgeEnv, method: str, path: str, timeout: float = 30.0, **kwargs: Any) -> httpx.Response:
    """One request to the running app, concurrently with anything else the test does."""
    app = env.app
    headers = {**env.auth(), **kwargs.pop("headers", {})}

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=timeout) as client:
            return await client.request(method, path, headers=headers, **kwargs)

    future = env.client.blocking_portal.start_task_soon(call)
    return await asyncio.wrap_future(future)


def on_bridge_loop(env: BridgeEnv, fn: Callable[[], Any]) -> Any:
    """Run `fn` on the bridge's event loop and return its result (from a test thread or loop)."""

    async def call() -> Any:
        return fn()

    return env.client.blocking_portal.call(call)


class Recorder:
    """Every inbound message the bridge handles, with the monotonic time it arrived."""

    def __init__(self, env: BridgeEnv) -> None:
        self.seen: list[tuple[float, Incoming]] = []
        ingest = env.bridge.inbound
        original = ingest.handle

        def handle(msg: Incoming) -> None:
            self.seen.append((time.monotonic(), msg))
            original(msg)

        ingest.handle = handle  # type: ignore[method-assign]

    def on(self, topic: str, after: float = 0.0) -> list[tuple[float, Incoming]]:
        return [(t, m) for t, m in list(self.seen) if t >= after and m.topic == topic]
