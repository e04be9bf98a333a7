"""A Bambu printer's reports, merged into its full state and mapped to the agent message every dialect
produces (SPEC 5.2: `status` in OctoPrint's shape, `current_print_ts`, `event`). Pure: the clock is passed in.

P1 and A1 printers send only the fields that changed (`print.command == "push_status"` deltas); X1 printers
send everything every time; both send everything after `pushing.pushall`. Merging every report into the
last known state serves both. The same `print` object also carries the echo of a command (its `command`
is then the command's, with `sequence_id`, `result` and `reason`): echoes are replies, not state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgspec

from bridge.domain.inputs import StatusUpdate

# A print stopped by the user ends in FAILED with this print_error (ha-bambulab's data): a cancel, not a failure.
CANCELLED_PRINT_ERROR = 50348044
ACTIVE_STATES = frozenset({"PREPARE", "RUNNING", "PAUSE"})
STATUS_COMMAND = "push_status"

_decoder = msgspec.json.Decoder(dict[str, Any])


class ReportError(ValueError):
    """A report that is not a JSON object of the documented shape."""


@dataclass(frozen=True, slots=True)
class Reply:
    """The printer's echo of a request: `sequence_id` is the request's, `result` lower-cased or None when
    the firmware left it out (it sometimes does)."""

    sequence_id: str
    command: str
    result: str | None
    reason: str | None


def decode_report(payload: bytes) -> dict[str, Any]:
    try:
        report = _decoder.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"not a JSON object: {exc}") from None
    for key, value in report.items():
        if not isinstance(value, dict):
            raise ReportError(f"{key}: expected an object")
    return report


def replies(report: dict[str, Any]) -> list[Reply]:
    """The command echoes in a report (any `{type: {"command", "sequence_id", ...}}` but a status push)."""
    out = []
    for body in report.values():
        command = body.get("command")
        sequence_id = body.get("sequence_id")
        if not isinstance(command, str) or command == STATUS_COMMAND or sequence_id is None:
            continue
        result = body.get("result")
        reason = body.get("reason")
        out.append(
            Reply(
                sequence_id=str(sequence_id),
                command=command,
                result=result.strip().lower() if isinstance(result, str) else None,
                reason=reason if isinstance(reason, str) and reason else None,
            )
        )
    return out


def merge(state: dict[str, Any], delta: dict[str, Any]) -> None:
    """Merge a status delta into `state` in place: objects recursively, everything else replaced."""
    for key, value in delta.items():
        old = state.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            merge(old, value)
        else:
            state[key] = value


def status_delta(report: dict[str, Any]) -> dict[str, Any] | None:
    """The status part of a report, or None when it holds none (an echo, a version answer, a log line)."""
    body = report.get("print")
    if body is None or body.get("command", STATUS_COMMAND) != STATUS_COMMAND:
        return None
    return {k: v for k, v in body.items() if k not in ("command", "sequence_id", "msg")}


# -- mapping to the agent message ----------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """Bambu sends some numbers as strings ("gcode_start_time": "1716904799")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _int(value: Any) -> int:
    number = _number(value)
    return int(number) if number is not None else 0


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def print_errors(state: dict[str, Any]) -> list[dict[str, Any]]:
    """`print_error` and the HMS list as errors: `{"source", "code"}` with the code in the hex form the
    vendor's wiki uses (print_error `0300_400C`, HMS `0300_0100_0001_0001`)."""
    errors: list[dict[str, Any]] = []
    code = _int(state.get("print_error"))
    if code:
        errors.append({"source": "print_error", "code": f"{code >> 16:04X}_{code & 0xFFFF:04X}", "value": code})
    hms = state.get("hms")
    if isinstance(hms, list):
        for entry in hms:
            if isinstance(entry, dict):
                attr, value = _int(entry.get("attr")), _int(entry.get("code"))
                hex_code = f"{attr >> 16:04X}_{attr & 0xFFFF:04X}_{value >> 16:04X}_{value & 0xFFFF:04X}"
                errors.append({"source": "hms", "code": hex_code, "attr": attr, "value": value})
    return errors


def _flags(*, printing: bool, paused: bool, error: bool, ready: bool) -> dict[str, bool]:
    return {
        "operational": True,
        "printing": printing,
        "paused": paused,
        "cancelling": False,
        "pausing": False,
        "error": error,
        "ready": ready,
        "closedOrError": error,
    }


def state_and_flags(gcode_state: str, print_error: int) -> tuple[str, dict[str, bool]]:
    """gcode_state → OctoPrint's state text and flags (SPEC 10: one shape whatever the dialect)."""
    if gcode_state == "RUNNING":
        return "Printing", _flags(printing=True, paused=False, error=False, ready=False)
    if gcode_state == "PREPARE":
        return "Starting", _flags(printing=True, paused=False, error=False, ready=False)
    if gcode_state == "PAUSE":
        return "Paused", _flags(printing=False, paused=True, error=False, ready=False)
    if gcode_state == "FAILED" and print_error not in (0, CANCELLED_PRINT_ERROR):
        text = f"Error: print failed (print_error {print_error >> 16:04X}_{print_error & 0xFFFF:04X})"
        return text, _flags(printing=False, paused=False, error=True, ready=False)
    # IDLE, FINISH, a cancelled print (FAILED with the cancel code, or once print_error is cleared), or a
    # state this bridge does not know (SLICING, INIT): the printer is there and takes no print of ours.
    return "Operational", _flags(printing=False, paused=False, error=False, ready=True)


