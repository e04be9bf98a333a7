"""Home Assistant MQTT discovery (docs/mqtt.md): pure builders that return messages and never publish.

Every message returned here is meant to be published retained at QoS 1 (an empty payload removes).

Two modes:

- ``"device"`` (HA 2024.11+): one message at ``homeassistant/device/printbridge_{id}/config`` whose
  ``components`` hold every entity. Shared blocks (``device``, ``origin``, ``availability``) appear once.
- ``"entity"``: one message per entity at ``homeassistant/<platform>/printbridge_{id}/<object>/config``,
  each repeating the device, origin and availability blocks (works on every HA version).

Every key emitted was checked against Home Assistant's MQTT schemas (``mqtt/schemas.py``:
``DEVICE_DISCOVERY_SCHEMA``, ``MQTT_ENTITY_DEVICE_INFO_SCHEMA``, ``MQTT_ORIGIN_INFO_SCHEMA``,
``MQTT_ENTITY_COMMON_SCHEMA``; ``sensor.py``, ``binary_sensor.py``, ``button.py``, ``switch.py``,
``image.py``). Long key names are used, never abbreviations. Notes on choices:

- ``qos`` is set on every component as well as on the device: HA 2024.11 to 2025.x do not pass a
  device-level ``qos`` down to the components (it is not in their ``SHARED_OPTIONS``).
- ``default_entity_id`` (HA 2025.10+) fixes entity ids such as ``sensor.printbridge_3_progress``;
  ``object_id`` is deprecated since 2025.10 and stops working in 2026.4, so it is not emitted. Older
  versions drop the unknown key (their platform discovery schemas use ``REMOVE_EXTRA``).
- Value templates use plain Jinja2 only. A numeric sensor whose template renders ``None`` becomes
  ``unknown`` in HA (``PAYLOAD_NONE``); ``{{ value_json.x }}`` renders a JSON null as ``None``.
- The failure score is ``normalized_p`` as is (0..1, no unit), the same number the REST API serves.
- A component dropped from a device message must be sent once as ``{"platform": ...}`` for HA to remove
  its entity: pass ``previous`` to the builders and they add those tombstones (device mode) or empty
  payloads for the vanished entity topics (entity mode).
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Iterable
from typing import Any, Final, Literal, cast

import msgspec

from bridge.mqtt.topics import Topics

DiscoveryMode = Literal["device", "entity"]
DISCOVERY_MODES: Final = frozenset({"device", "entity"})

Message = tuple[str, bytes]

ORIGIN_NAME: Final = "printbridge"
ORIGIN_SW_VERSION: Final = importlib.metadata.version("printbridge")
MANUFACTURER: Final = "printbridge"
DEFAULT_MODEL: Final = "Obico agent"
QOS: Final = 1
PAYLOAD_AVAILABLE: Final = "online"
PAYLOAD_NOT_AVAILABLE: Final = "offline"
PAYLOAD_PRESS: Final = "PRESS"
PAYLOAD_ON: Final = "ON"
PAYLOAD_OFF: Final = "OFF"
SNAPSHOT_CONTENT_TYPE: Final = "image/jpeg"
STATE_TEXT_OFFLINE: Final = "Offline"

_encoder = msgspec.json.Encoder()


class DiscoveryInfo(msgspec.Struct, frozen=True):
    """Everything discovery content depends on: equal infos give byte-equal messages."""

    printer_id: int
    name: str
    agent_name: str | None
    agent_version: str | None
    temperatures: tuple[str, ...]  # sorted, distinct keys of status.temperatures


def make_discovery_info(
    printer_id: int,
    name: str,
    agent_name: str | None,
    agent_version: str | None,
    temperature_keys: Iterable[str],
) -> DiscoveryInfo:
    """A DiscoveryInfo with its temperature keys sorted and de-duplicated."""
    return DiscoveryInfo(
        printer_id=printer_id,
        name=name,
        agent_name=agent_name,
        agent_version=agent_version,
        temperatures=tuple(sorted(set(temperature_keys))),
    )


# -- value templates (rendered by HA with `value` and `value_json`) --------------------------------


def _json_field(field: str) -> str:
    """The field as is: a JSON null renders as `None`, which HA turns into `unknown`."""
    return "{{ value_json." + field + " }}"


def _on_off(field: str) -> str:
    return "{{ '" + PAYLOAD_ON + "' if value_json." + field + " else '" + PAYLOAD_OFF + "' }}"


STATE_TEXT_TEMPLATE: Final = (
    "{{ value_json.state_text if value_json.state_text is not none else '" + STATE_TEXT_OFFLINE + "' }}"
)

_SAFE_LITERAL_CHAR = re.compile(r"[A-Za-z0-9_ .-]")


def _jinja_string(text: str) -> str:
    """A Jinja2 string literal for any text: everything but plain characters as `\\u` escapes,
    so that quotes, backslashes and `}}` / `%}` in agent-chosen keys cannot break the template."""
    parts = []
    for ch in text:
        if _SAFE_LITERAL_CHAR.fullmatch(ch):
            parts.append(ch)
        elif ord(ch) <= 0xFFFF:
            parts.append(f"\\u{ord(ch):04x}")
        else:
            parts.append(f"\\U{ord(ch):08x}")
    return "'" + "".join(parts) + "'"


def temperature_template(key: str) -> str:
    """`temperatures[key].actual`, `None` when the key, its object or its value is missing."""
    literal = _jinja_string(key)
    return "{{ (value_json.temperatures[" + literal + "] | default({})).actual | default(none) }}"


# -- names and ids ---------------------------------------------------------------------------------

_TOOL = re.compile(r"tool(\d+)")
_EXTRUDER = re.compile(r"extruder(\d*)")
_NON_SLUG = re.compile(r"[^a-z0-9]+")


def temperature_name(key: str) -> str:
    """A readable name: tool0 -> Nozzle, tool1 -> Nozzle 1, extruder1 -> Extruder 1, heater_bed ->
    Heater bed, otherwise the key with `_` as spaces and a capital first letter."""
    if m := _TOOL.fullmatch(key):
        n = int(m[1])
        return "Nozzle" if n == 0 else f"Nozzle {n}"
    if m := _EXTRUDER.fullmatch(key):
        return "Extruder" if not m[1] else f"Extruder {int(m[1])}"
    words = " ".join(key.replace("_", " ").split())
    return words[:1].upper() + words[1:] if words else "Temperature"


def _slug(key: str) -> str:
    return _NON_SLUG.sub("_", key.lower()).strip("_") or "sensor"


def temperature_object_ids(keys: Iterable[str]) -> dict[str, str]:
    """key -> object id (`temp_<slug>`), unique even when two keys slug alike (`_2`, `_3`...)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for key in sorted(set(keys)):
        base = f"temp_{_slug(key)}"
        object_id, n = base, 2
        while object_id in used:
            object_id, n = f"{base}_{n}", n + 1
        used.add(object_id)
        out[key] = object_id
    return out


