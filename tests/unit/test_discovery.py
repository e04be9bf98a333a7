"""Home Assistant discovery builders (docs/mqtt.md): exact documents, and every value template rendered
against real state payloads (docs/mqtt.md) the way Home Assistant renders them."""

from __future__ import annotations

import importlib.metadata
import json
from typing import Any

import jinja2
import jinja2.sandbox
import pytest

from bridge.mqtt.discovery import (
    DiscoveryInfo,
    build_device_discovery,
    build_discovery,
    build_entity_discovery,
    build_removal,
    make_discovery_info,
    temperature_name,
    temperature_object_ids,
    temperature_template,
)
from bridge.mqtt.topics import Topics

TOPICS = Topics("printbridge")
VERSION = importlib.metadata.version("printbridge")
OCTOPRINT = make_discovery_info(3, "Ender 3", "octoprint_obico", "2.6.1", ["tool0", "bed"])
KLIPPER = make_discovery_info(
    7, "Voron", "moonraker_obico", "1.5.0", ["heater_bed", "extruder", "extruder1", "chamber"]
)

# HA renders value_template in a sandboxed Jinja2 environment with `value` (the payload text) and
# `value_json` (the parsed payload). StrictUndefined is stricter than HA: printing an undefined
# value fails the test instead of rendering "".
ENV = jinja2.sandbox.ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)


def render(template: str, payload: dict[str, Any]) -> str:
    raw = json.dumps(payload)
    return ENV.from_string(template).render(value=raw, value_json=json.loads(raw))


def state_payload(**changes: Any) -> dict[str, Any]:
    """A state message as the bridge publishes it (docs/mqtt.md): printing by default."""
    base: dict[str, Any] = {
        "id": 3,
        "name": "Ender 3",
        "online": True,
        "state_text": "Printing",
        "printing": True,
        "paused": False,
        "progress": 5.3,
        "time_left_s": 2068,
        "file": "benchy.gcode",
        "temperatures": {
            "tool0": {"actual": 219.8, "target": 220.0},
            "bed": {"actual": 60.0, "target": 60.0},
        },
        "normalized_p": 0.12,
        "alert_outstanding": False,
        "muted": False,
        "not_watching_reason": None,
        "current_print_id": 11,
        "updated_at": "2024-05-28T14:39:59Z",
    }
    return base | changes


PAUSED = state_payload(
    state_text="Paused", printing=False, paused=True, alert_outstanding=True, muted=True, normalized_p=0.87
)
OFFLINE = state_payload(
    online=False,
    state_text=None,
    printing=False,
    paused=False,
    progress=None,
    time_left_s=None,
    file=None,
    temperatures={},
    normalized_p=0.0,
    current_print_id=None,
    not_watching_reason="printer offline",
)


def decode(payload: bytes) -> dict[str, Any]:
    doc = json.loads(payload)
    assert isinstance(doc, dict)
    return doc


def device_components(info: DiscoveryInfo) -> dict[str, dict[str, Any]]:
    _, payload = build_device_discovery(info, TOPICS)
    components = decode(payload)["components"]
    assert isinstance(components, dict)
    return components


# -- the full device document ----------------------------------------------------------------------


def _sensor(object_id: str, name: str, template: str, **extra: Any) -> dict[str, Any]:
    return {
        "platform": "sensor",
        "unique_id": f"printbridge_3_{object_id}",
        "default_entity_id": f"sensor.printbridge_3_{object_id}",
        "name": name,
        "qos": 1,
        "state_topic": "printbridge/printers/3/state",
        "value_template": template,
        **extra,
    }


def _binary(object_id: str, name: str, field: str, **extra: Any) -> dict[str, Any]:
    return {
        "platform": "binary_sensor",
        "unique_id": f"printbridge_3_{object_id}",
        "default_entity_id": f"binary_sensor.printbridge_3_{object_id}",
        "name": name,
        "qos": 1,
        "state_topic": "printbridge/printers/3/state",
        "value_template": "{{ 'ON' if value_json." + field + " else 'OFF' }}",
        "payload_on": "ON",
        "payload_off": "OFF",
        **extra,
    }


