"""PRINTBRIDGE_MQTT_CA: the bridge's own broker over TLS with a private CA (a Mosquitto TLS listener whose
certificate the test makes). The right CA is accepted, another CA and another host name are refused."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bridge.config import MqttUrl
from bridge.mqtt.link import MqttLink
from tests.support.agent import agent_message
from tests.support.broker import Broker, requires_dynsec
from tests.support.env import running_bridge, wait_for
from tests.support.tls import TlsBroker, tls_broker

pytestmark = requires_dynsec


@pytest.fixture(scope="module")
def tls_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    """One TLS Mosquitto for the module, the private CA's file that signed its certificate, and an
    unrelated CA's file."""
    with tls_broker(tmp_path_factory.mktemp("mqtt-ca")) as setup:
        yield setup


def tls_url(broker: Broker, host: str = "127.0.0.1") -> MqttUrl:
    assert broker.tls_port is not None
    plain = MqttUrl.parse(broker.url())
    return MqttUrl(tls=True, host=host, port=broker.tls_port, username=plain.username, password=plain.password)


@contextlib.asynccontextmanager
async def running_link(url: MqttUrl, ca_file: Path) -> AsyncIterator[MqttLink]:
    async def nothing() -> None:
        return None

    link = MqttLink(
        url,
        protocol="3.1.1",
        will_topic="catest/bridge/state",
        subscriptions=["catest/none"],
        on_message=lambda _m: None,
        on_connect=nothing,
        on_disconnect=lambda _r: None,
        ca_file=ca_file,
    )
    task = asyncio.get_running_loop().create_task(link.run())
    try:
        yield link
    finally:
        await link.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_private_ca_is_accepted(tls_setup: TlsBroker) -> None:
    broker, private_ca, _ = tls_setup
    async with running_link(tls_url(broker), private_ca) as link:
        await wait_for(link.connected.is_set, 10, "a TLS connection verified by the private CA")
        assert link.last_error is None


async def test_another_ca_is_refused(tls_setup: TlsBroker) -> None:
    broker, _, other_ca = tls_setup
    async with running_link(tls_url(broker), other_ca) as link:
        error = await wait_for(lambda: link.last_error, 10, "the refused handshake")
        assert "certificate verify failed" in error
        assert "unable to get local issuer certificate" in error
        assert not link.connected.is_set()


async def test_another_host_name_is_refused(tls_setup: TlsBroker) -> None:
    """The certificate names 127.0.0.1; reaching the same listener as `localhost` must fail."""
    broker, private_ca, _ = tls_setup
    async with running_link(tls_url(broker, host="localhost"), private_ca) as link:
        error = await wait_for(lambda: link.last_error, 10, "the refused handshake")
        assert "certificate verify failed" in error
        assert "Hostname mismatch" in error and "'localhost'" in error
        assert not link.connected.is_set()


async def test_the_bridge_serves_over_the_private_ca(tls_setup: TlsBroker, tmp_path: Path) -> None:
    """The whole bridge with PRINTBRIDGE_MQTT_CA: connected, and a printer's status arrives through it."""
    broker, private_ca, _ = tls_setup
    async with running_bridge(broker, tmp_path / "pb.db", mqtt_url=tls_url(broker), mqtt_ca=private_ca) as env:
        resp = await env.client.get("/health")
        assert resp.json()["mqtt"] == "connected"
        printer = await env.create_printer("TLS printer")
        agent = await env.agent(printer)
        await asyncio.to_thread(agent.publish_status, agent_message(ts=time.time(), printing=False))

        async def state_text() -> str | None:
            status = (await env.get_printer(printer["id"]))["status"]
            return None if status is None else status["state"]["text"]

        assert await wait_for(state_text, 10, "the agent's status through the TLS bridge") == "Operational"