def unique_id(printer_id: int, object_id: str) -> str:
    return f"printbridge_{printer_id}_{object_id}"


# -- blocks ----------------------------------------------------------------------------------------


def _device_block(info: DiscoveryInfo) -> dict[str, Any]:
    device: dict[str, Any] = {
        "identifiers": [f"printbridge_{info.printer_id}"],
        "name": info.name,
        "manufacturer": MANUFACTURER,
        "model": info.agent_name or DEFAULT_MODEL,
    }
    if info.agent_version is not None:
        device["sw_version"] = info.agent_version
    return device


def _origin_block() -> dict[str, Any]:
    return {"name": ORIGIN_NAME, "sw_version": ORIGIN_SW_VERSION}


def _availability(info: DiscoveryInfo, topics: Topics) -> list[dict[str, Any]]:
    return [
        {
            "topic": topic,
            "payload_available": PAYLOAD_AVAILABLE,
            "payload_not_available": PAYLOAD_NOT_AVAILABLE,
        }
        for topic in (topics.bridge_state, topics.availability(info.printer_id))
    ]


# -- components ------------------------------------------------------------------------------------

_Component = tuple[str, str, dict[str, Any]]  # (platform, object_id, config with "platform")


def _component(info: DiscoveryInfo, platform: str, object_id: str, name: str, **config: Any) -> _Component:
    return (
        platform,
        object_id,
        {
            "platform": platform,
            "unique_id": unique_id(info.printer_id, object_id),
            "default_entity_id": f"{platform}.{unique_id(info.printer_id, object_id)}",
            "name": name,
            "qos": QOS,
            **config,
        },
    )


def _components(info: DiscoveryInfo, topics: Topics) -> list[_Component]:
    pid = info.printer_id
    state = topics.state(pid)

    def sensor(object_id: str, name: str, template: str, **config: Any) -> _Component:
        return _component(info, "sensor", object_id, name, state_topic=state, value_template=template, **config)

    def binary(object_id: str, name: str, field: str, **config: Any) -> _Component:
        return _component(
            info,
            "binary_sensor",
            object_id,
            name,
            state_topic=state,
            value_template=_on_off(field),
            payload_on=PAYLOAD_ON,
            payload_off=PAYLOAD_OFF,
            **config,
        )

    def button(action: str, name: str, icon: str) -> _Component:
        return _component(
            info,
            "button",
            action,
            name,
            command_topic=topics.action(pid, action),
            payload_press=PAYLOAD_PRESS,
            icon=icon,
        )

    temp_ids = temperature_object_ids(info.temperatures)
    return [
        sensor("state", "State", STATE_TEXT_TEMPLATE, icon="mdi:printer-3d"),
        sensor(
            "progress",
            "Progress",
            _json_field("progress"),
            unit_of_measurement="%",
            state_class="measurement",
            suggested_display_precision=1,
        ),
        sensor(
            "time_left",
            "Time left",
            _json_field("time_left_s"),
            device_class="duration",
            unit_of_measurement="s",
            state_class="measurement",
        ),
        *(
            sensor(
                temp_ids[key],
                temperature_name(key),
                temperature_template(key),
                device_class="temperature",
                unit_of_measurement="°C",
                state_class="measurement",
                suggested_display_precision=1,
            )
            for key in sorted(temp_ids)
        ),
        sensor(
            "failure_score",
            "Failure score",
            _json_field("normalized_p"),
            state_class="measurement",
            suggested_display_precision=2,
            icon="mdi:alert-decagram-outline",
        ),
        binary("printing", "Printing", "printing", device_class="running"),
        binary("paused", "Paused", "paused", icon="mdi:pause-circle-outline"),
        binary("alert", "Failure alert", "alert_outstanding", device_class="problem"),
        button("pause", "Pause", "mdi:pause"),
        button("resume", "Resume", "mdi:play"),
        button("cancel", "Cancel", "mdi:stop"),
        button("acknowledge_alert", "Acknowledge alert", "mdi:check-circle-outline"),
        _component(
            info,
            "switch",
            "alerts_muted",
            "Alerts muted",
            command_topic=topics.action(pid, "mute"),
            state_topic=state,
            value_template=_on_off("muted"),
            payload_on=PAYLOAD_ON,
            payload_off=PAYLOAD_OFF,
            icon="mdi:bell-off-outline",
        ),
        _component(
            info,
            "image",
            "snapshot",
            "Snapshot",
            image_topic=topics.snapshot(pid),
            content_type=SNAPSHOT_CONTENT_TYPE,
        ),
    ]


