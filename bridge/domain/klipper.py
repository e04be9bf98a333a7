"""Klipper's printer state as Moonraker reports it, and what the bridge makes of it. Pure: no I/O, time passed in.

Moonraker publishes one full snapshot of the configured printer objects when Klippy becomes ready, then only
the fields that changed. `merge_status` keeps the full state; `build_status` maps it into the status shape
Obico's agents send (SPEC 5.2: OctoPrint's state texts and flags, progress in percent, temperatures), and
`print_update` derives the print's life cycle (`current_print_ts` and the print event) from state transitions,
as Obico's Klipper agent (moonraker-obico) does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# The printer objects and fields the bridge needs (`status_objects` of Moonraker's [mqtt] section, and the
# `printer.objects.query` the bridge sends when it needs the whole state at once).
STATUS_OBJECTS: dict[str, tuple[str, ...]] = {
    "webhooks": ("state", "state_message"),
    "print_stats": ("state", "filename", "total_duration", "print_duration", "message"),
    "virtual_sdcard": ("progress", "is_active"),
    "pause_resume": ("is_paused",),
    "extruder": ("temperature", "target"),
    "heater_bed": ("temperature", "target"),
}

# Klipper heater object -> the temperature key Obico's agents use.
HEATERS = {"extruder": "tool0", "heater_bed": "bed"}

ACTIVE = frozenset({"printing", "paused"})  # print_stats.state while a print is under way
PRINT_STATES = frozenset({"standby", "printing", "paused", "complete", "cancelled", "error"})
SAME_PRINT_SKEW_S = 20.0  # as ingest: a start time this close, same file, is the same print

KlipperState = dict[str, dict[str, Any]]

_NUMBER = "number"
_FIELD_TYPES: dict[tuple[str, str], tuple[str, ...]] = {
    ("webhooks", "state"): ("str",),
    ("webhooks", "state_message"): ("str",),
    ("print_stats", "state"): ("str",),
    ("print_stats", "filename"): ("str", "null"),
    ("print_stats", "message"): ("str", "null"),
    ("print_stats", "total_duration"): (_NUMBER,),
    ("print_stats", "print_duration"): (_NUMBER,),
    ("virtual_sdcard", "progress"): (_NUMBER,),
    ("virtual_sdcard", "is_active"): ("bool",),
    ("pause_resume", "is_paused"): ("bool",),
    ("extruder", "temperature"): (_NUMBER, "null"),
    ("extruder", "target"): (_NUMBER, "null"),
    ("heater_bed", "temperature"): (_NUMBER, "null"),
    ("heater_bed", "target"): (_NUMBER, "null"),
}


class KlipperStateError(ValueError):
    """A status message that is not what Moonraker sends; the message says which part."""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return _NUMBER if math.isfinite(value) else "non-finite number"
    if isinstance(value, str):
        return "str"
    return type(value).__name__


def check_status(status: Any) -> KlipperState:
    """Validate a `status` object (a snapshot or a delta) completely; raise KlipperStateError naming the
    first wrong part. Objects and fields the bridge does not read are kept but not checked."""
    if not isinstance(status, dict):
        raise KlipperStateError("status: expected an object")
    for name, fields in status.items():
        if not isinstance(fields, dict):
            raise KlipperStateError(f"status.{name}: expected an object")
        for key, value in fields.items():
            allowed = _FIELD_TYPES.get((name, key))
            if allowed is not None and _kind(value) not in allowed:
                raise KlipperStateError(f"status.{name}.{key}: expected {' or '.join(allowed)}, not {_kind(value)}")
        if name == "print_stats" and "state" in fields and fields["state"] not in PRINT_STATES:
            raise KlipperStateError(f"status.print_stats.state: unknown state {fields['state']!r}")
    return status


def merge_status(state: KlipperState, delta: KlipperState) -> KlipperState:
    """The full state after `delta` (a checked snapshot or delta): a new object, `state` is left as it was."""
    merged = dict(state)
    for name, fields in delta.items():
        merged[name] = {**merged.get(name, {}), **fields}
    return merged


def _get(state: KlipperState, name: str, key: str, default: Any = None) -> Any:
    return state.get(name, {}).get(key, default)


def klippy_state(state: KlipperState) -> str:
    """webhooks.state: ready, startup, shutdown, error (or `unknown` before any)."""
    value = _get(state, "webhooks", "state")
    return value if isinstance(value, str) else "unknown"


def print_state(state: KlipperState) -> str | None:
    value = _get(state, "print_stats", "state")
    return value if isinstance(value, str) else None


def is_reachable(state: KlipperState, klippy_connected: bool) -> bool:
    """Whether the printer has a status to show: Klippy connected and past its start-up. Otherwise it is
    offline, as Obico's Klipper agent reports it (no status, print unknown)."""
    return klippy_connected and klippy_state(state) in ("ready", "shutdown", "error")


def _first_line(text: Any) -> str:
    return str(text or "").strip().splitlines()[0] if str(text or "").strip() else ""


def state_text_and_flags(state: KlipperState) -> tuple[str, dict[str, bool]]:
    """OctoPrint's state text and flags for a reachable Klipper."""
    flags = dict.fromkeys(
        ("operational", "printing", "paused", "cancelling", "pausing", "error", "ready", "closedOrError"), False
    )
    kstate = klippy_state(state)
    if kstate != "ready":  # shutdown or error: Klipper must be restarted
        flags.update(error=True, closedOrError=True)
        message = _first_line(_get(state, "webhooks", "state_message")) or f"Klipper {kstate}"
        return f"Error: {message}", flags
    pstate = print_state(state)
    paused_flag = _get(state, "pause_resume", "is_paused") is True
    flags["operational"] = True
    if pstate == "printing" and paused_flag:
        flags["pausing"] = True
        return "Pausing", flags
    if pstate == "printing":
        flags["printing"] = True
        return "Printing", flags
    if pstate == "paused":
        flags["paused"] = True
        return "Paused", flags
    if pstate == "error":
        flags.update(error=True, ready=True)
        message = _first_line(_get(state, "print_stats", "message")) or "print failed"
        return f"Error: {message}", flags
    flags["ready"] = True
    return "Operational", flags


