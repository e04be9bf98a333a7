"""Commands from printbridge (its docs/mqtt.md) run on OctoPrint's printer, and acked truthfully. Pure: the printer
is reached through the small `PrinterControl` interface, which the plugin implements with OctoPrint's.

An ack is `ok: true` only when OctoPrint accepted the command and entered the state asked for (Pausing or
Paused; Resuming or Printing; Cancelling or Operational) within `ack_bound_s`, well below printbridge's
command timeout (5 s by default): a resume that re-heats the nozzle is acked as soon as it is Resuming,
not when printing starts again. Otherwise `ok: false` with the reason. Each `cmd_id` is acted on once; a
repeated command gets the first ack again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Callable, Protocol

log = logging.getLogger("octoprint.plugins.printbridge.commands")

ACK_BOUND_S = 3.0
SEEN_COMMANDS_KEPT = 1000

# OctoPrint's state ids (printer.get_state_id()).
_RUNNING = frozenset({"PRINTING", "STARTING", "RESUMING"})
_PAUSED = frozenset({"PAUSED", "PAUSING"})
EXPECTED_STATES: dict[str, frozenset[str]] = {
    "pause": frozenset({"PAUSING", "PAUSED"}),
    "resume": frozenset({"RESUMING", "PRINTING"}),
    "cancel": frozenset({"CANCELLING", "OPERATIONAL"}),
}
_VERBS = {"pause": "pause", "resume": "resume", "cancel": "cancel the print"}


class PrinterControl(Protocol):
    def state_id(self) -> str: ...

    def state_text(self) -> str: ...

    def pause(self, args: Mapping[str, Any]) -> None: ...

    def resume(self) -> None: ...

    def cancel(self) -> None: ...


class StateWatch:
    """Wakes command handling when OctoPrint's state may have changed (it also polls, as events lag)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()

    def changed(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_until(self, predicate: Callable[[], bool], timeout: float, poll_s: float = 0.02) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._changed:
                self._changed.wait(min(poll_s, remaining))
        return True


def refusal(cmd: str, state_id: str) -> str | None:
    """Why `cmd` cannot run in OctoPrint's state `state_id`, or None when it can."""
    if cmd == "pause":
        if state_id in _RUNNING:
            return None
        return "already paused" if state_id in _PAUSED else "not printing"
    if cmd == "resume":
        if state_id == "PAUSED":
            return None
        return "not paused" if state_id in _RUNNING or state_id == "PAUSING" else "not printing"
    if cmd == "cancel":
        if state_id in _RUNNING or state_id in _PAUSED:
            return None
        return "already cancelling" if state_id == "CANCELLING" else "not printing"
    return f"unknown command {cmd!r}"


def decode_command(payload: bytes) -> dict[str, Any] | None:
    """The command as a dict, or None (logged) when it is not one."""
    try:
        command = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        log.warning("dropped a command that is not JSON: %s", exc)
        return None
    if (
        not isinstance(command, dict)
        or not isinstance(command.get("cmd_id"), str)
        or not command["cmd_id"]
        or not isinstance(command.get("cmd"), str)
    ):
        log.warning("dropped a command without cmd_id and cmd: %.200r", payload)
        return None
    if not isinstance(command.get("args"), dict):
        command["args"] = {}
    return command


class CommandHandler:
    """Runs commands one at a time (call `handle` from one thread, never OctoPrint's event thread)."""

    def __init__(self, printer: PrinterControl, watch: StateWatch, ack_bound_s: float = ACK_BOUND_S) -> None:
        self._printer = printer
        self._watch = watch
        self._ack_bound_s = ack_bound_s
        self._acks: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def handle(self, payload: bytes) -> dict[str, Any] | None:
        """The ack to publish for this command payload (None for a payload that is not a command)."""
        command = decode_command(payload)
        if command is None:
            return None
        cmd_id, cmd = command["cmd_id"], command["cmd"]
        known = self._acks.get(cmd_id)
        if known is not None:
            log.info("%s %s again: acked again, not run again", cmd, cmd_id)
            return known
        error = self._run(cmd, command["args"])
        ack = {"cmd_id": cmd_id, "ok": error is None, "error": error}
        self._acks[cmd_id] = ack
        while len(self._acks) > SEEN_COMMANDS_KEPT:
            self._acks.popitem(last=False)
        log.info("%s from %s (%s): %s", cmd, command.get("initiator"), cmd_id, error or "ok")
        return ack

    def _run(self, cmd: str, args: Mapping[str, Any]) -> str | None:
        printer = self._printer
        reason = refusal(cmd, printer.state_id())
        if reason is not None:
            return reason
        try:
            if cmd == "pause":
                printer.pause(args)
            elif cmd == "resume":
                printer.resume()
            else:
                printer.cancel()
        except Exception as exc:  # OctoPrint's own refusal, in its words
            log.warning("OctoPrint refused %s: %s", cmd, exc)
            return f"OctoPrint: {exc}" if str(exc) else f"OctoPrint: {type(exc).__name__}"
        expected = EXPECTED_STATES[cmd]
        if self._watch.wait_until(lambda: printer.state_id() in expected, self._ack_bound_s):
            return None
        return f"OctoPrint did not {_VERBS[cmd]}: state is {printer.state_text()}"
