"""Every MQTT topic string printbridge uses is built or parsed here, and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

ACTION_NAMES = frozenset({"pause", "resume", "cancel", "mute", "acknowledge_alert"})


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
    """A parsed `B/printers/{id}/...` topic: `leaf` is what follows the id (`status`, `moonraker/status`),
    or `action` for an action topic."""

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

    @property
    def anonymous_probe(self) -> str:
        """Where the bridge tries an anonymous publish, to tell whether the broker allows one."""
        return f"{self.base}/bridge/anonymous-probe"

    @property
    def everything(self) -> str:
        """The filter matching every topic below the base."""
        return f"{self.base}/#"

    @property
    def ha_everything(self) -> str:
        """The filter matching every topic below Home Assistant's prefix."""
        return f"{self.ha_prefix}/#"

    # -- per printer -------------------------------------------------------------------------------
    def printer(self, printer_id: int | str, leaf: str) -> str:
        """`B/printers/{id}/{leaf}`; `printer_id` "+" makes the filter matching every printer."""
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

    # -- what the bridge subscribes to (besides each printer dialect's topics) -------------------------
    def subscriptions(self) -> list[str]:
        return [f"{self.base}/printers/+/action/+", self.ha_status]

    def parse(self, topic: str) -> PrinterTopic | None:
        """Parse an inbound printer topic; None for anything that is not below a printer's id, or an
        action that does not exist. Which other leaves are consumed is the printer's dialect's business."""
        prefix = f"{self.base}/printers/"
        if not topic.startswith(prefix):
            return None
        head, _, leaf = topic[len(prefix) :].partition("/")
        if not head.isdigit() or len(head) > 12 or not leaf:
            return None
        if leaf.startswith("action/"):
            name = leaf[len("action/") :]
            return PrinterTopic(int(head), "action", name) if name in ACTION_NAMES else None
        return PrinterTopic(int(head), leaf)

    # -- Home Assistant ----------------------------------------------------------------------------
    @property
    def ha_status(self) -> str:
        return f"{self.ha_prefix}/status"

    def ha_device_config(self, printer_id: int) -> str:
        return f"{self.ha_prefix}/device/printbridge_{printer_id}/config"

    def ha_entity_config(self, component: str, printer_id: int, object_id: str) -> str:
        return f"{self.ha_prefix}/{component}/printbridge_{printer_id}/{object_id}/config"
