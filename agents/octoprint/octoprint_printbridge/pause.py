"""Pause and resume G-code as Obico's OctoPrint agent sends it, through OctoPrint's script hook. Pure.

A printbridge pause carries `args` (`retract`, `lift_z`, `tools_off`, `bed_off`). Before asking OctoPrint to
pause, the plugin prepares two scripts: after the pause, retract and lift in relative mode, then turn the
heaters off; before the resume, heat again (waiting), lower and unretract. OctoPrint asks for them through
the `octoprint.comm.protocol.scripts` hook (`afterPrintPaused`, `beforePrintResumed`); each is used once.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

_POSITIONING = re.compile(r"^G9[01]\b", re.IGNORECASE)
_EXTRUDER_MODE = re.compile(r"^M8[23]\b", re.IGNORECASE)


def _amount(args: Mapping[str, Any], key: str) -> float:
    value = args.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        return 0.0
    return float(min(value, 1000.0))


def _target(temps: Mapping[str, Any], heater: str) -> float | None:
    value = temps.get(heater)
    if not isinstance(value, Mapping):
        return None
    target, offset = value.get("target"), value.get("offset") or 0
    if not isinstance(target, (int, float)) or not target > 0:
        return None
    return float(target) + float(offset)


class PauseSequence:
    """The scripts for the next pause and resume. Thread-safe: the MQTT side prepares, OctoPrint's
    communication thread asks for them and tells which positioning modes the print uses."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pause_script: list[str] = []
        self.resume_script: list[str] = []
        self._positioning = "G90"
        self._extruder_mode = "M82"

    def track_sent(self, gcode_line: str) -> None:
        """Remember the print's positioning and extruder modes, restored after the relative moves."""
        line = gcode_line.strip()
        with self._lock:
            if _POSITIONING.match(line):
                self._positioning = line[:3].upper()
            elif _EXTRUDER_MODE.match(line):
                self._extruder_mode = line[:3].upper()

    def prepare(self, args: Mapping[str, Any], temps: Mapping[str, Any], tool_count: int = 1) -> None:
        retract, lift_z = _amount(args, "retract"), _amount(args, "lift_z")
        pause: list[str] = []
        resume: list[str] = []
        with self._lock:
            if retract or lift_z:
                pause = ["G91", "M83"]
                if retract:
                    pause.append(f"G1 E-{retract:g}")
                if lift_z:
                    pause.append(f"G1 Z{lift_z:g}")
                pause += [self._positioning, self._extruder_mode]
                resume = ["G91", "M83"]
                if lift_z:
                    resume.append(f"G1 Z-{lift_z:g}")
                if retract:
                    resume.append(f"G1 E{retract:g}")
                resume += [self._positioning, self._extruder_mode]
            if args.get("tools_off") is True:
                for tool in range(max(tool_count, 1)):
                    target = _target(temps, f"tool{tool}")
                    if target is None:
                        continue
                    pause.append(f"M104 T{tool} S0" if tool_count > 1 else "M104 S0")
                    resume.insert(0, f"M109 T{tool} S{target:g}" if tool_count > 1 else f"M109 S{target:g}")
            if args.get("bed_off") is True:
                target = _target(temps, "bed")
                if target is not None:
                    pause.append("M140 S0")
                    resume.insert(0, f"M190 S{target:g}")
            self.pause_script, self.resume_script = pause, resume

    def reset(self) -> None:
        """Forget the scripts (the print ended): a later pause from OctoPrint's own UI gets none."""
        with self._lock:
            self.pause_script, self.resume_script = [], []

    def script_hook(self, script_type: str, script_name: str) -> tuple[list[str], list[str]] | None:
        """What OctoPrint's `octoprint.comm.protocol.scripts` hook returns: (prefix, suffix) or None."""
        if script_type != "gcode":
            return None
        with self._lock:
            if script_name == "afterPrintPaused" and self.pause_script:
                script, self.pause_script = self.pause_script, []
                return [], script
            if script_name == "beforePrintResumed" and self.resume_script:
                script, self.resume_script = self.resume_script, []
                return script, []
        return None
