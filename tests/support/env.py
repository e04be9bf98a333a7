"""A running bridge for integration tests: the real app (Litestar + aiomqtt + SQLite) against a real broker,
driven through Litestar's AsyncTestClient, with a controllable clock."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient

from bridge.app import create_app
from bridge.config import MqttUrl, Settings
from bridge.core import Bridge
from bridge.http.fastpath import ReadFastPath
from bridge.mqtt.topics import Topics
from tests.support.agent import TestAgent
from tests.support.broker import Broker

_counter = itertools.count(1)


class Clock:
    """Real time plus an offset that tests move forward (TTLs, cooldowns) without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


async def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


def test_settings(broker: Broker, db_path: Path, **overrides: Any) -> Settings:
    n = next(_counter)
    values: dict[str, Any] = {
        "db_path": db_path,
        "mqtt_url": MqttUrl.parse(broker.url()),
        "base_topic": f"pbt{n}",
        "ha_prefix": f"hat{n}",
        "command_timeout_s": 2.0,
        "flush_interval_s": 0.02,
        "sweep_interval_s": 0.05,
        "reconcile_interval_s": 0.1,
    }
    values.update(overrides)
    return Settings(**values)


class BridgeEnv:
    def __init__(
        self, broker: Broker, settings: Settings, client: AsyncTestClient[Any], clock: Clock, app: ReadFastPath
    ) -> None:
        self.app = app  # the ASGI app under test (the read fast path in front of the Litestar app)
        self.broker = broker
        self.settings = settings
        self.client = client
        self.clock = clock
        self.topics = Topics(settings.base_topic, settings.ha_prefix)
        self.token = ""
        self.user_id = 0
        self.agents: list[TestAgent] = []

    @property
    def bridge(self) -> Bridge:
        bridge: Bridge = self.app.state.bridge
        return bridge

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def add_user(self, name: str) -> tuple[int, str]:
        """On the bridge's own thread: the store's connection is the bridge's, and a write from the test's
        thread could meet one of the bridge's in the middle of its transaction."""
        users = self.bridge.store.users
        return self.client.blocking_portal.call(users.add, name)

    async def create_printer(self, name: str = "Prusa", token: str | None = None, **fields: Any) -> dict[str, Any]:
        resp = await self.client.post("/api/v1/printers/", json={"name": name, **fields}, headers=self.auth(token))
        assert resp.status_code == 201, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def get_printer(self, printer_id: int, token: str | None = None, **params: Any) -> dict[str, Any]:
        resp = await self.client.get(f"/api/v1/printers/{printer_id}/", headers=self.auth(token), params=params)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def agent(self, printer: dict[str, Any], **kwargs: Any) -> TestAgent:
        """A connected test agent for `printer`, using its own broker credentials when the broker has them."""
        if self.broker.dynsec:
            await wait_for(
                lambda: self.bridge.store.accounts.broker_tokens().get(printer["id"]) == printer["auth_token"],
                what="the printer's broker account",
            )
            password = printer["auth_token"]
            username = None
        else:
            password = self.broker.admin_password or ""
            username = self.broker.admin_username
        agent = TestAgent(
            self.broker.host,
            self.broker.port,
            printer["id"],
            password,
            username=username,
            base_topic=self.settings.base_topic,
            **kwargs,
        )
        await asyncio.to_thread(agent.connect)
        self.agents.append(agent)
        return agent

    async def action(self, printer_id: int, name: str, method: str = "POST", **params: Any) -> dict[str, Any]:
        resp = await self.client.request(
            method, f"/api/v1/printers/{printer_id}/{name}", headers=self.auth(), params=params
        )
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body


@asynccontextmanager
async def running_bridge(
    broker: Broker, db_path: Path, clock: Clock | None = None, **overrides: Any
) -> AsyncIterator[BridgeEnv]:
    settings = overrides.pop("settings", None) or test_settings(broker, db_path, **overrides)
    clock = clock or Clock()
    app = create_app(settings, clock)
    async with AsyncTestClient(app=app) as client:
        env = BridgeEnv(broker, settings, client, clock, app)
        await wait_for(lambda: env.bridge.mqtt_connected, 10, "the bridge's MQTT connection")
        if env.bridge.store.users.id_of("alice") is None:
            env.user_id, env.token = env.add_user("alice")
        else:
            env.user_id = env.bridge.store.users.id_of("alice") or 0
            env.token = env.client.blocking_portal.call(env.bridge.store.users.rotate_token, "alice") or ""
        try:
            yield env
        finally:
            for agent in env.agents:
                await asyncio.to_thread(agent.disconnect)
