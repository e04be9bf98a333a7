"""What a printer's agent needs to connect (`agent_config`, docs/rest.md): pure builders, one per dialect.

`build_agent_config` picks the snippet builder for the printer's dialect from `SNIPPET_BUILDERS`; a new
dialect adds its builder to that table (an unknown dialect is a programming error, a KeyError).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from bridge.domain import bambu_setup
from bridge.domain.models import PrinterRecord
from bridge.domain.moonraker_snippet import build_moonraker_snippet, instance_name

# The OctoPrint plugin's identifier (its entry point name in agents/octoprint), i.e. its key under
# `plugins:` in OctoPrint's config.yaml, and the setting names its settings page saves.
OCTOPRINT_PLUGIN_IDENTIFIER = "printbridge"


class BrokerLogin(msgspec.Struct):
    url: str
    username: str
    password: str


class AgentConfig(msgspec.Struct):
    dialect: str
    broker: BrokerLogin
    base_topic: str
    printer_id: int
    snippet: str


def _yaml_scalar(value: str | int) -> str:
    # A JSON string is a YAML double-quoted scalar: every character the password or URL may hold survives.
    return msgspec.json.encode(value).decode()


def build_octoprint_snippet(broker: BrokerLogin, base_topic: str, printer_id: int) -> str:
    """The OctoPrint plugin's settings as YAML, to go under `plugins:` in OctoPrint's config.yaml."""
    settings: dict[str, Any] = {
        "broker_url": broker.url,
        "printer_id": printer_id,
        "password": broker.password,
        "base_topic": base_topic,
    }
    lines = [f"{OCTOPRINT_PLUGIN_IDENTIFIER}:"]
    lines += [f"  {key}: {_yaml_scalar(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


SnippetBuilder = Callable[[BrokerLogin, str, int], str]


def build_moonraker_section(broker: BrokerLogin, base_topic: str, printer_id: int) -> str:
    """The `[mqtt]` section of moonraker.conf (`bridge.domain.moonraker_snippet`)."""
    return build_moonraker_snippet(broker.url, broker.username, broker.password, instance_name(base_topic, printer_id))


SNIPPET_BUILDERS: dict[str, SnippetBuilder] = {
    "printbridge": build_octoprint_snippet,
    "moonraker": build_moonraker_section,
}


def build_own_broker_config(rec: PrinterRecord, base_topic: str) -> AgentConfig:
    """A printer with no agent, whose own broker the bridge connects to (dialect `bambu`): `broker` is the
    printer's (the access code is write-only: never shown, so `password` is empty) and `snippet` says what to
    enable on the printer."""
    config = rec.dialect_config
    host, serial = str(config.get("host", "")), str(config.get("serial", ""))
    port = int(config.get("port", bambu_setup.DEFAULT_PORT))
    broker = BrokerLogin(url=bambu_setup.broker_url(host, port), username=bambu_setup.USERNAME, password="")
    snippet = bambu_setup.build_setup_text(host, serial, port)
    return AgentConfig(dialect=rec.dialect, broker=broker, base_topic=base_topic, printer_id=rec.id, snippet=snippet)


# Dialects whose printers run no agent of ours: their whole agent_config is built by the dialect's own builder.
OWN_BROKER_BUILDERS: dict[str, Callable[[PrinterRecord, str], AgentConfig]] = {"bambu": build_own_broker_config}


def build_agent_config(rec: PrinterRecord, *, username: str, broker_url: str, base_topic: str) -> AgentConfig:
    dialect = rec.dialect
    if dialect in OWN_BROKER_BUILDERS:
        return OWN_BROKER_BUILDERS[dialect](rec, base_topic)
    broker = BrokerLogin(url=broker_url, username=username, password=rec.auth_token)
    snippet = SNIPPET_BUILDERS[dialect](broker, base_topic, rec.id)
    return AgentConfig(dialect=dialect, broker=broker, base_topic=base_topic, printer_id=rec.id, snippet=snippet)
