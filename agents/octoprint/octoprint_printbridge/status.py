"""The agent message (printbridge's docs/mqtt.md) built from what OctoPrint reports. Pure: no OctoPrint import.

The shape is the one `printbridge simulate` sends: `status` with `_ts`, `state` (text and the eight flags),
`job.file.name`, `progress` (completion %, printTime, printTimeLeft) and `temperatures` (tools and bed
with `actual`/`target`); `current_print_ts` following the print; `event` when OctoPrint fired one.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from typing import Any, Callable

AGENT_NAME = "octoprint_printbridge"

FLAG_NAMES = ("operational", "printing", "paused", "cancelling", "pausing", "error", "ready", "closedOrError")

# OctoPrint events forwarded as the message's `event` (printbridge opens, pauses and closes prints by them).
FORWARDED_EVENTS = frozenset(
    {
        "PrintStarted",
        "PrintDone",
        "PrintFailed",
        "PrintCancelling",
        "PrintCancelled",
        "PrintPaused",
        "PrintResumed",
        "FilamentChange",
        "Error",
    }
)
# Events after which the state has changed: a status is published, without an `event`.
STATE_EVENTS = frozenset({"PrinterStateChanged", "Connected", "Disconnected", "FileSelected", "FileDeselected"})
# Obico's agent resets current_print_ts only after the message of these was built, so that the last
# message of a print still names it.
PRINT_END_EVENTS = frozenset({"PrintDone", "PrintFailed"})

_HEATER = re.compile(r"^(tool\d+|bed|chamber)$")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return float(value)


def _whole(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def build_temperatures(temps: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
    """Tools, bed (and a chamber only when it reports): OctoPrint always lists a chamber of nulls."""
    out: dict[str, dict[str, float | None]] = {}
    for name in sorted(temps):
        value = temps[name]
        if not _HEATER.match(name) or not isinstance(value, Mapping):
            continue
        actual, target = _number(value.get("actual")), _number(value.get("target"))
        if actual is None and target is None:
            continue
        out[name] = {"actual": actual, "target": target}
    return out


def build_status(data: Mapping[str, Any], temps: Mapping[str, Any], ts: float) -> dict[str, Any]:
    """`status` from `printer.get_current_data()` and `printer.get_current_temperatures()`."""
    state = data.get("state") or {}
    flags = state.get("flags") or {}
    job_file = (data.get("job") or {}).get("file") or {}
    progress = data.get("progress") or {}
    completion = _number(progress.get("completion"))
    return {
        "_ts": ts,
        "state": {
            "text": str(state.get("text") or "Offline"),
            "flags": {name: bool(flags.get(name, False)) for name in FLAG_NAMES},
        },
        "job": {"file": {"name": job_file.get("name")}},
        "progress": {
            "completion": None if completion is None else round(completion, 2),
            "printTime": _whole(progress.get("printTime")),
            "printTimeLeft": _whole(progress.get("printTimeLeft")),
        },
        "temperatures": build_temperatures(temps),
    }


def build_event_data(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """The event payload's plain values (name, path, origin, reason, error, time...)."""
    if not payload:
        return {}
    return {
        str(key): value for key, value in payload.items() if value is None or isinstance(value, (str, int, float, bool))
    }


class PrintTracker:
    """Builds agent messages and keeps `current_print_ts` as Obico's agent does: set on PrintStarted,
    reset to -1 after the PrintDone/PrintFailed message. Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.current_print_ts = -1
        self._last_print_ts = -1
        self._last_ts = 0.0

    def message(
        self,
        data: Mapping[str, Any],
        temps: Mapping[str, Any],
        event: str | None = None,
        payload: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            now = self._clock()
            # strictly increasing: printbridge ignores a status older than the one it holds
            ts = round(max(now, self._last_ts + 0.001), 3)
            self._last_ts = ts
            if event == "PrintStarted":
                # a new print never reuses a start time: printbridge ignores the value of a closed print
                self.current_print_ts = max(int(now), self._last_print_ts + 1)
                self._last_print_ts = self.current_print_ts
            message: dict[str, Any] = {
                "current_print_ts": self.current_print_ts,
                "status": build_status(data, temps, ts),
            }
            if settings is not None:
                message["settings"] = dict(settings)
            if event is not None and event in FORWARDED_EVENTS:
                message["event"] = {"event_type": event, "data": build_event_data(payload)}
            if event in PRINT_END_EVENTS:
                self.current_print_ts = -1
            return message


def build_settings(version: str, webcams: list[dict[str, Any]]) -> dict[str, Any]:
    return {"agent": {"name": AGENT_NAME, "version": version}, "webcams": webcams}
