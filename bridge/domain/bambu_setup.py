"""What a Bambu printer's owner must enable on the printer for printbridge to reach it: the `agent_config`
of a Bambu printer (SPEC 10), which has no agent and therefore no snippet to paste. Pure."""

from __future__ import annotations

# A Bambu printer's own broker in LAN mode (OpenBambuAPI mqtt.md): TLS on 8883, user `bblp`.
USERNAME = "bblp"
DEFAULT_PORT = 8883


def broker_url(host: str, port: int = DEFAULT_PORT) -> str:
    """The printer's own broker, which the bridge connects to."""
    return f"mqtts://{host}:{port}"


def build_setup_text(host: str, serial: str, port: int = DEFAULT_PORT) -> str:
    """Instructions in place of a snippet: nothing is installed on a Bambu printer; LAN mode is switched on."""
    return "\n".join(
        [
            "Nothing to install: printbridge connects to the printer's own MQTT broker.",
            "On the printer's screen, in the network settings:",
            "  1. switch on LAN mode (LAN Only); firmware that offers Developer mode there needs it on too,",
            "     or the printer ignores commands from third-party clients;",
            "  2. read the access code shown there and give it to printbridge as bambu.access_code",
            '     (PATCH /api/v1/printers/{id}/ with {"bambu": {"access_code": "..."}} after a reset).',
            f"printbridge connects to {broker_url(host, port)} as {USERNAME!r} and expects a certificate",
            f"issued to the serial {serial}; keep the printer at this address (a DHCP reservation).",
            "",
        ]
    )