def _button(action: str, name: str, icon: str) -> dict[str, Any]:
    return {
        "platform": "button",
        "unique_id": f"printbridge_3_{action}",
        "default_entity_id": f"button.printbridge_3_{action}",
        "name": name,
        "qos": 1,
        "command_topic": f"printbridge/printers/3/action/{action}",
        "payload_press": "PRESS",
        "icon": icon,
    }


EXPECTED_DEVICE_DOCUMENT: dict[str, Any] = {
    "device": {
        "identifiers": ["printbridge_3"],
        "name": "Ender 3",
        "manufacturer": "printbridge",
        "model": "octoprint_obico",
        "sw_version": "2.6.1",
    },
    "origin": {"name": "printbridge", "sw_version": VERSION},
    "availability": [
        {
            "topic": "printbridge/bridge/state",
            "payload_available": "online",
            "payload_not_available": "offline",
        },
        {
            "topic": "printbridge/printers/3/availability",
            "payload_available": "online",
            "payload_not_available": "offline",
        },
    ],
    "availability_mode": "all",
    "qos": 1,
    "components": {
        "state": _sensor(
            "state",
            "State",
            "{{ value_json.state_text if value_json.state_text is not none else 'Offline' }}",
            icon="mdi:printer-3d",
        ),
        "progress": _sensor(
            "progress",
            "Progress",
            "{{ value_json.progress }}",
            unit_of_measurement="%",
            state_class="measurement",
            suggested_display_precision=1,
        ),
        "time_left": _sensor(
            "time_left",
            "Time left",
            "{{ value_json.time_left_s }}",
            device_class="duration",
            unit_of_measurement="s",
            state_class="measurement",
        ),
        "temp_bed": _sensor(
            "temp_bed",
            "Bed",
            "{{ (value_json.temperatures['bed'] | default({})).actual | default(none) }}",
            device_class="temperature",
            unit_of_measurement="°C",
            state_class="measurement",
            suggested_display_precision=1,
        ),
        "temp_tool0": _sensor(
            "temp_tool0",
            "Nozzle",
            "{{ (value_json.temperatures['tool0'] | default({})).actual | default(none) }}",
            device_class="temperature",
            unit_of_measurement="°C",
            state_class="measurement",
            suggested_display_precision=1,
        ),
        "failure_score": _sensor(
            "failure_score",
            "Failure score",
            "{{ value_json.normalized_p }}",
            state_class="measurement",
            suggested_display_precision=2,
            icon="mdi:alert-decagram-outline",
        ),
        "printing": _binary("printing", "Printing", "printing", device_class="running"),
        "paused": _binary("paused", "Paused", "paused", icon="mdi:pause-circle-outline"),
        "alert": _binary("alert", "Failure alert", "alert_outstanding", device_class="problem"),
        "pause": _button("pause", "Pause", "mdi:pause"),
        "resume": _button("resume", "Resume", "mdi:play"),
        "cancel": _button("cancel", "Cancel", "mdi:stop"),
        "acknowledge_alert": _button("acknowledge_alert", "Acknowledge alert", "mdi:check-circle-outline"),
        "alerts_muted": {
            "platform": "switch",
            "unique_id": "printbridge_3_alerts_muted",
            "default_entity_id": "switch.printbridge_3_alerts_muted",
            "name": "Alerts muted",
            "qos": 1,
            "command_topic": "printbridge/printers/3/action/mute",
            "state_topic": "printbridge/printers/3/state",
            "value_template": "{{ 'ON' if value_json.muted else 'OFF' }}",
            "payload_on": "ON",
            "payload_off": "OFF",
            "icon": "mdi:bell-off-outline",
        },
        "snapshot": {
            "platform": "image",
            "unique_id": "printbridge_3_snapshot",
            "default_entity_id": "image.printbridge_3_snapshot",
            "name": "Snapshot",
            "qos": 1,
            "image_topic": "printbridge/printers/3/snapshot",
            "content_type": "image/jpeg",
        },
    },
}


def test_device_document_is_exactly_the_expected_one() -> None:
    topic, payload = build_device_discovery(OCTOPRINT, TOPICS)
    assert topic == "homeassistant/device/printbridge_3/config"
    assert decode(payload) == EXPECTED_DEVICE_DOCUMENT
    assert "°C".encode() in payload  # UTF-8 JSON, not an ASCII escape