def _removed(info: DiscoveryInfo, previous: DiscoveryInfo | None, topics: Topics) -> list[tuple[str, str]]:
    """(platform, object_id) of the components `previous` had and `info` has not."""
    if previous is None:
        return []
    if previous.printer_id != info.printer_id:
        raise ValueError(f"previous discovery is for printer {previous.printer_id}, not {info.printer_id}")
    current = {(p, o) for p, o, _ in _components(info, topics)}
    return [(p, o) for p, o, _ in _components(previous, topics) if (p, o) not in current]


def _check_mode(mode: str) -> DiscoveryMode:
    if mode not in DISCOVERY_MODES:
        raise ValueError(f"discovery mode must be 'device' or 'entity', got {mode!r}")
    return cast(DiscoveryMode, mode)


# -- public builders -------------------------------------------------------------------------------


def build_device_discovery(info: DiscoveryInfo, topics: Topics, *, previous: DiscoveryInfo | None = None) -> Message:
    """The one device-discovery message; `previous` adds removal tombstones for vanished components."""
    components: dict[str, dict[str, Any]] = {o: cfg for _, o, cfg in _components(info, topics)}
    for platform, object_id in _removed(info, previous, topics):
        components[object_id] = {"platform": platform}
    payload = {
        "device": _device_block(info),
        "origin": _origin_block(),
        "availability": _availability(info, topics),
        "availability_mode": "all",
        "qos": QOS,
        "components": components,
    }
    return topics.ha_device_config(info.printer_id), _encoder.encode(payload)


def build_entity_discovery(
    info: DiscoveryInfo, topics: Topics, *, previous: DiscoveryInfo | None = None
) -> list[Message]:
    """One message per entity; `previous` adds empty payloads for the entity topics that vanished."""
    shared = {
        "device": _device_block(info),
        "origin": _origin_block(),
        "availability": _availability(info, topics),
        "availability_mode": "all",
    }
    messages: list[Message] = []
    for platform, object_id, cfg in _components(info, topics):
        payload = {k: v for k, v in cfg.items() if k != "platform"} | shared
        messages.append((topics.ha_entity_config(platform, info.printer_id, object_id), _encoder.encode(payload)))
    for platform, object_id in _removed(info, previous, topics):
        messages.append((topics.ha_entity_config(platform, info.printer_id, object_id), b""))
    return messages


def build_discovery(
    info: DiscoveryInfo, topics: Topics, mode: str, *, previous: DiscoveryInfo | None = None
) -> list[Message]:
    """The discovery messages of one printer in `mode` ("device" or "entity")."""
    if _check_mode(mode) == "device":
        return [build_device_discovery(info, topics, previous=previous)]
    return build_entity_discovery(info, topics, previous=previous)


def build_removal(printer_id: int, topics: Topics, mode: str, previous: DiscoveryInfo | None = None) -> list[Message]:
    """Empty retained payloads that remove a printer from HA (printer deleted or archived).

    Device mode: the device config topic (HA then removes every component itself). Entity mode: every
    entity topic `previous` published; without `previous`, every entity that does not depend on the
    temperature keys (the temperature entities cannot be named then).
    """
    if _check_mode(mode) == "device":
        return [(topics.ha_device_config(printer_id), b"")]
    if previous is not None and previous.printer_id != printer_id:
        raise ValueError(f"previous discovery is for printer {previous.printer_id}, not {printer_id}")
    info = previous or DiscoveryInfo(printer_id, "", None, None, ())
    return [
        (topics.ha_entity_config(platform, printer_id, object_id), b"")
        for platform, object_id, _ in _components(info, topics)
    ]
