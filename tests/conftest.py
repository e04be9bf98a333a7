"""Shared fixtures. The broker comes first."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.broker import (
    Broker,
    broker_from_env,
    docker_answers,
    mosquitto_binary,
    start_broker,
    start_container_broker,
)
from tests.support.env import BridgeEnv, running_bridge

logging.getLogger("httpx").setLevel(logging.WARNING)


def _obtain_broker(workdir: Path) -> Broker:
    external = broker_from_env()
    if external is not None:
        return external
    if mosquitto_binary() is not None:
        return start_broker(workdir)
    if docker_answers():
        return start_container_broker()
    pytest.fail(
        "no MQTT broker: set PRINTBRIDGE_TEST_MQTT_URL, install mosquitto (apt install mosquitto), "
        "or run a Docker engine for testcontainers",
        pytrace=False,
    )


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker for this test: external, else a fresh local mosquitto (dynsec), else a container."""
    b = _obtain_broker(tmp_path / "mosquitto")
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def dynsec_broker(broker: Broker) -> Broker:
    """The broker, which must have the dynamic-security plugin (mark the test `requires_dynsec` too)."""
    if not broker.dynsec:
        pytest.fail("this test needs a broker with the dynamic-security plugin", pytrace=False)
    return broker


@pytest.fixture
async def env(broker: Broker, tmp_path: Path) -> AsyncIterator[BridgeEnv]:
    """A running bridge (HTTP app + MQTT + SQLite in tmp_path) with user `alice` and a test clock."""
    async with running_bridge(broker, tmp_path / "printbridge.db") as bridge_env:
        yield bridge_env