def test_build_discovery_device_mode_is_the_one_device_message() -> None:
    assert build_discovery(OCTOPRINT, TOPICS, "device") == [build_device_discovery(OCTOPRINT, TOPICS)]


def test_device_block_omits_null_version_and_defaults_the_model() -> None:
    info = make_discovery_info(5, "Prusa", None, None, [])
    _, payload = build_device_discovery(info, TOPICS)
    assert decode(payload)["device"] == {
        "identifiers": ["printbridge_5"],
        "name": "Prusa",
        "manufacturer": "printbridge",
        "model": "Obico agent",
    }


def test_topics_follow_base_and_prefix() -> None:
    topics = Topics("farm/pb", "ha")
    topic, payload = build_device_discovery(OCTOPRINT, topics)
    doc = decode(payload)
    assert topic == "ha/device/printbridge_3/config"
    assert [a["topic"] for a in doc["availability"]] == ["farm/pb/bridge/state", "farm/pb/printers/3/availability"]
    assert doc["components"]["progress"]["state_topic"] == "farm/pb/printers/3/state"
    assert doc["components"]["cancel"]["command_topic"] == "farm/pb/printers/3/action/cancel"


# -- entity mode -----------------------------------------------------------------------------------


def test_entity_mode_one_message_per_component_with_shared_blocks_repeated() -> None:
    messages = build_entity_discovery(OCTOPRINT, TOPICS)
    assert build_discovery(OCTOPRINT, TOPICS, "entity") == messages
    expected_components = EXPECTED_DEVICE_DOCUMENT["components"]
    assert [t for t, _ in messages] == [
        f"homeassistant/{c['platform']}/printbridge_3/{object_id}/config"
        for object_id, c in expected_components.items()
    ]
    shared = {k: EXPECTED_DEVICE_DOCUMENT[k] for k in ("device", "origin", "availability", "availability_mode")}
    for (_, payload), component in zip(messages, expected_components.values(), strict=True):
        expected = {k: v for k, v in component.items() if k != "platform"} | shared
        assert decode(payload) == expected


def test_entity_mode_topics_for_klipper_keys() -> None:
    topics = [t for t, _ in build_entity_discovery(KLIPPER, TOPICS) if t.startswith("homeassistant/sensor/")]
    assert topics == [
        "homeassistant/sensor/printbridge_7/state/config",
        "homeassistant/sensor/printbridge_7/progress/config",
        "homeassistant/sensor/printbridge_7/time_left/config",
        "homeassistant/sensor/printbridge_7/temp_chamber/config",
        "homeassistant/sensor/printbridge_7/temp_extruder/config",
        "homeassistant/sensor/printbridge_7/temp_extruder1/config",
        "homeassistant/sensor/printbridge_7/temp_heater_bed/config",
        "homeassistant/sensor/printbridge_7/failure_score/config",
    ]


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="discovery mode"):
        build_discovery(OCTOPRINT, TOPICS, "devices")
    with pytest.raises(ValueError, match="discovery mode"):
        build_removal(3, TOPICS, "")


# -- temperatures ----------------------------------------------------------------------------------


def test_klipper_temperature_components() -> None:
    components = device_components(KLIPPER)
    temps = {k: v for k, v in components.items() if k.startswith("temp_")}
    assert {k: (v["name"], v["unique_id"]) for k, v in temps.items()} == {
        "temp_chamber": ("Chamber", "printbridge_7_temp_chamber"),
        "temp_extruder": ("Extruder", "printbridge_7_temp_extruder"),
        "temp_extruder1": ("Extruder 1", "printbridge_7_temp_extruder1"),
        "temp_heater_bed": ("Heater bed", "printbridge_7_temp_heater_bed"),
    }
    for v in temps.values():
        assert (v["device_class"], v["unit_of_measurement"], v["state_class"]) == (
            "temperature",
            "°C",
            "measurement",
        )
    payload = state_payload(
        temperatures={
            "extruder": {"actual": 245.5, "target": 245.0},
            "extruder1": {"actual": 24.0, "target": 0.0},
            "heater_bed": {"actual": 100.1, "target": 100.0},
            "chamber": {"actual": None, "target": None},
        }
    )
    rendered = {k: render(v["value_template"], payload) for k, v in temps.items()}
    assert rendered == {
        "temp_chamber": "None",
        "temp_extruder": "245.5",
        "temp_extruder1": "24.0",
        "temp_heater_bed": "100.1",
    }


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("tool0", "Nozzle"),
        ("tool1", "Nozzle 1"),
        ("bed", "Bed"),
        ("chamber", "Chamber"),
        ("extruder", "Extruder"),
        ("extruder2", "Extruder 2"),
        ("heater_bed", "Heater bed"),
        ("temperature_sensor mcu_temp", "Temperature sensor mcu temp"),
        ("", "Temperature"),
    ],
)
def test_temperature_names(key: str, name: str) -> None:
    assert temperature_name(key) == name


