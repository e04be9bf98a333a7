"""The plugin's settings (`plugins.printbridge.*` in OctoPrint's config.yaml), checked once. Pure.

printbridge's `GET /api/v1/printers/{id}/agent_config/` and `printbridge printer add` give the values as a
ready-to-paste mapping; `broker_url`, `printer_id`, `password` and `base_topic` are the ones it fills in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

DEFAULTS: dict[str, Any] = {
    "broker_url": "",  # mqtt://host[:port] or mqtts://host[:port]
    "ca_file": "",  # PEM file to verify an mqtts:// broker with (empty: the system's CAs)
    "printer_id": None,
    "password": "",  # the printer's auth_token
    "username": "",  # empty: printer-{printer_id}, the account printbridge makes
    "base_topic": "printbridge",
    "status_interval_printing_s": 10.0,
    "status_interval_idle_s": 30.0,
    "snapshot_interval_s": 10.0,  # 0: no snapshots
}


class SettingsError(ValueError):
    """A setting that cannot work; the message names it."""


@dataclass(frozen=True)
class AgentSettings:
    host: str
    port: int
    tls: bool
    ca_file: str | None
    printer_id: int
    username: str
    password: str
    base_topic: str
    status_interval_printing_s: float
    status_interval_idle_s: float
    snapshot_interval_s: float

    @property
    def broker(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def _broker(url: str) -> tuple[str, int, bool]:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("mqtt", "mqtts"):
        raise SettingsError("broker_url: expected mqtt://host[:port] or mqtts://host[:port]")
    if parts.username or parts.password:
        raise SettingsError("broker_url: put the password in its own setting, not in the URL")
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise SettingsError("broker_url: expected mqtt://host[:port] or mqtts://host[:port]")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise SettingsError("broker_url: invalid port") from None
    return parts.hostname, port, tls


def _interval(values: Mapping[str, Any], key: str, allow_zero: bool = False) -> float:
    try:
        value = float(values.get(key, DEFAULTS[key]))
    except (TypeError, ValueError):
        raise SettingsError(f"{key}: expected a number of seconds") from None
    if value != value or value < 0 or (value == 0 and not allow_zero) or value > 86400:
        raise SettingsError(f"{key}: expected {'0 or ' if allow_zero else ''}a positive number of seconds")
    return value


def _base_topic(text: str) -> str:
    base = text.strip()
    if not base or base.startswith("/") or base.endswith("/") or "//" in base or any(c in base for c in "+#"):
        raise SettingsError("base_topic: expected topic levels without wildcards, e.g. printbridge")
    return base


def parse_settings(values: Mapping[str, Any]) -> AgentSettings:
    """Check the settings as OctoPrint holds them (strings from the settings page, or YAML values)."""
    url = str(values.get("broker_url") or "")
    if not url.strip():
        raise SettingsError("broker_url: not set (printbridge's agent_config gives it)")
    host, port, tls = _broker(url)
    raw_id = values.get("printer_id")
    try:
        printer_id = int(str(raw_id).strip())
    except (TypeError, ValueError):
        raise SettingsError("printer_id: expected the printer's id in printbridge, a whole number") from None
    if printer_id <= 0:
        raise SettingsError("printer_id: expected a positive whole number")
    password = str(values.get("password") or "")
    if not password:
        raise SettingsError("password: not set (the printer's auth_token in printbridge)")
    ca_file = str(values.get("ca_file") or "").strip() or None
    if ca_file is not None and not tls:
        raise SettingsError("ca_file: only used with an mqtts:// broker_url")
    if ca_file is not None and not os.path.isfile(ca_file):
        raise SettingsError(f"ca_file: no such file {ca_file!r}")
    username = str(values.get("username") or "").strip() or f"printer-{printer_id}"
    return AgentSettings(
        host=host,
        port=port,
        tls=tls,
        ca_file=ca_file,
        printer_id=printer_id,
        username=username,
        password=password,
        base_topic=_base_topic(str(values.get("base_topic") or DEFAULTS["base_topic"])),
        status_interval_printing_s=_interval(values, "status_interval_printing_s"),
        status_interval_idle_s=_interval(values, "status_interval_idle_s"),
        snapshot_interval_s=_interval(values, "snapshot_interval_s", allow_zero=True),
    )
