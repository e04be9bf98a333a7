"""The wire decoders of bridge.mqtt.payloads: what they accept, and that everything else is a PayloadError."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from bridge.mqtt.payloads import (
    MAX_JSON_BYTES,
    Ack,
    ActionRequest,
    ActionResponse,
    Command,
    PayloadError,
    RemoteStatus,
    decode_ack,
    decode_action,
    decode_agent_message,
    decode_availability,
    encoder,
)
from tests.support.agent import agent_message

# -- agent messages -------------------------------------------------------------------------------------


def test_spec_example_decodes_with_status_and_settings_verbatim() -> None:
    doc = agent_message(ts=1716904915, event="PrintStarted")
    payload = encoder.encode(doc)
    msg, status, settings = decode_agent_message(payload)
    assert status == doc["status"]
    assert msgspec.json.decode(bytes(msg.status)) == doc["status"]
    assert msgspec.json.decode(bytes(msg.settings)) == doc["settings"]
    assert settings is not None and settings.agent is not None
    assert (settings.agent.name, settings.agent.version) == ("octoprint_obico", "2.6.1")
    assert msg.current_print_ts == 1716904799
    assert msg.event is not None and msg.event.event_type == "PrintStarted"
    assert msg.event.data == {"name": "benchy.gcode"}


def test_unknown_fields_are_tolerated() -> None:
    payload = b'{"status": {"_ts": 1}, "extra": [1, 2], "event": {"event_type": "X", "data": null, "more": 1}}'
    msg, status, settings = decode_agent_message(payload)
    assert status == {"_ts": 1} and settings is None
    assert msg.event is not None and msg.event.event_type == "X" and msg.event.data is None


def test_absent_parts() -> None:
    msg, status, settings = decode_agent_message(b"{}")
    assert status is None and settings is None
    assert msg.current_print_ts is None and msg.event is None


def test_null_status_and_settings_are_absent() -> None:
    _, status, settings = decode_agent_message(b'{"status": null, "settings": null}')
    assert status is None and settings is None


def test_settings_without_agent() -> None:
    _, _, settings = decode_agent_message(b'{"settings": {"webcams": []}}')
    assert settings is not None and settings.agent is None


@pytest.mark.parametrize("cpt", [-1, 1716904799, 1716904799.5])
def test_valid_current_print_ts(cpt: float) -> None:
    msg, _, _ = decode_agent_message(encoder.encode({"current_print_ts": cpt}))
    assert msg.current_print_ts == cpt


@pytest.mark.parametrize("ts", [0, 1.5, 1716904915])
def test_valid_status_ts(ts: float) -> None:
    _, status, _ = decode_agent_message(encoder.encode({"status": {"_ts": ts}}))
    assert status == {"_ts": ts}


def test_status_without_ts_is_accepted() -> None:
    _, status, _ = decode_agent_message(b'{"status": {"state": {"text": "Operational"}}}')
    assert status == {"state": {"text": "Operational"}}


BAD_AGENT_MESSAGES: list[bytes] = [
    b"",
    b"not json",
    b"[1, 2]",
    b'"text"',
    b"null",
    b"42",
    b'{"status": "Printing"}',
    b'{"status": [1]}',
    b'{"status": 5}',
    b'{"settings": ["x"]}',
    b'{"settings": "x"}',
    b'{"settings": {"agent": "octoprint"}}',
    b'{"settings": {"agent": {"name": 5}}}',
    b'{"settings": {"agent": {"version": 2.6}}}',
    b'{"event": "PrintStarted"}',
    b'{"event": {}}',
    b'{"event": {"event_type": 5}}',
    b'{"event": {"event_type": "PrintStarted", "data": [1]}}',
    b'{"status": {"_ts": "1716904915"}}',
    b'{"status": {"_ts": true}}',
    b'{"status": {"_ts": [1]}}',
    b'{"current_print_ts": 0}',
    b'{"current_print_ts": -2}',
    b'{"current_print_ts": -0.5}',
    b'{"current_print_ts": "1716904799"}',
    b'{"current_print_ts": true}',
    b'{"current_print_ts": [1]}',
    b'{"status": {"_ts": 1}} trailing',
    b"\xff\xfe\x00garbage",
    b'{"status": {"_ts": 1, "state": {"text": "\xff\xfe"}}}',
    b'{"settings": {"x": "\xc3\x28"}}',
    b'{"status": {"_ts": 1}, "settings": {"agent": {"name": "ok"}}, "current_print_ts": "x"}',
]


@pytest.mark.parametrize("payload", BAD_AGENT_MESSAGES)
def test_malformed_agent_messages_raise_payload_error(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_agent_message(payload)


def test_oversized_agent_message() -> None:
    doc: dict[str, Any] = {"status": {"_ts": 1, "pad": ""}}
    base = len(encoder.encode(doc))
    doc["status"]["pad"] = "x" * (MAX_JSON_BYTES - base)
    exact = encoder.encode(doc)
    assert len(exact) == MAX_JSON_BYTES
    decode_agent_message(exact)  # exactly at the limit: fine
    doc["status"]["pad"] += "x"
    with pytest.raises(PayloadError, match="limit"):
        decode_agent_message(encoder.encode(doc))


def test_non_finite_numbers_are_rejected() -> None:
    # msgspec refuses NaN/Infinity literals: they are not JSON.
    for payload in (b'{"status": {"_ts": NaN}}', b'{"current_print_ts": Infinity}', b'{"status": {"_ts": 1e999}}'):
        with pytest.raises(PayloadError):
            decode_agent_message(payload)


# -- availability --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("payload", "expected"), [(b"online", True), (b"offline", False), (b" online\n", True)])
def test_availability(payload: bytes, expected: bool) -> None:
    assert decode_availability(payload) is expected


@pytest.mark.parametrize("payload", [b"", b"ONLINE", b"on", b"true", b'"online"', b"\xff", b"online offline"])
def test_bad_availability(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_availability(payload)


# -- acks ----------------------------------------------------------------------------------------------


def test_ack() -> None:
    assert decode_ack(b'{"cmd_id": "abc", "ok": true, "error": null}') == Ack(cmd_id="abc", ok=True, error=None)
    assert decode_ack(b'{"cmd_id": "abc", "ok": false, "error": "busy", "x": 1}') == Ack("abc", False, "busy")
    assert decode_ack(b'{"cmd_id": "abc", "ok": true}') == Ack("abc", True, None)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"nope",
        b"[]",
        b'{"ok": true}',
        b'{"cmd_id": "a"}',
        b'{"cmd_id": 5, "ok": true}',
        b'{"cmd_id": "a", "ok": "yes"}',
        b'{"cmd_id": "a", "ok": 1}',
        b'{"cmd_id": "a", "ok": true, "error": 5}',
        b'{"cmd_id": "\xff", "ok": true}',
        b"\xff",
    ],
)
def test_bad_ack(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_ack(payload)


def test_oversized_ack() -> None:
    with pytest.raises(PayloadError):
        decode_ack(encoder.encode({"cmd_id": "x" * MAX_JSON_BYTES, "ok": True}))


# -- actions (docs/mqtt.md) --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pause", "resume", "cancel", "mute", "acknowledge_alert"])
def test_press_and_empty(name: str) -> None:
    assert decode_action(name, b"") == ActionRequest()
    assert decode_action(name, b"PRESS") == ActionRequest()
    assert decode_action(name, b'{"request_id": "r1"}') == ActionRequest(request_id="r1")


def test_mute_on_off_and_json() -> None:
    assert decode_action("mute", b"ON") == ActionRequest(mute=True)
    assert decode_action("mute", b"OFF") == ActionRequest(mute=False)
    assert decode_action("mute", b'{"request_id": "r", "mute": false}') == ActionRequest(request_id="r", mute=False)


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("pause", b"ON"),
        ("resume", b"OFF"),
        ("pause", b"garbage"),
        ("pause", b"[1]"),
        ("cancel", b'{"request_id": 5}'),
        ("resume", b'{"request_id": "r", "mute": true}'),
        ("mute", b'{"mute": "yes"}'),
        ("mute", b"on"),
        ("acknowledge_alert", b"\xff\xfe"),
        ("acknowledge_alert", b'{"request_id": "\xff"}'),
    ],
)
def test_bad_actions(name: str, payload: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_action(name, payload)


# -- outgoing payloads are exact -----------------------------------------------------------------------


def test_outgoing_shapes() -> None:
    cmd = Command(cmd_id="c1", cmd="pause", args={"retract": 6.5}, initiator="api", ts=1.5)
    assert msgspec.json.decode(encoder.encode(cmd)) == {
        "cmd_id": "c1",
        "cmd": "pause",
        "args": {"retract": 6.5},
        "initiator": "api",
        "ts": 1.5,
    }
    assert encoder.encode(RemoteStatus(should_watch=True)) == b'{"should_watch":true}'
    response = ActionResponse(request_id=None, succeeded=False, error="not printing")
    assert msgspec.json.decode(encoder.encode(response)) == {
        "request_id": None,
        "succeeded": False,
        "error": "not printing",
    }