def _number(value: Any) -> float | None:
    kind = _kind(value)
    return float(value) if kind == _NUMBER else None


def time_left(state: KlipperState) -> float | None:
    """Obico's Klipper agent's estimate: the print time so far scaled by the progress made, minus itself."""
    progress = _number(_get(state, "virtual_sdcard", "progress"))
    printed = _number(_get(state, "print_stats", "print_duration"))
    if progress is None or printed is None or progress <= 0.001:
        return None
    return max(printed / progress - printed, 0.0)


def _round_or_none(value: float | None, digits: int | None = None) -> float | int | None:
    if value is None:
        return None
    return round(value) if digits is None else round(value, digits)


def build_status(state: KlipperState, now: float) -> dict[str, Any]:
    """The SPEC 5.2 status of a reachable Klipper (see `is_reachable`)."""
    text, flags = state_text_and_flags(state)
    filename = _get(state, "print_stats", "filename")
    filename = filename.rsplit("/", 1)[-1] if isinstance(filename, str) and filename else None
    has_job = filename is not None
    progress = _number(_get(state, "virtual_sdcard", "progress"))
    total = _number(_get(state, "print_stats", "total_duration"))
    active = print_state(state) in ACTIVE
    temperatures: dict[str, dict[str, float | None]] = {}
    for heater, key in HEATERS.items():
        if heater in state:
            temperatures[key] = {
                "actual": _round_or_none(_number(_get(state, heater, "temperature")), 2),
                "target": _number(_get(state, heater, "target")),
            }
    return {
        "_ts": now,
        "state": {"text": text, "flags": flags},
        "job": {"file": {"name": filename}},
        "progress": {
            "completion": _round_or_none(progress * 100, 2) if has_job and progress is not None else None,
            "printTime": _round_or_none(total) if has_job else None,
            "printTimeLeft": _round_or_none(time_left(state)) if active else None,
        },
        "temperatures": temperatures,
    }


@dataclass(frozen=True, slots=True)
class PrintUpdate:
    """What a status change means for the print: `current_print_ts` (> 0 a print under way, -1 none, None
    unknown), the agent event to report (SPEC 5.2 names) and the file it concerns."""

    current_print_ts: float | None
    event: str | None
    filename: str | None


def print_start_ts(state: KlipperState, now: float, open_ts: float | None, open_filename: str | None) -> float:
    """A print's start time, constant for the whole print: `now - total_duration` (Klipper counts it from the
    start, pauses included), or the open print's own start time when this is that print (same file, close
    enough), so that a bridge restarted mid-print finds the print it already knows."""
    total = _number(_get(state, "print_stats", "total_duration")) or 0.0
    start = round(now - total, 3)  # ms: two prints a second apart are two prints
    filename = job_filename(state)
    if open_ts is not None and filename == open_filename and abs(open_ts - start) <= SAME_PRINT_SKEW_S:
        return open_ts
    return start


def job_filename(state: KlipperState) -> str | None:
    filename = _get(state, "print_stats", "filename")
    return filename.rsplit("/", 1)[-1] if isinstance(filename, str) and filename else None


def print_update(
    before: KlipperState | None,
    after: KlipperState,
    now: float,
    open_ts: float | None,
    open_filename: str | None,
) -> PrintUpdate:
    """The life cycle of the print from Klipper's state before and after a status message.

    `before` is None when the bridge knew nothing (it started, or Moonraker sent a new snapshot); `open_ts` and
    `open_filename` describe the print the bridge has open (None: none). A print opens when print_stats.state
    becomes printing or paused; it ends as Klipper says: complete (PrintDone), cancelled (PrintCancelled),
    error (PrintFailed), or standby without either (PrintCancelled: the print did not complete). A Klipper
    shutdown ends it as failed; while Klippy starts up nothing is known.
    """
    filename = job_filename(after)
    now_state = print_state(after)
    prev_state = print_state(before) if before is not None else None
    kstate = klippy_state(after)
    if kstate in ("shutdown", "error"):  # Klipper must restart: a print under way is lost
        return PrintUpdate(-1, "PrintFailed" if open_ts is not None else None, filename or open_filename)
    if kstate != "ready":
        return PrintUpdate(None, None, filename)
    if now_state in ACTIVE:
        if prev_state in ACTIVE and open_ts is not None:
            ts = open_ts  # the same print all along
        else:
            ts = print_start_ts(after, now, open_ts, open_filename)
        event = None
        if prev_state not in ACTIVE and (before is not None or open_ts is None):
            event = "PrintStarted"
        elif prev_state == "printing" and now_state == "paused":
            event = "PrintPaused"
        elif prev_state == "paused" and now_state == "printing":
            event = "PrintResumed"
        return PrintUpdate(ts, event, filename)
    if now_state is None:
        return PrintUpdate(None, None, filename)
    if open_ts is None:
        return PrintUpdate(-1, None, filename)
    ending = {"complete": "PrintDone", "error": "PrintFailed"}.get(now_state, "PrintCancelled")
    return PrintUpdate(-1, ending, filename or open_filename)
