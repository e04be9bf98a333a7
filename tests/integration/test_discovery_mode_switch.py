"""Switching the Home Assistant discovery mode (or switching discovery off) removes what the previous mode
left retained on the broker, so that Home Assistant does not keep the old devices beside the new ones."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from tests.support.broker import Broker, Probe, connected_probe
from tests.support.env import running_bridge, wait_for


def _retained_configs(broker: Broker, prefix: str) -> dict[str, bytes]:
    """What a subscriber to the prefix gets now: retained discovery messages (empty ones are not retained)."""
    sentinel = f"{prefix}/test/sentinel-{uuid.uuid4().hex}"
    with connected_probe(broker) as probe:
        assert isinstance(probe, Probe)
        probe.subscribe(f"{prefix}/#")
        probe.publish(sentinel, b"end")
        seen = probe.collect_until(sentinel, b"end")
    return {m.topic: m.payload for m in seen if m.topic.endswith("/config") and m.payload}


async def _until(broker: Broker, prefix: str, condition: object) -> dict[str, bytes]:
    """The retained configs once `condition(configs)` holds (the bridge publishes right after connecting)."""
    found: dict[str, bytes] = {}

    async def check() -> bool:
        nonlocal found
        found = await asyncio.to_thread(_retained_configs, broker, prefix)
        return bool(condition(found))  # type: ignore[operator]

    await wait_for(check, what=f"retained discovery under {prefix} to match")
    return found


async def test_mode_switches_remove_the_previous_messages(broker: Broker, tmp_path: Path) -> None:
    db = tmp_path / "printbridge.db"
    names = {"base_topic": "pbswitch", "ha_prefix": "haswitch"}

    async with running_bridge(broker, db, ha_discovery_mode="device", **names) as env:
        printer = await env.create_printer("Switcher")
        device_topic = env.topics.ha_device_config(printer["id"])
        configs = await _until(broker, "haswitch", lambda c: c)
        assert list(configs) == [device_topic]

    async with running_bridge(broker, db, ha_discovery_mode="entity", **names):
        configs = await _until(broker, "haswitch", lambda c: len(c) > 1)
        assert device_topic not in configs
        assert configs, "entity mode published its configs"
        assert all(t.startswith("haswitch/") and f"/printbridge_{printer['id']}/" in t for t in configs)
        assert f"haswitch/button/printbridge_{printer['id']}/pause/config" in configs

    async with running_bridge(broker, db, ha_discovery=False, **names) as env:
        await wait_for(lambda: env.bridge.store.database.meta("ha_discovery_mode") == "off", what="the switch to off")
        configs = await _until(broker, "haswitch", lambda c: not c)
        assert configs == {}

    async with running_bridge(broker, db, ha_discovery_mode="device", **names):
        configs = await _until(broker, "haswitch", lambda c: c)
        assert list(configs) == [device_topic]
