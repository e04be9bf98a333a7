"""The `printbridge` dialect: the MQTT protocol printbridge's own agents speak (docs/mqtt.md).

An agent publishes its Obico status message on `B/printers/{id}/status`, `online`/`offline` on
`availability`, JPEG bytes on `snapshot`, and acks on `ack`; a detector publishes frames on `detection`.
Commands go to `command` as `{"cmd_id", "cmd", "args", "initiator", "ts"}` and are answered on `ack`
by `cmd_id` (with MQTT 5 they also carry Response Topic and Correlation Data).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.dialects.base import BrokerPermission, CommandNotSent, CommandRequest, Dialect
from bridge.domain import detection
from bridge.domain.inputs import (
    Availability,
    CommandReply,
    DetectionFrame,
    Input,
    PayloadError,
    Snapshot,
    StatusUpdate,
)
from bridge.domain.models import PrinterRecord
from bridge.mqtt.link import NotConnected
from bridge.mqtt.payloads import (
    AgentMessage,
    Command,
    decode_ack,
    decode_agent_message,
    decode_availability,
    encoder,
)
from bridge.mqtt.topics import Topics

STATUS, AVAILABILITY, SNAPSHOT, DETECTION, ACK = "status", "availability", "snapshot", "detection", "ack"
INBOUND = frozenset({STATUS, AVAILABILITY, SNAPSHOT, DETECTION, ACK})


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _event_filename(msg: AgentMessage) -> str | None:
    if msg.event is not None and isinstance(msg.event.data, dict):
        return _str_or_none(msg.event.data.get("name"))
    return None


def decode_frame(payload: bytes) -> DetectionFrame:
    try:
        return DetectionFrame(detection.parse_frame(payload))
    except ValueError as exc:
        raise PayloadError(f"detection: {exc}") from None


def printer_permissions(t: Topics, printer_id: int) -> list[BrokerPermission]:
    """Publish its own inbound leaves, subscribe its own command and remote_status."""
    return [
        BrokerPermission("publish", t.status(printer_id)),
        BrokerPermission("publish", t.availability(printer_id)),
        BrokerPermission("publish", t.snapshot(printer_id)),
        BrokerPermission("publish", t.detection(printer_id)),
        BrokerPermission("publish", t.ack(printer_id)),
        BrokerPermission("subscribe", t.command(printer_id)),
        BrokerPermission("subscribe", t.remote_status(printer_id)),
    ]


class PrintbridgeDialect(Dialect):
    name = "printbridge"
    clears_silently = frozenset({AVAILABILITY})

    def subscriptions(self) -> list[str]:
        return [self.ctx.topics.printer("+", leaf) for leaf in sorted(INBOUND)]

    def accepts(self, subtopic: str) -> bool:
        return subtopic in INBOUND

    @classmethod
    def broker_permissions(cls, topics: Topics, printer_id: int) -> list[BrokerPermission]:
        return printer_permissions(topics, printer_id)

    def decode(self, rec: PrinterRecord, subtopic: str, payload: bytes, retained: bool) -> Sequence[Input]:
        if subtopic == STATUS:
            return (self._status(payload, retained),)
        if subtopic == AVAILABILITY:
            return (Availability(decode_availability(payload)),)
        if subtopic == ACK:
            ack = decode_ack(payload)
            return (CommandReply(ack.cmd_id, ack.ok, ack.error),)
        if subtopic == SNAPSHOT:
            return (Snapshot(payload),)
        if subtopic == DETECTION:
            return (decode_frame(payload),)
        raise PayloadError(f"not a {self.name} topic: {subtopic}")

    @staticmethod
    def _status(payload: bytes, retained: bool) -> StatusUpdate:
        msg, status, settings = decode_agent_message(payload)
        agent = settings.agent if settings is not None else None
        return StatusUpdate(
            status=status,
            status_raw=bytes(msg.status) if status is not None else None,
            settings_raw=bytes(msg.settings) if settings is not None else None,
            agent_name=_str_or_none(agent.name) if agent else None,
            agent_version=_str_or_none(agent.version) if agent else None,
            current_print_ts=msg.current_print_ts,
            event=msg.event.event_type if msg.event is not None else None,
            filename=_event_filename(msg),
            retained=retained,
        )

    async def send_command(self, rec: PrinterRecord, request: CommandRequest) -> None:
        t = self.ctx.topics
        payload = encoder.encode(
            Command(
                cmd_id=request.cmd_id, cmd=request.cmd, args=request.args, initiator=request.initiator, ts=request.ts
            )
        )
        try:
            await self.ctx.publisher.publish(
                t.command(rec.id),
                payload,
                qos=1,
                response_topic=t.ack(rec.id),
                correlation=request.cmd_id.encode(),
                timeout=self.ctx.command_timeout_s,
            )
        except (NotConnected, TimeoutError) as exc:
            raise CommandNotSent(str(exc) or "no answer from the broker") from exc
