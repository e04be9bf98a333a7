"""Every MQTT topic string printbridge uses is built or parsed here, and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

ACTION_NAMES = frozenset({"pause", "resume", "cancel", "mute", "acknowledge_alert"})
# Leaves that printer agents (and detectors, and Home Assistant) publish and the bridge consumes.
INBOUND_LEAVES = frozenset({"status", "availability", "snapshot", "detection", "ack"})


class TopicError(ValueError):
    """A topic that must not be published to (wildcards, empty levels)."""


def check_publishable(topic: str) -> str:
    if not topic or "+" in topic or "#" in topic or "\x00" in topic:
        raise TopicError(f"not a publishable topic: {topic!r}")
    return topic


def check_base(base: str) -> str:
    """A base topic is one or more non-empty levels without wildcards."""
    if not base or base.startswith("/") or base.endswith("/") or "//" in base:
        raise TopicError(f"invalid base topic {base!r}")
    if any(c in base for c in "+#\x00") or base.startswith("$"):
        raise TopicError(f"invalid base topic {base!r}: no wildcards or leading $")
    return base


@dataclass(frozen=True, slots=True)
class PrinterTopic:
    """A parsed `B/printers/{id}/...` topic."""

    printer_id: int
    leaf: str
    action: str | None = None  # for `action/{name}`


@dataclass(frozen=True, slots=True)
class Topics:
    """The topic tree below one base topic (`B`), plus Home Assistant's under its prefix."""

    base: str
    ha_prefix: str = "homeassistant"

    # -- bridge ------------------------------------------------------------------------------------
    @property
    def bridge_state(self) -> str:
        return f"{self.base}/bridge/state"

    # -- per printer -------------------------------------------------------------------------------
    def printer(self, printer_id: int, leaf: str) -> str:
        return f"{self.base}/printers/{printer_id}/{leaf}"

    def status(self, printer_id: int) -> str:
        return self.printer(printer_id, "status")

    def availability(self, printer_id: int) -> str:
        return self.printer(printer_id, "availability")

    def snapshot(self, printer_id: int) -> str:
        return self.printer(printer_id, "snapshot")

    def detection(self, printer_id: int) -> str:
        return self.printer(printer_id, "detection")

    def command(self, printer_id: int) -> str:
        return self.printer(printer_id, "command")

    def ack(self, printer_id: int) -> str:
        return self.printer(printer_id, "ack")

    def remote_status(self, printer_id: int) -> str:
        return self.printer(printer_id, "remote_status")

    def state(self, printer_id: int) -> str:
        return self.printer(printer_id, "state")

    def event(self, printer_id: int) -> str:
        return self.printer(printer_id, "event")

    def action(self, printer_id: int, name: str) -> str:
        return self.printer(printer_id, f"action/{name}")

    def action_response(self, printer_id: int, name: str) -> str:
        return self.printer(printer_id, f"action/{name}/response")

    def action_filter(self, printer_id: int | str = "+") -> str:
        """The filter matching this printer's action topics (used in broker ACLs too)."""
        return f"{self.base}/printers/{printer_id}/action/#"

    # -- what the bridge subscribes to -------------------------------------------------------------
    def subscriptions(self) -> list[str]:
        subs = [f"{self.base}/printers/+/{leaf}" for leaf in sorted(INBOUND_LEAVES)]
        subs.append(f"{self.base}/printers/+/action/+")
        subs.append(self.ha_status)
        return subs

    def parse(self, topic: str) -> PrinterTopic | None:
        """Parse an inbound printer topic; None for anything that is not one we consume."""
        prefix = f"{self.base}/printers/"
        if not topic.startswith(prefix):
            return None
        parts = topic[len(prefix) :].split("/")
        if not parts[0].isdigit() or len(parts[0]) > 12:
            return None
        printer_id = int(parts[0])
        if len(parts) == 2 and parts[1] in INBOUND_LEAVES:
            return PrinterTopic(printer_id, parts[1])
        if len(parts) == 3 and parts[1] == "action" and parts[2] in ACTION_NAMES:
            return PrinterTopic(printer_id, "action", parts[2])
        return None

    # -- Home Assistant ----------------------------------------------------------------------------
    @property
    def ha_status(self) -> str:
        return f"{self.ha_prefix}/status"

    def ha_device_config(self, printer_id: int) -> str:
        return f"{self.ha_prefix}/device/printbridge_{printer_id}/config"

    def ha_entity_config(self, component: str, printer_id: int, object_id: str) -> str:
        return f"{self.ha_prefix}/{component}/printbridge_{printer_id}/{object_id}/config"
