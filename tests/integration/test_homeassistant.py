"""Home Assistant and other consumers (docs/mqtt.md) through a real Mosquitto: discovery documents, the retained
state they read, events, actions over MQTT, removal, and re-publication (and its absence when nothing
changed).

A Probe connected as the broker's admin plays Home Assistant; value templates are rendered with Jinja2 in
a sandboxed environment, as Home Assistant renders them, against the state payloads the bridge published.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import itertools
import json
import queue
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox
import pytest

from bridge.state.store import Store
from tests.support.agent import TestAgent, agent_message
from tests.support.broker import Broker, Probe, Received, subscribed_admin_probe
from tests.support.env import BridgeEnv, running_bridge, wait_for

VERSION = importlib.metadata.version("printbridge")

# docs/mqtt.md: exactly these keys.
STATE_KEYS = {
    "id",
    "name",
    "online",
    "state_text",
    "printing",
    "paused",
    "progress",
    "time_left_s",
    "file",
    "temperatures",
    "normalized_p",
    "alert_outstanding",
    "muted",
    "not_watching_reason",
    "current_print_id",
    "updated_at",
}

OCTOPRINT_TEMPS = {"tool0": {"actual": 219.8, "target": 220.0}, "bed": {"actual": 60.2, "target": 60.0}}
KLIPPER_TEMPS = {"extruder": {"actual": 245.5, "target": 245.0}, "heater_bed": {"actual": 99.9, "target": 100.0}}
KLIPPER_SETTINGS = {"agent": {"name": "moonraker_obico", "version": "1.5.0"}, "webcams": []}

# HA renders value templates in a sandboxed Jinja2 environment with `value` (the payload text) and
# `value_json` (the parsed payload). StrictUndefined is stricter than HA: an undefined name fails here.
JINJA = jinja2.sandbox.ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)

_request_ids = itertools.count(1)


def render(template: str, payload: bytes) -> str:
    text = payload.decode()
    return JINJA.from_string(template).render(value=text, value_json=json.loads(text))


# -- the documents Home Assistant must receive (written out, not built by the code under test) ---------


def expected_components(
    base: str, pid: int, temps: list[tuple[str, str, str]] | None = None
) -> dict[str, dict[str, Any]]:
    """`temps`: (object id, name, temperature key) in the order the components appear."""
    state = f"{base}/printers/{pid}/state"

    def common(platform: str, object_id: str, name: str) -> dict[str, Any]:
        return {
            "platform": platform,
            "unique_id": f"printbridge_{pid}_{object_id}",
            "default_entity_id": f"{platform}.printbridge_{pid}_{object_id}",
            "name": name,
            "qos": 1,
        }

    def sensor(object_id: str, name: str, template: str, **extra: Any) -> dict[str, Any]:
        return common("sensor", object_id, name) | {"state_topic": state, "value_template": template} | extra

    def binary(object_id: str, name: str, field: str, **extra: Any) -> dict[str, Any]:
        return (
            common("binary_sensor", object_id, name)
            | {
                "state_topic": state,
                "value_template": "{{ 'ON' if value_json." + field + " else 'OFF' }}",
                "payload_on": "ON",
                "payload_off": "OFF",
            }
            | extra
        )

    def button(action: str, name: str, icon: str) -> dict[str, Any]:
        return common("button", action, name) | {
            "command_topic": f"{base}/printers/{pid}/action/{action}",
            "payload_press": "PRESS",
            "icon": icon,
        }

    components: dict[str, dict[str, Any]] = {
        "state": sensor(
            "state",
            "State",
            "{{ value_json.state_text if value_json.state_text is not none else 'Offline' }}",
            icon="mdi:printer-3d",
        ),
        "progress": sensor(
            "progress",
            "Progress",
            "{{ value_json.progress }}",
            unit_of_measurement="%",
            state_class="measurement",
            suggested_display_precision=1,
        ),
        "time_left": sensor(
            "time_left",
            "Time left",
            "{{ value_json.time_left_s }}",
            device_class="duration",
            unit_of_measurement="s",
            state_class="measurement",
        ),
    }
    for object_id, name, key in temps or []:
        components[object_id] = sensor(
            object_id,
            name,
            "{{ (value_json.temperatures['" + key + "'] | default({})).actual | default(none) }}",
            device_class="temperature",
            unit_of_measurement="°C",
            state_class="measurement",
            suggested_display_precision=1,
        )
    components |= {
        "failure_score": sensor(
            "failure_score",
            "Failure score",
            "{{ value_json.normalized_p }}",
            state_class="measurement",
            suggested_display_precision=2,
            icon="mdi:alert-decagram-outline",
        ),
        "printing": binary("printing", "Printing", "printing", device_class="running"),
        "paused": binary("paused", "Paused", "paused", icon="mdi:pause-circle-outline"),
        "alert": binary("alert", "Failure alert", "alert_outstanding", device_class="problem"),
        "pause": button("pause", "Pause", "mdi:pause"),
        "resume": button("resume", "Resume", "mdi:play"),
        "cancel": button("cancel", "Cancel", "mdi:stop"),
        "acknowledge_alert": button("acknowledge_alert", "Acknowledge alert", "mdi:check-circle-outline"),
        "alerts_muted": common("switch", "alerts_muted", "Alerts muted")
        | {
            "command_topic": f"{base}/printers/{pid}/action/mute",
            "state_topic": state,
            "value_template": "{{ 'ON' if value_json.muted else 'OFF' }}",
            "payload_on": "ON",
            "payload_off": "OFF",
            "icon": "mdi:bell-off-outline",
        },
        "snapshot": common("image", "snapshot", "Snapshot")
        | {"image_topic": f"{base}/printers/{pid}/snapshot", "content_type": "image/jpeg"},
    }
    return components


def shared_blocks(
    base: str, pid: int, name: str, model: str = "Obico agent", sw_version: str | None = None
) -> dict[str, Any]:
    device: dict[str, Any] = {
        "identifiers": [f"printbridge_{pid}"],
        "name": name,
        "manufacturer": "printbridge",
        "model": model,
    }
    if sw_version is not None:
        device["sw_version"] = sw_version
    return {
        "device": device,
        "origin": {"name": "printbridge", "sw_version": VERSION},
        "availability": [
            {"topic": f"{base}/bridge/state", "payload_available": "online", "payload_not_available": "offline"},
            {
                "topic": f"{base}/printers/{pid}/availability",
                "payload_available": "online",
                "payload_not_available": "offline",
            },
        ],
        "availability_mode": "all",
    }


def expected_device_document(
    base: str,
    pid: int,
    name: str,
    *,
    model: str = "Obico agent",
    sw_version: str | None = None,
    temps: list[tuple[str, str, str]] | None = None,
) -> dict[str, Any]:
    return shared_blocks(base, pid, name, model, sw_version) | {
        "qos": 1,
        "components": expected_components(base, pid, temps),
    }


OCTOPRINT_TEMP_COMPONENTS = [("temp_bed", "Bed", "bed"), ("temp_tool0", "Nozzle", "tool0")]
KLIPPER_TEMP_COMPONENTS = [("temp_extruder", "Extruder", "extruder"), ("temp_heater_bed", "Heater bed", "heater_bed")]


# -- probes ----------------------------------------------------------------------------------------------


class Watch:
    """A connected admin Probe (Home Assistant's view, and more) that keeps every message it receives, so
    that waiting for one topic never discards another topic's messages."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.log: list[Received] = []
        self._cursors: dict[str, int] = {}
        self._mark = 0

    async def _find(self, predicate: Callable[[Received], bool], start: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        i = start
        while True:
            while i < len(self.log):
                if predicate(self.log[i]):
                    return i
                i += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching message within {timeout} s; saw {self.log[start:]}")
            with suppress(queue.Empty):
                self.log.append(await asyncio.to_thread(self.probe.messages.get, True, remaining))

    async def on(self, topic: str, predicate: Callable[[Any], bool] = bool, timeout: float = 5.0) -> Received:
        """The next message on `topic` (after the last one returned for it) whose decoded JSON (the bytes
        when it is not JSON, so b"" for an empty payload) satisfies `predicate`."""

        def match(m: Received) -> bool:
            if m.topic != topic:
                return False
            try:
                doc = json.loads(m.payload) if m.payload else b""
            except ValueError:
                doc = m.payload  # online / offline
            try:
                return bool(predicate(doc))
            except (TypeError, KeyError):  # a predicate about a document, given an empty payload
                return False

        i = await self._find(match, self._cursors.get(topic, 0), timeout)
        self._cursors[topic] = i + 1
        return self.log[i]

    async def each(self, topics: list[str], timeout: float = 5.0) -> dict[str, Received]:
        return {topic: await self.on(topic, timeout=timeout) for topic in topics}

    async def until(self, predicate: Callable[[Received], bool], timeout: float = 5.0) -> list[Received]:
        """Every message since the previous `until` (or the start) before the first one matching `predicate`."""
        i = await self._find(predicate, self._mark, timeout)
        seen, self._mark = self.log[self._mark : i], i + 1
        return seen

    async def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        rc = await asyncio.to_thread(self.probe.publish, topic, payload, 1, retain)
        assert rc < 0x80, f"publish on {topic} refused: {rc}"


@asynccontextmanager
async def probe(broker: Broker, *subscriptions: str) -> AsyncIterator[Watch]:
    """A Watch on a new admin probe, subscribed before it is handed out."""
    async with subscribed_admin_probe(broker, *subscriptions) as p:
        yield Watch(p)


def watch(env: BridgeEnv) -> tuple[str, str]:
    return f"{env.settings.ha_prefix}/#", f"{env.settings.base_topic}/#"


async def press(
    w: Watch, env: BridgeEnv, pid: int, action: str, payload: bytes | str | dict[str, Any]
) -> dict[str, Any]:
    """Publish on the action topic and return the response published for it (docs/mqtt.md)."""
    request_id = None
    if isinstance(payload, dict):
        request_id = payload.get("request_id")
        payload = json.dumps(payload)
    await w.publish(env.topics.action(pid, action), payload)
    msg = await w.on(env.topics.action_response(pid, action), lambda d: d.get("request_id") == request_id)
    body: dict[str, Any] = json.loads(msg.payload)
    return body


async def settle(w: Watch, env: BridgeEnv, pid: int) -> list[Received]:
    """Every message since the previous `settle` until the bridge has handled all that was published
    before: an acknowledge_alert request with a fresh id is the sentinel (the bridge handles messages in
    the order the broker delivers them, and answers actions after the state they changed)."""
    request_id = f"sentinel-{next(_request_ids)}"
    response_topic = env.topics.action_response(pid, "acknowledge_alert")
    await w.publish(env.topics.action(pid, "acknowledge_alert"), json.dumps({"request_id": request_id}))
    return await w.until(lambda m: m.topic == response_topic and json.loads(m.payload)["request_id"] == request_id)


async def status(agent: TestAgent, **kwargs: Any) -> None:
    await asyncio.to_thread(agent.publish_status, agent_message(ts=time.time(), **kwargs))


# -- discovery: content ----------------------------------------------------------------------------------


async def test_device_discovery_is_published_retained_on_create(env: BridgeEnv) -> None:
    base, prefix = env.settings.base_topic, env.settings.ha_prefix
    async with probe(env.broker, *watch(env)) as ha:
        printer = await env.create_printer("Prusa MK4")
        pid = printer["id"]
        config_topic = f"{prefix}/device/printbridge_{pid}/config"
        assert config_topic == env.topics.ha_device_config(pid)
        first = await ha.each([config_topic, f"{base}/printers/{pid}/state"])
        live, state = first[config_topic], first[f"{base}/printers/{pid}/state"]
        assert json.loads(live.payload) == expected_device_document(base, pid, "Prusa MK4")
        assert json.loads(state.payload)["online"] is False
    # retained: a subscriber that comes later gets the same document
    async with probe(env.broker, config_topic, f"{base}/printers/{pid}/state") as later:
        retained = await later.on(config_topic)
        assert retained.retain and retained.payload == live.payload
        retained_state = await later.on(f"{base}/printers/{pid}/state")
        assert retained_state.retain


@pytest.mark.parametrize(
    ("settings", "temps", "model", "version", "temp_components"),
    [
        (True, OCTOPRINT_TEMPS, "octoprint_obico", "2.6.1", OCTOPRINT_TEMP_COMPONENTS),
        (KLIPPER_SETTINGS, KLIPPER_TEMPS, "moonraker_obico", "1.5.0", KLIPPER_TEMP_COMPONENTS),
    ],
    ids=["octoprint", "klipper"],
)
async def test_reported_temperatures_and_agent_join_the_discovery(
    env: BridgeEnv,
    settings: Any,
    temps: dict[str, Any],
    model: str,
    version: str,
    temp_components: list[tuple[str, str, str]],
) -> None:
    base = env.settings.base_topic
    async with probe(env.broker, *watch(env)) as ha:
        printer = await env.create_printer("Voron")
        pid = printer["id"]
        config_topic = env.topics.ha_device_config(pid)
        await ha.on(config_topic)
        agent = await env.agent(printer)
        await status(agent, event="PrintStarted", temps=temps, settings=settings)
        msg = await ha.on(config_topic)
        assert json.loads(msg.payload) == expected_device_document(
            base, pid, "Voron", model=model, sw_version=version, temps=temp_components
        )
        # the temperature sensors read the real state payload
        state = await ha.on(env.topics.state(pid), lambda d: d["online"])
        components = json.loads(msg.payload)["components"]
        rendered = {oid: render(components[oid]["value_template"], state.payload) for oid, _, _ in temp_components}
        assert rendered == {oid: str(temps[key]["actual"]) for oid, _, key in temp_components}


# -- value templates against the real state payloads -------------------------------------------------


EXPECTED_RENDERINGS: dict[str, tuple[str, str, str]] = {
    # object id: (printing, paused and muted, offline)
    "state": ("Printing", "Paused", "Offline"),
    "progress": ("5.3", "42.0", "None"),
    "time_left": ("2068", "2068", "None"),
    "temp_bed": ("60.2", "60.2", "None"),
    "temp_tool0": ("219.8", "219.8", "None"),
    "failure_score": ("0.0", "0.0", "0.0"),
    "printing": ("ON", "OFF", "OFF"),
    "paused": ("OFF", "ON", "OFF"),
    "alert": ("OFF", "OFF", "OFF"),
    "alerts_muted": ("OFF", "ON", "ON"),
}


def check_state_payload(payload: bytes, auth_token: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(payload)
    assert set(doc) == STATE_KEYS
    assert auth_token.encode() not in payload and b"auth_token" not in payload
    return doc


async def test_every_value_template_renders_against_real_state_payloads(env: BridgeEnv) -> None:
    async with probe(env.broker, *watch(env)) as ha:
        printer = await env.create_printer("Ender")
        pid = printer["id"]
        state_topic = env.topics.state(pid)
        agent = await env.agent(printer)

        await status(agent, event="PrintStarted", temps=OCTOPRINT_TEMPS)
        config = await ha.on(env.topics.ha_device_config(pid), lambda d: "temp_bed" in d["components"])
        printing = await ha.on(state_topic, lambda d: d["printing"])

        assert (await press(ha, env, pid, "mute", "ON"))["succeeded"] is True
        await status(agent, paused=True, completion=42.0, event="PrintPaused", temps=OCTOPRINT_TEMPS)
        paused = await ha.on(state_topic, lambda d: d["paused"] and d["muted"])

        await asyncio.to_thread(agent.set_availability, False)
        offline = await ha.on(state_topic, lambda d: not d["online"])

    payloads = (printing.payload, paused.payload, offline.payload)
    docs = [check_state_payload(p, printer["auth_token"]) for p in payloads]
    assert docs[0] | {"updated_at": None} == {
        "id": pid,
        "name": "Ender",
        "online": True,
        "state_text": "Printing",
        "printing": True,
        "paused": False,
        "progress": 5.3,
        "time_left_s": 2068,
        "file": "benchy.gcode",
        "temperatures": OCTOPRINT_TEMPS,
        "normalized_p": 0.0,
        "alert_outstanding": False,
        "muted": False,
        "not_watching_reason": None,
        "current_print_id": docs[0]["current_print_id"],
        "updated_at": None,
    }
    assert isinstance(docs[0]["current_print_id"], int)
    assert docs[0]["updated_at"].endswith("Z")
    assert docs[2]["not_watching_reason"] == "Printer is not actively printing"

    components = json.loads(config.payload)["components"]
    with_templates = {oid: c for oid, c in components.items() if "value_template" in c}
    assert set(with_templates) == set(EXPECTED_RENDERINGS)
    for oid, component in with_templates.items():
        got = tuple(render(component["value_template"], p) for p in payloads)
        assert got == EXPECTED_RENDERINGS[oid], oid
        if component["platform"] in ("binary_sensor", "switch"):
            assert set(got) <= {component["payload_on"], component["payload_off"]}


# -- re-publication, and none when nothing changed ---------------------------------------------------


async def test_birth_message_republishes_discovery(env: BridgeEnv) -> None:
    async with probe(env.broker, *watch(env)) as ha:
        printer = await env.create_printer("Prusa")
        config_topic = env.topics.ha_device_config(printer["id"])
        first = await ha.on(config_topic)
        await settle(ha, env, printer["id"])

        await ha.publish(env.topics.ha_status, "offline")
        seen = await settle(ha, env, printer["id"])
        assert [m.topic for m in seen if m.topic.startswith(env.settings.ha_prefix + "/device/")] == []

        await ha.publish(env.topics.ha_status, "online")
        again = await ha.on(config_topic)
        assert again.payload == first.payload


async def test_nothing_is_republished_when_nothing_changed(env: BridgeEnv) -> None:
    async with probe(env.broker, *watch(env)) as ha:
        printer = await env.create_printer("Prusa")
        pid = printer["id"]
        config_topic, state_topic = env.topics.ha_device_config(pid), env.topics.state(pid)
        remote_status_topic = env.topics.remote_status(pid)
        outputs = {config_topic, state_topic, remote_status_topic}
        agent = await env.agent(printer)
        await status(agent, event="PrintStarted", temps=OCTOPRINT_TEMPS)
        await ha.on(state_topic, lambda d: d["printing"])
        await settle(ha, env, pid)

        # the same status again (only its _ts differs): nothing to publish
        await status(agent, temps=OCTOPRINT_TEMPS)
        seen = await settle(ha, env, pid)
        assert [m.topic for m in seen if m.topic in outputs] == []

        # progress changed: one state message, no discovery
        await status(agent, completion=6.0, temps=OCTOPRINT_TEMPS)
        seen = await settle(ha, env, pid)
        changed = [m for m in seen if m.topic in outputs]
        assert [m.topic for m in changed] == [state_topic]
        assert json.loads(changed[0].payload)["progress"] == 6.0

        # a temperature changed its value: state only; a new heater appeared: discovery too
        hotter = OCTOPRINT_TEMPS | {"tool0": {"actual": 221.0, "target": 220.0}}
        await status(agent, completion=6.0, temps=hotter)
        seen = await settle(ha, env, pid)
        assert [m.topic for m in seen if m.topic in outputs] == [state_topic]
        await status(agent, completion=6.0, temps=hotter | {"chamber": {"actual": 35.0, "target": None}})
        seen = await settle(ha, env, pid)
        assert sorted(m.topic for m in seen if m.topic in outputs) == sorted([config_topic, state_topic])
        config = next(m for m in seen if m.topic == config_topic)
        assert json.loads(config.payload) == expected_device_document(
            env.settings.base_topic,
            pid,
            "Prusa",
            model="octoprint_obico",
            sw_version="2.6.1",
            temps=[
                ("temp_bed", "Bed", "bed"),
                ("temp_chamber", "Chamber", "chamber"),
                ("temp_tool0", "Nozzle", "tool0"),
            ],
        )

        # going offline keeps the temperature entities (no discovery), the state says offline
        await asyncio.to_thread(agent.set_availability, False)
        seen = await settle(ha, env, pid)
        assert [m.topic for m in seen if m.topic in outputs] == [state_topic]

        # a heater no longer reported: its entity is removed by a tombstone in the device message
        await status(agent, completion=6.0, temps=hotter)
        seen = await settle(ha, env, pid)
        configs = [json.loads(m.payload) for m in seen if m.topic == config_topic]
        assert len(configs) == 1
        assert configs[0]["components"].pop("temp_chamber") == {"platform": "sensor"}
        assert configs[0]["components"] == expected_components(env.settings.base_topic, pid, OCTOPRINT_TEMP_COMPONENTS)


async def test_rename_republishes_discovery_and_state(env: BridgeEnv) -> None:
    async with probe(env.broker, *watch(env)) as ha:
        printer = await env.create_printer("Prusa")
        pid = printer["id"]
        await ha.on(env.topics.ha_device_config(pid))
        resp = await env.client.patch(f"/api/v1/printers/{pid}/", json={"name": "Workshop Prusa"}, headers=env.auth())
        assert resp.status_code == 200, resp.text
        msg = await ha.on(env.topics.ha_device_config(pid))
        assert json.loads(msg.payload) == expected_device_document(env.settings.base_topic, pid, "Workshop Prusa")
        await ha.on(env.topics.state(pid), lambda d: d["name"] == "Workshop Prusa")

        # a PATCH that changes nothing HA shows publishes no discovery
        await settle(ha, env, pid)
        resp = await env.client.patch(f"/api/v1/printers/{pid}/", json={"lift_z_on_pause": 3.0}, headers=env.auth())
        assert resp.status_code == 200, resp.text
        seen = await settle(ha, env, pid)
        assert [m.topic for m in seen if m.topic == env.topics.ha_device_config(pid)] == []


# -- removal -----------------------------------------------------------------------------------------


async def assert_nothing_retained(broker: Broker, topics: list[str], sentinel_topic: str) -> None:
    async with probe(broker, *topics, sentinel_topic) as fresh:
        await fresh.publish(sentinel_topic, b"sentinel")
        assert await fresh.until(lambda m: m.topic == sentinel_topic) == []


@pytest.mark.parametrize("how", ["delete", "archive"])
async def test_delete_and_archive_remove_the_device_and_the_state(env: BridgeEnv, how: str) -> None:
    async with probe(env.broker, *watch(env)) as ha:
        printer = await env.create_printer("Prusa")
        pid = printer["id"]
        config_topic, state_topic = env.topics.ha_device_config(pid), env.topics.state(pid)
        agent = await env.agent(printer)
        await status(agent, event="PrintStarted")
        await ha.on(state_topic, lambda d: d["printing"])
        if how == "delete":
            resp = await env.client.delete(f"/api/v1/printers/{pid}/", headers=env.auth())
        else:
            resp = await env.client.patch(
                f"/api/v1/printers/{pid}/", json={"archived_at": "2024-06-01T12:00:00Z"}, headers=env.auth()
            )
        assert resp.status_code == 200, resp.text
        removal = await ha.on(config_topic, lambda d: d == b"")
        assert removal.payload == b""
        await ha.on(state_topic, lambda d: d == b"")
    await assert_nothing_retained(
        env.broker,
        [config_topic, state_topic, env.topics.remote_status(pid)],
        f"{env.settings.ha_prefix}/test-sentinel",
    )


# -- entity mode, and discovery switched off -------------------------------------------------------------


async def test_entity_mode_publishes_one_config_per_entity_and_removes_each(broker: Broker, tmp_path: Path) -> None:
    async with running_bridge(broker, tmp_path / "printbridge.db", ha_discovery_mode="entity") as env:
        base, prefix = env.settings.base_topic, env.settings.ha_prefix
        async with probe(broker, *watch(env)) as ha:
            printer = await env.create_printer("Prusa")
            pid = printer["id"]
            agent = await env.agent(printer)
            await status(agent, event="PrintStarted", temps=OCTOPRINT_TEMPS)
            await ha.on(env.topics.state(pid), lambda d: d["printing"])
            seen = await settle(ha, env, pid)
            components = expected_components(base, pid, OCTOPRINT_TEMP_COMPONENTS)
            shared = shared_blocks(base, pid, "Prusa", "octoprint_obico", "2.6.1")
            expected = {
                f"{prefix}/{c['platform']}/printbridge_{pid}/{oid}/config": {
                    k: v for k, v in c.items() if k != "platform"
                }
                | shared
                for oid, c in components.items()
            }
            # the last config published on each entity topic (the first ones lacked the agent and temps)
            latest: dict[str, bytes] = {}
            async with probe(broker, f"{prefix}/#") as later:
                sentinel = f"{prefix}/test-sentinel"
                await later.publish(sentinel, b"x")
                for m in await later.until(lambda m: m.topic == sentinel):
                    assert m.retain
                    latest[m.topic] = m.payload
            assert {t: json.loads(p) for t, p in latest.items()} == expected
            assert not any(m.topic == env.topics.ha_device_config(pid) for m in seen)

            resp = await env.client.delete(f"/api/v1/printers/{pid}/", headers=env.auth())
            assert resp.status_code == 200, resp.text
            removed: set[str] = set()

            def emptied(m: Received) -> bool:
                if m.topic in expected and m.payload == b"":
                    removed.add(m.topic)
                return removed == set(expected)

            await ha.until(emptied)
        await assert_nothing_retained(broker, [f"{prefix}/#"], f"{prefix}/test-sentinel")


async def test_discovery_disabled_publishes_none(broker: Broker, tmp_path: Path) -> None:
    async with running_bridge(broker, tmp_path / "printbridge.db", ha_discovery=False) as env:
        async with probe(broker, *watch(env)) as ha:
            printer = await env.create_printer("Prusa")
            pid = printer["id"]
            agent = await env.agent(printer)
            await status(agent, event="PrintStarted", temps=OCTOPRINT_TEMPS)
            await ha.publish(env.topics.ha_status, "online")
            await ha.on(env.topics.state(pid), lambda d: d["printing"])  # consumers still get state
            seen = await settle(ha, env, pid)
            resp = await env.client.delete(f"/api/v1/printers/{pid}/", headers=env.auth())
            assert resp.status_code == 200, resp.text
            await ha.on(env.topics.state(pid), lambda d: d == b"")
        await assert_nothing_retained(broker, [f"{env.settings.ha_prefix}/#"], f"{env.settings.base_topic}/sentinel")
        assert [m.topic for m in seen if m.topic.startswith(env.settings.ha_prefix + "/")] == [env.topics.ha_status]


# -- actions over MQTT (docs/mqtt.md) ------------------------------------------------------------------------


async def test_buttons_and_switch_drive_the_agent_and_answer(env: BridgeEnv) -> None:
    async with probe(env.broker, *watch(env)) as ha:
        printer = await env.create_printer("Prusa")
        pid = printer["id"]

        # before any print: the REST answer, and nothing sent
        assert await press(ha, env, pid, "pause", "PRESS") == {
            "request_id": None,
            "succeeded": False,
            "error": "not printing",
        }

        agent = await env.agent(printer)
        await status(agent, event="PrintStarted")
        await ha.on(env.topics.state(pid), lambda d: d["printing"])

        for action in ("pause", "resume", "cancel"):
            for payload in ("PRESS", {"request_id": "r1"}, ""):
                answer = await press(ha, env, pid, action, payload)
                request_id = payload.get("request_id") if isinstance(payload, dict) else None
                assert answer == {"request_id": request_id, "succeeded": True, "error": None}, (action, payload)
                command = await asyncio.to_thread(agent.wait_command)
                assert (command["cmd"], command["initiator"]) == (action, "homeassistant")
        assert agent.commands[0]["args"] == {"retract": 6.5, "lift_z": 2.5, "tools_off": True}

        agent.ack_mode = "refuse"
        assert await press(ha, env, pid, "pause", {"request_id": "r2"}) == {
            "request_id": "r2",
            "succeeded": False,
            "error": "refused by the test agent",
        }

        assert await press(ha, env, pid, "acknowledge_alert", {"request_id": "r3"}) == {
            "request_id": "r3",
            "succeeded": True,
            "error": None,
        }

        event_topic, state_topic = env.topics.event(pid), env.topics.state(pid)
        assert await press(ha, env, pid, "mute", "ON") == {"request_id": None, "succeeded": True, "error": None}
        await ha.on(event_topic, lambda d: d["event_type"] == "ALERT_MUTED")
        muted = await ha.on(state_topic, lambda d: d["muted"])
        assert json.loads(muted.payload)["not_watching_reason"] == "Alerts are muted for current print"
        await wait_for(lambda: agent.remote_statuses[-1:] == [{"should_watch": False}], what="should_watch false")
        assert await press(ha, env, pid, "mute", "OFF") == {"request_id": None, "succeeded": True, "error": None}
        await ha.on(state_topic, lambda d: not d["muted"])
        await wait_for(lambda: agent.remote_statuses[-1:] == [{"should_watch": True}], what="should_watch true")
        answer = await press(ha, env, pid, "mute", {"request_id": "r4", "mute": True})
        assert answer == {"request_id": "r4", "succeeded": True, "error": None}
        await ha.on(state_topic, lambda d: d["muted"])

    rest = await env.get_printer(pid)
    assert rest["current_print"]["alert_muted_at"] is not None
    resp = await env.client.get(f"/api/v1/printers/{pid}/commands/", headers=env.auth())
    assert [(c["cmd"], c["initiator"], c["outcome"]) for c in resp.json()][:2] == [
        ("pause", "homeassistant", "refused"),
        ("cancel", "homeassistant", "acked"),
    ]


async def test_mute_switch_publishes_events(env: BridgeEnv) -> None:
    async with probe(env.broker, *watch(env)) as ha:
        printer = await env.create_printer("Prusa")
        pid = printer["id"]
        agent = await env.agent(printer)
        await status(agent, event="PrintStarted")
        await ha.on(env.topics.event(pid), lambda d: d["event_type"] == "STARTED")
        await press(ha, env, pid, "mute", "ON")
        muted = await ha.on(env.topics.event(pid))
        await press(ha, env, pid, "mute", "OFF")
        unmuted = await ha.on(env.topics.event(pid))
    assert json.loads(muted.payload)["event_type"] == "ALERT_MUTED"
    assert json.loads(muted.payload)["print"]["alert_muted_at"] is not None
    assert json.loads(unmuted.payload)["event_type"] == "ALERT_UNMUTED"
    assert json.loads(unmuted.payload)["print"]["alert_muted_at"] is None


@pytest.mark.parametrize(
    ("action", "payload"),
    [
        ("pause", b"{not json"),
        ("mute", b'{"mute": "x"}'),
        ("pause", b"ON"),
        ("resume", b'{"request_id": 5}'),
        ("cancel", b"[1, 2]"),
        ("acknowledge_alert", b'{"mute": true}'),
    ],
)
async def test_malformed_action_payload_is_answered_with_an_error(env: BridgeEnv, action: str, payload: bytes) -> None:
    async with probe(env.broker, *watch(env)) as ha:
        printer = await env.create_printer("Prusa")
        pid = printer["id"]
        agent = await env.agent(printer)
        await status(agent, event="PrintStarted")
        await ha.on(env.topics.state(pid), lambda d: d["printing"])
        answer = await press(ha, env, pid, action, payload)
        assert answer["succeeded"] is False and answer["request_id"] is None
        assert isinstance(answer["error"], str) and answer["error"]
        assert agent.commands == []
        # the bridge is fine: the next good request works
        assert await press(ha, env, pid, "pause", {"request_id": "after"}) == {
            "request_id": "after",
            "succeeded": True,
            "error": None,
        }
    resp = await env.client.get("/health")
    assert resp.status_code == 200 and resp.json() == {"mqtt": "connected", "db": "ok"}


# -- events (docs/mqtt.md) -------------------------------------------------------------------------------


async def test_events_topic_follows_the_print(env: BridgeEnv) -> None:
    async with probe(env.broker, *watch(env)) as ha:
        printer = await env.create_printer("Prusa")
        pid = printer["id"]
        agent = await env.agent(printer)
        await status(agent, event="PrintStarted")
        await status(agent, paused=True, event="PrintPaused")
        await status(agent, event="PrintResumed")
        await status(agent, event="FilamentChange")
        await status(agent, printing=False, current_print_ts=-1, event="PrintDone")
        events = []
        for _ in range(5):
            events.append(json.loads((await ha.on(env.topics.event(pid))).payload))
    assert [e["event_type"] for e in events] == ["STARTED", "PAUSED", "RESUMED", "FILAMENT_CHANGE", "ENDED"]
    for e in events:
        assert set(e) == {"event_type", "printer", "print", "ts"}
        assert e["printer"] == {"id": pid, "name": "Prusa"}
        assert e["print"]["filename"] == "benchy.gcode" and e["print"]["printer"] == pid
        assert isinstance(e["ts"], float)
    assert len({e["print"]["id"] for e in events}) == 1
    assert events[0]["print"]["ended_at"] is None
    assert events[-1]["print"]["finished_at"] is not None and events[-1]["print"]["ended_at"] is not None


# -- printers from another process; restarts ---------------------------------------------------------


async def test_printer_created_by_another_process_is_discovered(env: BridgeEnv) -> None:
    async with probe(env.broker, *watch(env)) as ha:
        other = Store(env.settings.db_path)
        try:
            rec = other.printers.create(env.user_id, "From the CLI")
            started = time.monotonic()
            msg = await ha.on(env.topics.ha_device_config(rec.id))
            assert time.monotonic() - started < 5.0
            assert json.loads(msg.payload) == expected_device_document(env.settings.base_topic, rec.id, "From the CLI")
            other.printers.delete(rec)
        finally:
            other.close()
        await ha.on(env.topics.ha_device_config(rec.id), lambda d: d == b"")


async def test_bridge_restart_republishes_discovery(broker: Broker, tmp_path: Path) -> None:
    db = tmp_path / "printbridge.db"
    async with running_bridge(broker, db) as env:
        settings = env.settings
        printer = await env.create_printer("Prusa")
        pid = printer["id"]
        config_topic = env.topics.ha_device_config(pid)
        expected = expected_device_document(settings.base_topic, pid, "Prusa")
        async with probe(broker, config_topic) as ha:
            await ha.on(config_topic, lambda d: d == expected)
    # stopped: the retained discovery stays, the bridge says offline
    async with probe(broker, config_topic, env.topics.bridge_state) as ha:
        assert (await ha.on(config_topic)).retain
        assert (await ha.on(env.topics.bridge_state)).payload == b"offline"
        await ha.publish(config_topic, b"", retain=True)  # as if the broker had lost it
    async with running_bridge(broker, db, settings=settings), probe(broker, config_topic) as ha:
        await ha.on(config_topic, lambda d: d == expected)


async def test_broker_restart_republishes_discovery(env: BridgeEnv) -> None:
    if env.broker.config_path is None:
        pytest.fail("this test restarts the broker: it needs one the tests started", pytrace=False)
    printer = await env.create_printer("Prusa")
    pid = printer["id"]
    config_topic = env.topics.ha_device_config(pid)
    expected = expected_device_document(env.settings.base_topic, pid, "Prusa")
    async with probe(env.broker, config_topic) as ha:
        await ha.on(config_topic, lambda d: d == expected)
        await ha.publish(config_topic, b"", retain=True)  # the broker loses it
    connects = env.bridge.link.connect_count
    await asyncio.to_thread(env.broker.restart)
    await wait_for(lambda: env.bridge.link.connect_count > connects, 10, "the bridge to reconnect")
    async with probe(env.broker, config_topic) as ha:
        await ha.on(config_topic, lambda d: d == expected)