def build_status(state: dict[str, Any], now: float) -> dict[str, Any] | None:
    """The SPEC 5.2 `status` object of a merged state; None until the state has a `gcode_state`."""
    gcode_state = _text(state.get("gcode_state"))
    if gcode_state is None:
        return None
    text, flags = state_and_flags(gcode_state, _int(state.get("print_error")))
    active = gcode_state in ACTIVE_STATES
    started = _number(state.get("gcode_start_time"))
    remaining = _number(state.get("mc_remaining_time"))
    percent = _number(state.get("mc_percent"))
    return {
        "_ts": now,
        "state": {"text": text, "flags": flags},
        "job": {"file": {"name": file_name(state)}},
        "progress": {
            "completion": percent if active or gcode_state == "FINISH" else None,
            "printTime": max(0.0, now - started) if active and started else None,
            "printTimeLeft": int(remaining * 60) if active and remaining is not None else None,
        },
        "temperatures": {
            "tool0": {
                "actual": _number(state.get("nozzle_temper")),
                "target": _number(state.get("nozzle_target_temper")),
            },
            "bed": {"actual": _number(state.get("bed_temper")), "target": _number(state.get("bed_target_temper"))},
        },
        "gcode_state": gcode_state,
        "errors": print_errors(state),
    }


def file_name(state: dict[str, Any]) -> str | None:
    return _text(state.get("subtask_name")) or _text(state.get("gcode_file"))


# -- print lifecycle -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Lifecycle:
    """Turns gcode_state transitions into the print's identity (`current_print_ts`) and events.

    The print's ts is the printer's `gcode_start_time` when it gives one, else the time the bridge first saw
    the print; a print the bridge already has open when it first hears from the printer (a restart or a
    reconnect mid-print) keeps its ts. Pause and resume need an observed transition; an end is also
    reported when the first state seen is an end, so that a print that ended while the bridge was away is
    closed as it ended."""

    gcode_state: str | None = None
    print_ts: float | None = None

    def step(
        self, state: dict[str, Any], now: float, open_print: tuple[float, str | None] | None
    ) -> tuple[float | None, str | None]:
        """(`current_print_ts`, or None when unknown; the event type or None) for the state after a report.
        `open_print` is the (ts, filename) of the print the bridge has open, if any."""
        new = _text(state.get("gcode_state"))
        if new is None:
            return None, None
        old, self.gcode_state = self.gcode_state, new
        if new in ACTIVE_STATES:
            if old is None or old not in ACTIVE_STATES or self.print_ts is None:
                hint = open_print if old is None else None
                self.print_ts = self._identify(state, now, hint)
            if old == "RUNNING" and new == "PAUSE":
                return self.print_ts, "PrintPaused"
            if old == "PAUSE" and new == "RUNNING":
                return self.print_ts, "PrintResumed"
            return self.print_ts, None
        self.print_ts = None
        if old is not None and old not in ACTIVE_STATES:
            return -1, None  # still not printing
        if new == "FINISH":
            return -1, "PrintDone"
        if new == "FAILED":
            return -1, "PrintCancelled" if _int(state.get("print_error")) == CANCELLED_PRINT_ERROR else "PrintFailed"
        return -1, None  # IDLE: the print is closed as finished unless it was cancelled

    @staticmethod
    def _identify(state: dict[str, Any], now: float, open_print: tuple[float, str | None] | None) -> float:
        name = file_name(state)
        if open_print is not None and (open_print[1] is None or name is None or open_print[1] == name):
            return open_print[0]
        started = _number(state.get("gcode_start_time"))
        return started if started else now


def build_message(
    state: dict[str, Any], lifecycle: Lifecycle, now: float, open_print: tuple[float, str | None] | None
) -> dict[str, Any] | None:
    """The SPEC 5.2 agent message for the state after a report (None until a `gcode_state` is known)."""
    status = build_status(state, now)
    if status is None:
        return None
    current_print_ts, event = lifecycle.step(state, now, open_print)
    message: dict[str, Any] = {"status": status}
    if current_print_ts is not None:
        message["current_print_ts"] = current_print_ts
    if event is not None:
        message["event"] = {"event_type": event, "data": {"name": file_name(state)}}
    return message


_encoder = msgspec.json.Encoder()
AGENT_NAME = "Bambu Lab (LAN mode)"
_SETTINGS = _encoder.encode({"agent": {"name": AGENT_NAME, "version": None}, "webcams": []})


def to_update(message: dict[str, Any], *, with_settings: bool = False) -> StatusUpdate:
    """An agent message as the normalised input ingest applies (`with_settings`: name the agent too)."""
    status = message["status"]
    event = message.get("event")
    return StatusUpdate(
        status=status,
        status_raw=_encoder.encode(status),
        settings_raw=_SETTINGS if with_settings else None,
        agent_name=AGENT_NAME if with_settings else None,
        current_print_ts=message.get("current_print_ts"),
        event=event["event_type"] if event else None,
        filename=event["data"]["name"] if event else None,
    )


def connection_error_update(error: str, now: float) -> StatusUpdate:
    """The status of a printer the bridge cannot use (credentials or certificate refused), as OctoPrint
    shows a printer it cannot connect to: `Error: …`, not operational, so that the reason is seen where the
    status is (REST, Home Assistant) and not only in the log."""
    flags = _flags(printing=False, paused=False, error=True, ready=False)
    flags["operational"] = False
    status = {"_ts": now, "state": {"text": f"Error: {error}", "flags": flags}, "errors": []}
    return StatusUpdate(status=status, status_raw=_encoder.encode(status))
