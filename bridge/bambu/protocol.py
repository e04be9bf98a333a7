"""Requests to a Bambu printer and how their outcome is judged. Pure.

A request carries the bridge's command id as `sequence_id` and is published at QoS 1 (OpenBambuAPI mqtt.md:
pause, resume and stop are "sent with QoS of 1 for higher priority"). The printer echoes the request on its
report topic with the same `sequence_id` and usually a `result` ("success"/"failed", in any case); the echo
alone proves little, so an action succeeds only when `gcode_state` then reaches the state asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from bridge.bambu.report import ACTIVE_STATES, Reply

REPORT_TOPIC = "device/{serial}/report"
REQUEST_TOPIC = "device/{serial}/request"

# The bridge's command → the printer's `print.command`.
PRINT_COMMANDS = {"pause": "pause", "resume": "resume", "cancel": "stop"}

_encoder = msgspec.json.Encoder()


def report_topic(serial: str) -> str:
    return REPORT_TOPIC.format(serial=serial)


def request_topic(serial: str) -> str:
    return REQUEST_TOPIC.format(serial=serial)


def encode_print_command(cmd: str, sequence_id: str) -> bytes:
    """`{"print": {"sequence_id", "command": "pause"|"resume"|"stop", "param": ""}}`."""
    return _encoder.encode({"print": {"sequence_id": sequence_id, "command": PRINT_COMMANDS[cmd], "param": ""}})


def encode_pushall(sequence_id: str) -> bytes:
    return _encoder.encode(
        {"pushing": {"sequence_id": sequence_id, "command": "pushall", "version": 1, "push_target": 1}}
    )


def refusal(cmd: str, gcode_state: str | None) -> str | None:
    """Why `cmd` makes no sense in the known state (decided before sending, as an agent would refuse it)."""
    if gcode_state is None:
        return None
    if cmd == "pause" and gcode_state == "PAUSE":
        return "already paused"
    if cmd == "resume" and gcode_state != "PAUSE":
        return "not paused"
    return None


def confirmed(cmd: str, gcode_state: str | None) -> bool:
    """Whether `gcode_state` is the state `cmd` asked for."""
    if gcode_state is None:
        return False
    if cmd == "pause":
        return gcode_state == "PAUSE"
    if cmd == "resume":
        return gcode_state == "RUNNING"
    return gcode_state not in ACTIVE_STATES  # cancel: FAILED (stopped), or already IDLE/FINISH


_VERBS = {"pause": "pause", "resume": "resume", "cancel": "cancel"}


def not_confirmed(cmd: str, gcode_state: str | None) -> str:
    """The error when the state did not follow: "printer did not pause: state is RUNNING"."""
    return f"printer did not {_VERBS[cmd]}: state is {gcode_state or 'unknown'}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a reply says: None while it says nothing final (no `result`, or success: wait for the state)."""

    failed: bool
    error: str | None


def judge_reply(reply: Reply) -> Verdict | None:
    if reply.result is None or reply.result == "success":
        return None
    return Verdict(True, f"refused by the printer: {reply.reason or reply.result}")
