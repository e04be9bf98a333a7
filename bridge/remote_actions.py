"""Actions asked for over MQTT (`B/printers/{id}/action/{name}`, by Home Assistant or any consumer): the
same logic as the REST actions with initiator `homeassistant`, answered on `.../action/{name}/response`."""

from __future__ import annotations

import asyncio
from typing import Any

from bridge.actions import ActionOutcome, Actions
from bridge.domain.models import PrinterRecord
from bridge.mqtt.link import MqttLink
from bridge.mqtt.payloads import ActionResponse, PayloadError, decode_action, encoder
from bridge.mqtt.topics import Topics
from bridge.state.db import StoreError


class RemoteActions:
    def __init__(self, actions: Actions, link: MqttLink, topics: Topics) -> None:
        self.actions = actions
        self.link = link
        self.topics = topics
        self._tasks: set[asyncio.Task[Any]] = set()  # answered before the bridge stops

    def handle(self, rec: PrinterRecord, name: str, payload: bytes) -> None:
        """Decode the request and run it in the background; a malformed one is answered and re-raised."""
        try:
            request = decode_action(name, payload)
        except PayloadError as exc:
            self._respond(rec.id, name, None, ActionOutcome(False, str(exc)))
            raise
        task = asyncio.get_running_loop().create_task(self._run(rec, name, request.request_id, request.mute))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, rec: PrinterRecord, name: str, request_id: str | None, mute: bool | None) -> None:
        try:
            if name in ("pause", "resume", "cancel"):
                outcome = await self.actions.command(rec, name, "homeassistant")
            elif name == "mute":
                outcome = self.actions.mute(rec, True if mute is None else mute)
            else:
                outcome = self.actions.acknowledge(rec, None)
        except StoreError as exc:
            outcome = ActionOutcome(False, f"database error: {exc}")
        self._respond(rec.id, name, request_id, outcome)

    def _respond(self, printer_id: int, name: str, request_id: str | None, outcome: ActionOutcome) -> None:
        body = encoder.encode(ActionResponse(request_id=request_id, succeeded=outcome.succeeded, error=outcome.error))
        self.link.publish_nowait(self.topics.action_response(printer_id, name), body)

    async def drain(self, timeout: float) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout)