def test_temperature_object_ids_are_valid_discovery_ids_and_unique() -> None:
    ids = temperature_object_ids(["Heater Bed", "heater_bed", "temperature_sensor mcu", "!!"])
    assert ids == {
        "!!": "temp_sensor",
        "Heater Bed": "temp_heater_bed",
        "heater_bed": "temp_heater_bed_2",
        "temperature_sensor mcu": "temp_temperature_sensor_mcu",
    }


def test_temperature_template_survives_hostile_keys() -> None:
    key = "a'b\"c}} {% x %}\\ é🔥"
    template = temperature_template(key)
    assert "}}" not in template[2:-2] and "%}" not in template
    payload = state_payload(temperatures={key: {"actual": 31.5, "target": 0.0}, "a": {"actual": 1.0}})
    assert render(template, payload) == "31.5"
    assert render(template, OFFLINE) == "None"


def test_temperature_template_missing_or_malformed_entries_render_none() -> None:
    template = temperature_template("tool0")
    assert render(template, state_payload(temperatures={"tool0": None})) == "None"
    assert render(template, state_payload(temperatures={"tool0": {"target": 200.0}})) == "None"
    assert render(template, state_payload(temperatures={"bed": {"actual": 60.0}})) == "None"
    assert render(template, state_payload(temperatures={"tool0": {"actual": 0.0}})) == "0.0"


# -- every template against printing / paused / offline --------------------------------------------


EXPECTED_RENDERINGS: dict[str, tuple[str, str, str]] = {
    # object id: (printing, paused, offline)
    "state": ("Printing", "Paused", "Offline"),
    "progress": ("5.3", "5.3", "None"),
    "time_left": ("2068", "2068", "None"),
    "temp_bed": ("60.0", "60.0", "None"),
    "temp_tool0": ("219.8", "219.8", "None"),
    "failure_score": ("0.12", "0.87", "0.0"),
    "printing": ("ON", "OFF", "OFF"),
    "paused": ("OFF", "ON", "OFF"),
    "alert": ("OFF", "ON", "OFF"),
    "alerts_muted": ("OFF", "ON", "OFF"),
}


def test_every_value_template_renders_as_expected() -> None:
    components = device_components(OCTOPRINT)
    with_templates = {k: v for k, v in components.items() if "value_template" in v}
    assert set(with_templates) == set(EXPECTED_RENDERINGS)
    for object_id, component in with_templates.items():
        got = tuple(render(component["value_template"], p) for p in (state_payload(), PAUSED, OFFLINE))
        assert got == EXPECTED_RENDERINGS[object_id], object_id


def test_on_off_renderings_match_the_declared_payloads() -> None:
    for component in device_components(OCTOPRINT).values():
        if component["platform"] in ("binary_sensor", "switch"):
            rendered = {render(component["value_template"], p) for p in (state_payload(), PAUSED, OFFLINE)}
            assert rendered == {component["payload_on"], component["payload_off"]}


def test_idle_online_printer_has_unknown_progress() -> None:
    idle = state_payload(state_text="Operational", printing=False, progress=None, time_left_s=None, file=None)
    components = device_components(OCTOPRINT)
    assert render(components["state"]["value_template"], idle) == "Operational"
    assert render(components["progress"]["value_template"], idle) == "None"
    assert render(components["time_left"]["value_template"], idle) == "None"


