"""The OctoPrint plugin's `ca_file` setting against a real Mosquitto TLS listener (no OctoPrint needed), as
test_mqtt_ca.py does for the bridge's PRINTBRIDGE_MQTT_CA: with the CA that signed the broker's certificate
the link connects over `mqtts://` and announces itself; another CA, or a host name the certificate does not
name, is refused, and the link says why in `last_error` (the plugin API's `error`) and in OctoPrint's log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from octoprint_printbridge.link import MqttLink
from octoprint_printbridge.settings import DEFAULTS, parse_settings

from tests.support.broker import Broker, requires_dynsec, retained_payload
from tests.support.env import wait_for
from tests.support.tls import TlsBroker, tls_broker

pytestmark = requires_dynsec

PRINTER_ID = 43
BASE_TOPIC = "pbtls"
AVAILABILITY = f"{BASE_TOPIC}/printers/{PRINTER_ID}/availability"


@pytest.fixture(scope="module")
def tls_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    with tls_broker(tmp_path_factory.mktemp("octoprint-tls")) as setup:
        yield setup


@contextlib.asynccontextmanager
async def running_link(broker: Broker, ca_file: Path | None, host: str = "127.0.0.1") -> AsyncIterator[MqttLink]:
    """The plugin's link with `broker_url: mqtts://host:<TLS port>` and `ca_file`, stopped afterwards."""
    settings = parse_settings(
        {
            **DEFAULTS,
            "broker_url": f"mqtts://{host}:{broker.tls_port}",
            "ca_file": "" if ca_file is None else str(ca_file),
            "printer_id": PRINTER_ID,
            "username": broker.admin_username or "",
            "password": broker.admin_password or "",
            "base_topic": BASE_TOPIC,
        }
    )
    link = MqttLink(settings, lambda: None, lambda _topic, _payload: None)
    await asyncio.to_thread(link.start)
    try:
        yield link
    finally:
        await asyncio.to_thread(link.stop)


def link_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "octoprint.plugins.printbridge.mqtt"]


async def test_the_ca_file_is_used_and_the_link_announces_itself(tls_setup: TlsBroker) -> None:
    broker, private_ca, _ = tls_setup
    async with running_link(broker, private_ca) as link:
        await wait_for(link.connected.is_set, 10, f"a TLS connection verified by the private CA ({link.last_error})")
        assert link.last_error is None
        # observed on the broker's plain listener by a subscriber that arrives afterwards: retained
        assert await asyncio.to_thread(retained_payload, broker, AVAILABILITY) == b"online"
    assert await asyncio.to_thread(retained_payload, broker, AVAILABILITY) == b"offline"


async def test_another_ca_is_refused_with_a_certificate_error(
    tls_setup: TlsBroker, caplog: pytest.LogCaptureFixture
) -> None:
    broker, _, other_ca = tls_setup
    caplog.set_level(logging.WARNING, logger="octoprint.plugins.printbridge.mqtt")
    async with running_link(broker, other_ca) as link:
        error = await wait_for(lambda: link.last_error, 10, "the refused handshake")
        assert not link.connected.is_set()
    assert f"mqtts://127.0.0.1:{broker.tls_port}" in error
    assert "certificate verify failed" in error and "unable to get local issuer certificate" in error
    assert "ca_file" in error  # the setting to check
    assert any(error in message for message in link_errors(caplog))


async def test_a_certificate_for_another_host_name_is_refused(
    tls_setup: TlsBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """The certificate names 127.0.0.1; reaching the same listener as `localhost` must fail, even with the
    right CA."""
    broker, private_ca, _ = tls_setup
    caplog.set_level(logging.WARNING, logger="octoprint.plugins.printbridge.mqtt")
    async with running_link(broker, private_ca, host="localhost") as link:
        error = await wait_for(lambda: link.last_error, 10, "the refused handshake")
        assert not link.connected.is_set()
    assert "certificate verify failed" in error
    assert "Hostname mismatch" in error and "'localhost'" in error
    assert "broker_url" in error  # the setting to check
    assert any(error in message for message in link_errors(caplog))


async def test_no_ca_file_means_the_system_cas_which_do_not_know_the_private_ca(tls_setup: TlsBroker) -> None:
    """An empty `ca_file` verifies with the system's CAs (never no verification): the private CA is not one."""
    async with running_link(tls_setup.broker, None) as link:
        error = await wait_for(lambda: link.last_error, 10, "the refused handshake")
        assert not link.connected.is_set()
    assert "certificate verify failed" in error
