"""Settings read once from PRINTBRIDGE_* (or `serve` flags), validated, frozen and passed down."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bridge.mqtt.tls import CertificateProblem, load_ca_file
from bridge.mqtt.topics import TopicError, check_base
from bridge.mqtt.url import MqttUrl as MqttUrl  # a setting's type, defined with the broker connection

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


# `scheme://user:password@`: the password is never echoed in an error message.
_PASSWORD_IN_URL = re.compile(r"^([^:/]*://[^:@/]*:).*@")


class ConfigError(ValueError):
    """An invalid setting; the message names the variable."""


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("expected true/false, 1/0 or yes/no")


def _public_mqtt_url(text: str) -> MqttUrl:
    url = MqttUrl.parse(text)
    if url.username is not None or url.password is not None:
        raise ValueError("expected no user:password@ (each agent logs in with its own account)")
    return url


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError("expected a positive number")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("expected a port number 0-65535")
    return value


def _host(text: str) -> str:
    if not text.strip():
        raise ValueError("expected a host name or address")
    return text.strip()


def _mode(text: str) -> str:
    if text not in ("device", "entity"):
        raise ValueError("expected 'device' or 'entity'")
    return text


def _protocol(text: str) -> str:
    if text not in ("3.1.1", "5"):
        raise ValueError("expected '3.1.1' or '5'")
    return text


def _base(text: str) -> str:
    try:
        return check_base(text)
    except TopicError as exc:
        raise ValueError(str(exc)) from None


def _ca_file(text: str) -> Path:
    if not text.strip():
        raise ValueError("expected the path of a PEM file")
    try:
        return load_ca_file(Path(text))
    except CertificateProblem as exc:
        raise ValueError(str(exc)) from None


def _db(text: str) -> Path:
    if not text.strip():
        raise ValueError("expected a file path")
    return Path(text)


@dataclass(frozen=True, slots=True)
class _Option:
    attr: str
    env: str
    flag: str
    parse: Callable[[str], Any]
    help: str


_OPTIONS = (
    _Option("db_path", "PRINTBRIDGE_DB", "--db", _db, "SQLite file"),
    _Option("mqtt_url", "PRINTBRIDGE_MQTT_URL", "--mqtt-url", MqttUrl.parse, "broker URL"),
    _Option("mqtt_ca", "PRINTBRIDGE_MQTT_CA", "--mqtt-ca", _ca_file, "CA file (PEM) for an mqtts:// broker"),
    _Option("base_topic", "PRINTBRIDGE_BASE_TOPIC", "--base-topic", _base, "first topic level"),
    _Option("http_host", "PRINTBRIDGE_HTTP_HOST", "--http-host", _host, "HTTP listen address"),
    _Option("http_port", "PRINTBRIDGE_HTTP_PORT", "--http-port", _port, "HTTP listen port"),
    _Option(
        "command_timeout_s",
        "PRINTBRIDGE_COMMAND_TIMEOUT_S",
        "--command-timeout-s",
        _positive_float,
        "seconds an action waits for the agent's ack",
    ),
    _Option(
        "status_ttl_s",
        "PRINTBRIDGE_STATUS_TTL_S",
        "--status-ttl-s",
        _positive_float,
        "seconds after which a status is stale",
    ),
    _Option("ha_discovery", "PRINTBRIDGE_HA_DISCOVERY", "--ha-discovery", parse_bool, "publish HA discovery"),
    _Option("ha_prefix", "PRINTBRIDGE_HA_PREFIX", "--ha-prefix", _base, "HA discovery prefix"),
    _Option(
        "ha_discovery_mode",
        "PRINTBRIDGE_HA_DISCOVERY_MODE",
        "--ha-discovery-mode",
        _mode,
        "device or entity discovery",
    ),
    _Option(
        "require_broker_auth",
        "PRINTBRIDGE_REQUIRE_BROKER_AUTH",
        "--require-broker-auth",
        parse_bool,
        "refuse a broker that lets anonymous clients publish",
    ),
    _Option("mqtt_protocol", "PRINTBRIDGE_MQTT_PROTOCOL", "--mqtt-protocol", _protocol, "3.1.1 or 5"),
    _Option(
        "public_mqtt_url",
        "PRINTBRIDGE_PUBLIC_MQTT_URL",
        "--public-mqtt-url",
        _public_mqtt_url,
        "broker URL given to printer agents",
    ),
)


@dataclass(frozen=True, slots=True)
class Settings:
    db_path: Path = Path("./data/printbridge.db")
    mqtt_url: MqttUrl = field(default_factory=lambda: MqttUrl.parse("mqtt://127.0.0.1:1883"))
    mqtt_ca: Path | None = None  # trust only this CA (PEM) for an mqtts:// broker; None: the system's
    base_topic: str = "printbridge"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    command_timeout_s: float = 5.0
    status_ttl_s: float = 120.0
    ha_discovery: bool = True
    ha_prefix: str = "homeassistant"
    ha_discovery_mode: str = "device"
    require_broker_auth: bool = False
    # 3.1.1 is the default: printbridge absorbed ~15,400 status msg/s with it against ~13,000 with MQTT 5
    # (bench/RESULTS.md, `bench.ingest --protocol`), and cmd_id in the payload correlates acks on either.
    mqtt_protocol: str = "3.1.1"
    # None: the bridge's own broker URL without credentials (docs/rest.md, agent_config), see `agent_mqtt_url`.
    public_mqtt_url: MqttUrl | None = None
    # Not user settings: how often coalesced status writes are flushed and stale statuses swept.
    flush_interval_s: float = 0.05
    sweep_interval_s: float = 1.0
    reconcile_interval_s: float = 1.0
    # Not user settings: the event stream's pacing (`bridge.http.live.StreamTiming`; tests shorten them).
    stream_heartbeat_s: float = 15.0
    stream_min_interval_s: float = 0.25
    stream_stall_s: float = 10.0
    # The longest wait between two attempts to reach a printer the bridge connects to (a Bambu printer that
    # is switched off costs one connection attempt per this long).
    reconnect_cap_s: float = 30.0

    @property
    def agent_mqtt_url(self) -> str:
        """The broker URL printer agents are told to use (PRINTBRIDGE_PUBLIC_MQTT_URL)."""
        return (self.public_mqtt_url or self.mqtt_url).without_credentials()

    def check(self) -> Settings:
        if self.ha_prefix == self.base_topic:
            raise ConfigError("PRINTBRIDGE_HA_PREFIX: must differ from PRINTBRIDGE_BASE_TOPIC")
        if self.mqtt_ca is not None and not self.mqtt_url.tls:
            raise ConfigError("PRINTBRIDGE_MQTT_CA: only used with an mqtts:// PRINTBRIDGE_MQTT_URL")
        return self


def add_serve_flags(parser: argparse.ArgumentParser) -> None:
    for opt in _OPTIONS:
        parser.add_argument(opt.flag, dest=opt.attr, default=None, metavar="VALUE", help=f"{opt.help} ({opt.env})")


def load_settings(environ: Mapping[str, str] | None = None, flags: Mapping[str, str | None] | None = None) -> Settings:
    """Build Settings from the environment, then flags; raise ConfigError naming the variable."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for opt in _OPTIONS:
        raw = (flags or {}).get(opt.attr)
        source = opt.flag
        if raw is None:
            raw = env.get(opt.env)
            source = opt.env
        if raw is None:
            continue
        try:
            values[opt.attr] = opt.parse(raw)
        except ValueError as exc:
            shown = _PASSWORD_IN_URL.sub(r"\1***@", raw) if opt.attr in ("mqtt_url", "public_mqtt_url") else raw
            raise ConfigError(f"{source}: invalid value {shown!r}: {exc}") from None
    settings = Settings(**values)
    try:
        return settings.check()
    except ConfigError:
        raise


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for the README and `--help`."""
    defaults = Settings()
    names = {f.name for f in fields(Settings)}
    rows = []
    for opt in _OPTIONS:
        assert opt.attr in names
        default = getattr(defaults, opt.attr)
        if opt.attr == "public_mqtt_url":
            shown = "the broker URL without credentials"
        else:
            shown = str(default.redacted() if isinstance(default, MqttUrl) else default)
        rows.append((opt.env, shown, opt.help))
    return rows
