"""JSON-RPC 2.0 as Moonraker speaks it over MQTT: requests on `{inst}/moonraker/api/request`, replies on the one
`{inst}/moonraker/api/response` topic that every requester shares (matched by `id`; string ids come back
unchanged). Pure: encoding and validating only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

MAX_REPLY_BYTES = 1024 * 1024  # a printer.objects.query or server.info answer is a few KiB


class RpcFormatError(ValueError):
    """A reply that is not JSON-RPC 2.0 as Moonraker sends it; the message says why."""


class _Request(msgspec.Struct, omit_defaults=True):
    jsonrpc: str
    method: str
    id: str
    params: dict[str, Any] | None = None


class _Error(msgspec.Struct):
    code: int
    message: str


class _Reply(msgspec.Struct):
    jsonrpc: str
    id: str | int | None = None
    result: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)  # empty: absent
    error: _Error | None = None


_encoder = msgspec.json.Encoder()
_reply_decoder = msgspec.json.Decoder(_Reply)
_any_decoder = msgspec.json.Decoder()
_DECODE_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError)


def encode_request(method: str, request_id: str, params: dict[str, Any] | None = None) -> bytes:
    return _encoder.encode(_Request(jsonrpc="2.0", method=method, id=request_id, params=params))


@dataclass(frozen=True, slots=True)
class RpcReply:
    """A reply: `error` None and `result` the decoded result, or `error` Moonraker's message (and `code`)."""

    id: str | int | None
    result: Any = None
    error: str | None = None
    code: int | None = None

    @property
    def ok(self) -> bool:
        """Moonraker's "ok": what pause/resume/cancel answer when Klippy ran the command."""
        return self.error is None and self.result == "ok"


def peek_id(payload: bytes) -> str | int | None:
    """The reply's `id` without validating the rest (to skip other clients' replies cheaply); None if none."""
    if len(payload) > MAX_REPLY_BYTES:
        raise RpcFormatError(f"reply of {len(payload)} bytes is over the {MAX_REPLY_BYTES}-byte limit")
    try:
        reply = _reply_decoder.decode(payload)
    except _DECODE_ERRORS as exc:
        raise RpcFormatError(f"JSON-RPC reply: {exc}") from None
    return reply.id


def decode_reply(payload: bytes) -> RpcReply:
    """Validate a reply completely: jsonrpc "2.0", exactly one of result and error."""
    if len(payload) > MAX_REPLY_BYTES:
        raise RpcFormatError(f"reply of {len(payload)} bytes is over the {MAX_REPLY_BYTES}-byte limit")
    try:
        reply = _reply_decoder.decode(payload)
        result = _any_decoder.decode(reply.result) if len(reply.result) else None
    except _DECODE_ERRORS as exc:
        raise RpcFormatError(f"JSON-RPC reply: {exc}") from None
    if reply.jsonrpc != "2.0":
        raise RpcFormatError('JSON-RPC reply: "jsonrpc" must be "2.0"')
    has_result = len(reply.result) > 0
    if has_result == (reply.error is not None):
        raise RpcFormatError("JSON-RPC reply: expected exactly one of result and error")
    if reply.error is not None:
        return RpcReply(reply.id, error=reply.error.message, code=reply.error.code)
    return RpcReply(reply.id, result=result)