def test_commands_are_the_action_topics() -> None:
    components = device_components(OCTOPRINT)
    commands = {k: v["command_topic"] for k, v in components.items() if "command_topic" in v}
    assert commands == {
        "pause": "printbridge/printers/3/action/pause",
        "resume": "printbridge/printers/3/action/resume",
        "cancel": "printbridge/printers/3/action/cancel",
        "acknowledge_alert": "printbridge/printers/3/action/acknowledge_alert",
        "alerts_muted": "printbridge/printers/3/action/mute",
    }
    unique_ids = [v["unique_id"] for v in components.values()]
    assert len(set(unique_ids)) == len(unique_ids)


# -- change detection ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["device", "entity"])
def test_equal_infos_give_equal_messages(mode: str) -> None:
    again = make_discovery_info(3, "Ender 3", "octoprint_obico", "2.6.1", ["bed", "tool0", "bed"])
    assert again == OCTOPRINT
    assert build_discovery(again, TOPICS, mode) == build_discovery(OCTOPRINT, TOPICS, mode)


@pytest.mark.parametrize(
    "changed",
    [
        make_discovery_info(3, "Ender 3 Pro", "octoprint_obico", "2.6.1", ["tool0", "bed"]),
        make_discovery_info(3, "Ender 3", "octoprint_obico", "2.6.2", ["tool0", "bed"]),
        make_discovery_info(3, "Ender 3", "octoprint_obico", "2.6.1", ["tool0", "bed", "chamber"]),
    ],
)
def test_changed_infos_give_different_messages(changed: DiscoveryInfo) -> None:
    assert changed != OCTOPRINT
    assert build_discovery(changed, TOPICS, "device") != build_discovery(OCTOPRINT, TOPICS, "device")


# -- removal ---------------------------------------------------------------------------------------


def test_device_removal_is_one_empty_retained_payload() -> None:
    assert build_removal(3, TOPICS, "device") == [("homeassistant/device/printbridge_3/config", b"")]
    assert build_removal(3, TOPICS, "device", OCTOPRINT) == [("homeassistant/device/printbridge_3/config", b"")]


def test_entity_removal_empties_every_topic_previously_published() -> None:
    published = [t for t, _ in build_entity_discovery(KLIPPER, TOPICS)]
    assert build_removal(7, TOPICS, "entity", KLIPPER) == [(t, b"") for t in published]


def test_entity_removal_without_previous_covers_the_fixed_entities() -> None:
    removal = build_removal(7, TOPICS, "entity")
    assert all(payload == b"" for _, payload in removal)
    published = {t for t, _ in build_entity_discovery(KLIPPER, TOPICS)}
    assert {t for t, _ in removal} == {t for t in published if "/temp_" not in t}


def test_removal_refuses_another_printers_previous() -> None:
    with pytest.raises(ValueError, match="printer 7"):
        build_removal(3, TOPICS, "entity", KLIPPER)


def test_device_mode_tombstones_components_that_vanished() -> None:
    previous = make_discovery_info(3, "Ender 3", "octoprint_obico", "2.6.1", ["tool0", "bed", "chamber"])
    _, payload = build_device_discovery(OCTOPRINT, TOPICS, previous=previous)
    components = decode(payload)["components"]
    assert components["temp_chamber"] == {"platform": "sensor"}
    assert {k: v for k, v in components.items() if k != "temp_chamber"} == EXPECTED_DEVICE_DOCUMENT["components"]
    # nothing vanished: no tombstone, same bytes as without `previous`
    assert build_device_discovery(OCTOPRINT, TOPICS, previous=OCTOPRINT) == build_device_discovery(OCTOPRINT, TOPICS)


def test_entity_mode_empties_the_topics_of_vanished_components() -> None:
    previous = make_discovery_info(3, "Ender 3", "octoprint_obico", "2.6.1", ["tool0", "bed", "chamber"])
    messages = build_entity_discovery(OCTOPRINT, TOPICS, previous=previous)
    assert messages[:-1] == build_entity_discovery(OCTOPRINT, TOPICS)
    assert messages[-1] == ("homeassistant/sensor/printbridge_3/temp_chamber/config", b"")
    with pytest.raises(ValueError, match="printer 7"):
        build_discovery(OCTOPRINT, TOPICS, "entity", previous=KLIPPER)
