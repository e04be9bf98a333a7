"""What Moonraker publishes over MQTT and answers to the bridge's requests, decoded and validated completely
(the JSON-RPC framing is `bridge.mqtt.jsonrpc`). Every decoder raises PayloadError naming the part that is
wrong. Pure."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from bridge.domain.klipper import KlipperState, KlipperStateError, check_status
from bridge.mqtt.payloads import MAX_JSON_BYTES, PayloadError


class _ServerStatus(msgspec.Struct):
    server: Literal["online", "offline"]


class _KlipperStatus(msgspec.Struct):
    """A `klipper/status` message, and the result of `printer.objects.query`."""

    eventtime: float
    status: dict[str, Any]


class ServerInfo(msgspec.Struct):
    """The part of `server.info`'s result the bridge reads."""

    klippy_connected: bool
    klippy_state: str
    moonraker_version: str | None = None


_server_status = msgspec.json.Decoder(_ServerStatus)
_klipper_status = msgspec.json.Decoder(_KlipperStatus)
_DECODE_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError)


def _decode(decoder: msgspec.json.Decoder[Any], payload: bytes, what: str) -> Any:
    if len(payload) > MAX_JSON_BYTES:
        raise PayloadError(f"{what}: payload of {len(payload)} bytes is over the {MAX_JSON_BYTES}-byte limit")
    try:
        return decoder.decode(payload)
    except _DECODE_ERRORS as exc:
        raise PayloadError(f"{what}: {exc}") from None


def _convert(value: Any, kind: type[Any], what: str) -> Any:
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise PayloadError(f"{what}: {exc}") from None


def _checked(status: dict[str, Any], what: str) -> KlipperState:
    try:
        return check_status(status)
    except KlipperStateError as exc:
        raise PayloadError(f"{what}: {exc}") from None


def decode_server_status(payload: bytes) -> bool:
    """`moonraker/status`: whether Moonraker is online."""
    status: _ServerStatus = _decode(_server_status, payload, "moonraker/status")
    return status.server == "online"


def decode_klipper_status(payload: bytes) -> KlipperState:
    """`klipper/status`: the snapshot or delta of Klipper's objects it carries."""
    message: _KlipperStatus = _decode(_klipper_status, payload, "klipper/status")
    return _checked(message.status, "klipper/status")


def decode_query_result(result: Any) -> KlipperState:
    """The result of `printer.objects.query`: Klipper's objects as they are now."""
    message: _KlipperStatus = _convert(result, _KlipperStatus, "printer.objects.query")
    return _checked(message.status, "printer.objects.query")


def decode_server_info(result: Any) -> ServerInfo:
    info: ServerInfo = _convert(result, ServerInfo, "server.info")
    return info
