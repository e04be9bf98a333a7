"""Wire payloads of the MQTT contract (docs/mqtt.md) as msgspec Structs.

Incoming payloads tolerate unknown fields; outgoing ones are exact. Decoders are created once.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from bridge.domain.inputs import PayloadError as PayloadError  # what every decoder here raises

MAX_JSON_BYTES = 256 * 1024


# msgspec raises UnicodeDecodeError (not DecodeError) for invalid UTF-8 inside a JSON string.
DECODE_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError)


# -- agent -> bridge -------------------------------------------------------------------------------


class AgentEvent(msgspec.Struct):
    event_type: str
    data: dict[str, Any] | None = None


class AgentMessage(msgspec.Struct):
    """The `status` topic payload: what an Obico agent sends over its websocket (docs/mqtt.md).

    `status` and `settings` are kept as raw JSON so that they are stored and served verbatim.
    """

    status: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)  # empty: absent
    settings: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    current_print_ts: int | float | None = None
    event: AgentEvent | None = None


class AgentInfo(msgspec.Struct):
    name: str | None = None
    version: str | None = None


class SettingsView(msgspec.Struct):
    agent: AgentInfo | None = None


class Ack(msgspec.Struct):
    cmd_id: str
    ok: bool
    error: str | None = None


# -- bridge -> agent -------------------------------------------------------------------------------


class Command(msgspec.Struct, omit_defaults=False):
    cmd_id: str
    cmd: str
    args: dict[str, Any]
    initiator: str
    ts: float


class RemoteStatus(msgspec.Struct):
    should_watch: bool


# -- consumers -> bridge (docs/mqtt.md) ----------------------------------------------------------------


class ActionRequest(msgspec.Struct):
    request_id: str | None = None
    mute: bool | None = None


class ActionResponse(msgspec.Struct, omit_defaults=False):
    request_id: str | None
    succeeded: bool
    error: str | None


_agent_decoder = msgspec.json.Decoder(AgentMessage)
_settings_decoder = msgspec.json.Decoder(SettingsView)
_ack_decoder = msgspec.json.Decoder(Ack)
_action_decoder = msgspec.json.Decoder(ActionRequest)
_object_decoder = msgspec.json.Decoder(dict[str, Any])
encoder = msgspec.json.Encoder()


def _check_size(payload: bytes) -> None:
    if len(payload) > MAX_JSON_BYTES:
        raise PayloadError(f"payload of {len(payload)} bytes is over the {MAX_JSON_BYTES}-byte limit")


def _present(raw: msgspec.Raw) -> bool:
    """A part that is there and not JSON null."""
    return len(raw) > 0 and bytes(raw).strip() != b"null"


def decode_agent_message(payload: bytes) -> tuple[AgentMessage, dict[str, Any] | None, SettingsView | None]:
    """Decode and validate an agent message; also return its status decoded and its settings' agent part."""
    _check_size(payload)
    try:
        msg = _agent_decoder.decode(payload)
    except DECODE_ERRORS as exc:
        raise PayloadError(f"agent message: {exc}") from None
    status = settings_view = None
    try:
        if _present(msg.status):
            status = _object_decoder.decode(msg.status)
        if _present(msg.settings):
            # decoded whole once: skipping unknown fields would not check their strings' UTF-8, and the
            # settings are stored and served verbatim
            _object_decoder.decode(msg.settings)
            settings_view = _settings_decoder.decode(msg.settings)
    except DECODE_ERRORS as exc:
        raise PayloadError(f"agent message: {exc}") from None
    if status is not None:
        ts = status.get("_ts")
        if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts)):
            raise PayloadError("status._ts: expected a number")
    ts = msg.current_print_ts
    if ts is not None and (isinstance(ts, bool) or not math.isfinite(ts) or (ts <= 0 and ts != -1)):
        raise PayloadError("current_print_ts: expected a positive timestamp or -1")
    return msg, status, settings_view


def decode_ack(payload: bytes) -> Ack:
    _check_size(payload)
    try:
        return _ack_decoder.decode(payload)
    except DECODE_ERRORS as exc:
        raise PayloadError(f"ack: {exc}") from None


def decode_availability(payload: bytes) -> bool:
    text = payload.strip()
    if text == b"online":
        return True
    if text == b"offline":
        return False
    raise PayloadError("availability: expected 'online' or 'offline'")


def decode_action(name: str, payload: bytes) -> ActionRequest:
    """Decode an action payload (docs/mqtt.md): empty, PRESS, ON/OFF (mute only), or a JSON object."""
    _check_size(payload)
    text = payload.strip()
    if text in (b"", b"PRESS"):
        return ActionRequest()
    if name == "mute" and text in (b"ON", b"OFF"):
        return ActionRequest(mute=text == b"ON")
    try:
        request = _action_decoder.decode(text)
    except DECODE_ERRORS as exc:
        raise PayloadError(f"action {name}: {exc}") from None
    if request.mute is not None and name != "mute":
        raise PayloadError(f"action {name}: 'mute' is only for the mute action")
    return request
