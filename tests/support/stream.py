"""The bridge served by a real uvicorn on a free port, in the test's own event loop, and a client of its
event stream. The event stream needs a real server: Litestar's test client collects a whole response
before returning it, and flow control (a client that stops reading) exists only on a real socket."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bridge.app import create_app
from bridge.core import Bridge
from bridge.http.live import LiveHub
from tests.support.broker import Broker, free_port
from tests.support.env import Clock, test_settings, wait_for

STREAM = "/api/v1/printers/stream/"


@dataclass
class SseEvent:
    event: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class Served:
    url: str
    bridge: Bridge
    hub: LiveHub
    http: httpx.AsyncClient
    token: str
    user_id: int
    streams: list[StreamClient] = field(default_factory=list)

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    async def create_printer(self, name: str, token: str | None = None) -> dict[str, Any]:
        resp = await self.http.post("/api/v1/printers/", json={"name": name}, headers=self.auth(token))
        assert resp.status_code == 201, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def stream(self, token: str | None = None, **headers: str) -> StreamClient:
        client = StreamClient(self.http, {**self.auth(token), **headers})
        await client.open()
        self.streams.append(client)
        return client


class StreamClient:
    """Reads `GET /api/v1/printers/stream/` event by event (comments included, as event `:comment`)."""

    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.http = http
        self.headers = headers
        self.events: asyncio.Queue[SseEvent] = asyncio.Queue()
        self.received: list[SseEvent] = []
        self.status_code = 0
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.ended = asyncio.Event()

    async def open(self) -> None:
        self._task = asyncio.create_task(self._read())
        await asyncio.wait_for(self._ready.wait(), 10)

    async def _read(self) -> None:
        try:
            async with self.http.stream("GET", STREAM, headers=self.headers, timeout=None) as resp:
                self.status_code = resp.status_code
                self.content_type = resp.headers.get("content-type", "")
                self._ready.set()
                event = SseEvent("message", "")
                data: list[str] = []
                async for line in resp.aiter_lines():
                    if line == "":
                        if data:
                            event.data = "\n".join(data)
                            self._put(event)
                        event, data = SseEvent("message", ""), []
                    elif line.startswith(":"):
                        self._put(SseEvent(":comment", line[1:].strip()))
                    else:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if name == "event":
                            event.event = value
                        elif name == "data":
                            data.append(value)
                        elif name == "id":
                            event.id = value
        finally:
            self._ready.set()
            self.ended.set()

    def _put(self, event: SseEvent) -> None:
        self.received.append(event)
        self.events.put_nowait(event)

    async def next(self, timeout: float = 10.0, skip_comments: bool = True) -> SseEvent:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no event within {timeout} s")
            try:
                event = await asyncio.wait_for(self.events.get(), remaining)
            except TimeoutError:
                raise AssertionError(f"no event within {timeout} s") from None
            if skip_comments and event.event == ":comment":
                continue
            return event

    async def until(self, predicate: Any, timeout: float = 10.0, what: str = "event") -> SseEvent:
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = await self.next(max(deadline - time.monotonic(), 0.001))
            except AssertionError:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None
            if predicate(event):
                return event

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError, httpx.HTTPError):
                await self._task


@asynccontextmanager
async def served_bridge(broker: Broker, db_path: Path, **overrides: Any) -> AsyncIterator[Served]:
    settings = test_settings(broker, db_path, **overrides)
    app = create_app(settings, Clock())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: server.started or task.done(), 15, "uvicorn to start")
        assert not task.done(), "uvicorn did not start"
        bridge: Bridge = app.state.bridge
        await wait_for(lambda: bridge.mqtt_connected, 10, "the bridge's MQTT connection")
        user_id, token = bridge.store.users.add("alice")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            served = Served(f"http://127.0.0.1:{port}", bridge, app.state.hub, http, token, user_id)
            try:
                yield served
            finally:
                for stream in served.streams:
                    await stream.close()
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
