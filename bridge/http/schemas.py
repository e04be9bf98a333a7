"""Response shapes as the OpenAPI document describes them.

The handlers send pre-encoded JSON (the agent's status passes through verbatim), so these Structs exist
for the schema: they mirror `bridge.domain.views` field for field, with the agent's JSON as objects.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from bridge.domain.views import Pic, Print


class PrinterDoc(msgspec.Struct):
    id: int
    name: str
    created_at: datetime
    dialect: str
    action_on_failure: Literal["PAUSE", "NONE"]
    watching_enabled: bool
    not_watching_reason: str | None
    tools_off_on_pause: bool
    bed_off_on_pause: bool
    retract_on_pause: float
    lift_z_on_pause: float
    detective_sensitivity: float
    min_timelapse_secs_on_finish: int
    min_timelapse_secs_on_cancel: int
    archived_at: datetime | None
    agent_name: str | None
    agent_version: str | None
    auth_token: str
    pic: Pic | None
    status: dict[str, Any] | None
    settings: dict[str, Any]
    current_print: Print | None
    normalized_p: float


class ActionResultDoc(msgspec.Struct):
    succeeded: bool
    printer: PrinterDoc
    error: str | None


class CommandDoc(msgspec.Struct):
    cmd_id: str
    cmd: str
    args: dict[str, Any]
    initiator: str
    print_id: int | None
    sent_at: str
    outcome: Literal["acked", "refused", "timeout", "not_sent"] | None
    error: str | None
    latency_ms: float | None


class Health(msgspec.Struct):
    mqtt: Literal["connected", "disconnected"]
    db: Literal["ok", "error"]


class ErrorDoc(msgspec.Struct):
    detail: str
