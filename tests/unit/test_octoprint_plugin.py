"""The OctoPrint plugin's logic without OctoPrint: settings, the status message, commands and their acks,
and the pause/resume G-code (agents/octoprint/octoprint_printbridge)."""

from __future__ import annotations

import json
import ssl
import threading
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from octoprint_printbridge.commands import CommandHandler, StateWatch, refusal
from octoprint_printbridge.link import _explain_connect_fail
from octoprint_printbridge.pause import PauseSequence
from octoprint_printbridge.settings import DEFAULTS, SettingsError, parse_settings
from octoprint_printbridge.status import PrintTracker, build_settings, build_status, build_temperatures

from bridge.agent.messages import StatusMessage as SimulatorMessage
from bridge.domain.agent_config import OCTOPRINT_PLUGIN_IDENTIFIER, BrokerLogin, build_octoprint_snippet
from bridge.mqtt.payloads import decode_agent_message

# -- settings -------------------------------------------------------------------------------------------


def snippet_settings(password: str = 'p"w:#\\ x') -> dict[str, Any]:
    login = BrokerLogin(url="mqtt://printers.lan:1884", username="printer-7", password=password)
    doc = yaml.safe_load(build_octoprint_snippet(login, "shop/pb", 7))
    assert list(doc) == [OCTOPRINT_PLUGIN_IDENTIFIER]
    values: dict[str, Any] = doc[OCTOPRINT_PLUGIN_IDENTIFIER]
    return values


def test_printbridges_snippet_is_settings_the_plugin_knows_and_accepts() -> None:
    values = snippet_settings()
    assert set(values) <= set(DEFAULTS)
    s = parse_settings({**DEFAULTS, **values})
    assert (s.host, s.port, s.tls, s.ca_file) == ("printers.lan", 1884, False, None)
    assert (s.printer_id, s.username, s.password, s.base_topic) == (7, "printer-7", 'p"w:#\\ x', "shop/pb")
    assert (s.status_interval_printing_s, s.status_interval_idle_s, s.snapshot_interval_s) == (10.0, 30.0, 10.0)


def test_settings_from_the_settings_page_are_strings(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    s = parse_settings(
        {
            "broker_url": " mqtts://broker.lan ",
            "ca_file": str(ca),
            "printer_id": "12",
            "password": "tok",
            "base_topic": "printbridge",
            "status_interval_printing_s": "2.5",
            "status_interval_idle_s": "60",
            "snapshot_interval_s": "0",
        }
    )
    assert (s.host, s.port, s.tls, s.ca_file, s.printer_id) == ("broker.lan", 8883, True, str(ca), 12)
    assert (s.status_interval_printing_s, s.status_interval_idle_s, s.snapshot_interval_s) == (2.5, 60.0, 0.0)
    assert s.broker == "mqtts://broker.lan:8883"


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"broker_url": ""}, "broker_url"),
        ({"broker_url": "http://h"}, "broker_url"),
        ({"broker_url": "mqtt://u:p@h"}, "broker_url"),
        ({"broker_url": "mqtt://h/path"}, "broker_url"),
        ({"broker_url": "mqtt://h:99999"}, "broker_url"),
        ({"printer_id": None}, "printer_id"),
        ({"printer_id": "seven"}, "printer_id"),
        ({"printer_id": 0}, "printer_id"),
        ({"password": ""}, "password"),
        ({"ca_file": "/nonexistent/ca.pem", "broker_url": "mqtts://h"}, "ca_file"),
        ({"ca_file": "/etc/hostname"}, "ca_file"),  # a CA with mqtt:// does nothing
        ({"base_topic": "pb/#"}, "base_topic"),
        ({"base_topic": "/pb"}, "base_topic"),
        ({"status_interval_printing_s": 0}, "status_interval_printing_s"),
        ({"status_interval_idle_s": "-1"}, "status_interval_idle_s"),
        ({"status_interval_idle_s": "soon"}, "status_interval_idle_s"),
        ({"snapshot_interval_s": -5}, "snapshot_interval_s"),
    ],
)
def test_settings_errors_name_the_setting(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(SettingsError) as info:
        parse_settings({**DEFAULTS, **snippet_settings(), **changes})
    assert str(info.value).startswith(f"{named}:"), str(info.value)


# -- the status message -----------------------------------------------------------------------------------

PRINTING_DATA: dict[str, Any] = {  # printer.get_current_data() while printing, as OctoPrint 1.11 returns it
    "state": {
        "text": "Printing",
        "flags": {
            "operational": True,
            "printing": True,
            "cancelling": False,
            "pausing": False,
            "resuming": False,
            "finishing": False,
            "closedOrError": False,
            "error": False,
            "paused": False,
            "ready": False,
            "sdReady": False,
        },
        "error": "",
    },
    "job": {
        "file": {"name": "benchy.gcode", "path": "benchy.gcode", "display": "benchy.gcode", "origin": "local"},
        "estimatedPrintTime": None,
        "user": "admin",
    },
    "progress": {
        "completion": 12.3456,
        "filepos": 1234,
        "printTime": 61,
        "printTimeLeft": 432.7,
        "printTimeLeftOrigin": "linear",
    },
    "currentZ": None,
    "offsets": {},
}
TEMPS: dict[str, Any] = {
    "tool0": {"actual": 59.8, "target": 60.0, "offset": 0},
    "bed": {"actual": 40.1, "target": 40.0, "offset": 0},
    "chamber": {"actual": None, "target": None, "offset": 0},
}


def test_status_is_the_simulators_shape() -> None:
    status = build_status(PRINTING_DATA, TEMPS, 1716904915.5)
    assert status == {
        "_ts": 1716904915.5,
        "state": {
            "text": "Printing",
            "flags": {
                "operational": True,
                "printing": True,
                "paused": False,
                "cancelling": False,
                "pausing": False,
                "error": False,
                "ready": False,
                "closedOrError": False,
            },
        },
        "job": {"file": {"name": "benchy.gcode"}},
        "progress": {"completion": 12.35, "printTime": 61, "printTimeLeft": 432},
        "temperatures": {"bed": {"actual": 40.1, "target": 40.0}, "tool0": {"actual": 59.8, "target": 60.0}},
    }
    message = PrintTracker(clock=lambda: 1716904915.5).message(
        PRINTING_DATA, TEMPS, "PrintStarted", {"name": "benchy.gcode"}, build_settings("0.1.0", [])
    )
    payload = json.dumps(message).encode()
    # exactly what `printbridge simulate` sends (its Structs forbid nothing but require every field) ...
    same = msgspec.json.decode(payload, type=SimulatorMessage)
    assert same.status.state.text == "Printing" and same.current_print_ts == 1716904915
    # ... and what the bridge accepts
    decoded, status_doc, settings_view = decode_agent_message(payload)
    assert status_doc == status and decoded.event is not None and decoded.event.event_type == "PrintStarted"
    assert settings_view is not None and settings_view.agent is not None
    assert (settings_view.agent.name, settings_view.agent.version) == ("octoprint_printbridge", "0.1.0")


def test_status_of_a_printer_octoprint_is_not_connected_to() -> None:
    status = build_status({"state": {"text": "Offline", "flags": {"closedOrError": True}}}, {}, 5.0)
    assert status["state"] == {
        "text": "Offline",
        "flags": {name: name == "closedOrError" for name in status["state"]["flags"]},
    }
    assert status["job"] == {"file": {"name": None}}
    assert status["progress"] == {"completion": None, "printTime": None, "printTimeLeft": None}
    assert status["temperatures"] == {}


def test_temperatures_keep_tools_bed_and_a_reporting_chamber_only() -> None:
    temps = {
        "tool0": {"actual": 20.5, "target": None},
        "tool1": {"actual": 21, "target": 200},
        "bed": {"actual": None, "target": 40},
        "chamber": {"actual": None, "target": None},
        "W": {"actual": 1.0, "target": 0.0},  # firmwares report odd sensors; OctoPrint keeps tools/bed/chamber
        "tool2": "broken",
    }
    assert build_temperatures(temps) == {
        "bed": {"actual": None, "target": 40.0},
        "tool0": {"actual": 20.5, "target": None},
        "tool1": {"actual": 21.0, "target": 200.0},
    }
    assert build_temperatures({"chamber": {"actual": 31.0, "target": 0}}) == {
        "chamber": {"actual": 31.0, "target": 0.0}
    }


def test_current_print_ts_follows_the_print_as_obicos_agent_keeps_it() -> None:
    now = [1000.4]
    tracker = PrintTracker(clock=lambda: now[0])
    idle = tracker.message(PRINTING_DATA, TEMPS, "PrinterStateChanged")
    assert idle["current_print_ts"] == -1 and "event" not in idle and "settings" not in idle
    started = tracker.message(PRINTING_DATA, TEMPS, "PrintStarted", {"name": "a.gcode", "size": 10, "x": [1]})
    assert started["current_print_ts"] == 1000
    assert started["event"] == {"event_type": "PrintStarted", "data": {"name": "a.gcode", "size": 10}}
    assert tracker.message(PRINTING_DATA, TEMPS)["current_print_ts"] == 1000
    done = tracker.message(PRINTING_DATA, TEMPS, "PrintDone", {"name": "a.gcode", "time": 12.5})
    assert done["current_print_ts"] == 1000  # the print's last message still names it
    assert done["event"]["event_type"] == "PrintDone"
    after = tracker.message(PRINTING_DATA, TEMPS)
    assert after["current_print_ts"] == -1
    # a second print in the same second gets a start time of its own (printbridge ignores a closed print's)
    assert tracker.message(PRINTING_DATA, TEMPS, "PrintStarted")["current_print_ts"] == 1001
    # cancel: PrintCancelled then PrintFailed, then -1
    assert tracker.message(PRINTING_DATA, TEMPS, "PrintCancelled")["current_print_ts"] == 1001
    assert tracker.message(PRINTING_DATA, TEMPS, "PrintFailed", {"reason": "cancelled"})["current_print_ts"] == 1001
    assert tracker.message(PRINTING_DATA, TEMPS)["current_print_ts"] == -1
    # every status is newer than the one before, even with a clock that stands still
    stamps = [tracker.message(PRINTING_DATA, TEMPS)["status"]["_ts"] for _ in range(3)]
    assert stamps == sorted(set(stamps)) and stamps[0] > after["status"]["_ts"]


# -- commands --------------------------------------------------------------------------------------------


class FakePrinter:
    """OctoPrint's printer as the command handler sees it: `moves` maps a call to the states it passes."""

    def __init__(self, state: str, watch: StateWatch, moves: dict[str, list[str]] | None = None) -> None:
        self.state = state
        self.watch = watch
        self.calls: list[tuple[str, Any]] = []
        self.moves = moves if moves is not None else {"pause": ["PAUSING", "PAUSED"], "resume": ["RESUMING"]}
        self.moves.setdefault("cancel", ["CANCELLING", "OPERATIONAL"])
        self.error: Exception | None = None

    def state_id(self) -> str:
        return self.state

    def state_text(self) -> str:
        return self.state.capitalize()

    def _call(self, name: str, arg: Any = None) -> None:
        self.calls.append((name, arg))
        if self.error is not None:
            raise self.error
        steps = list(self.moves.get(name, []))

        def move() -> None:  # as OctoPrint does: the state changes after the call returned
            for step in steps:
                self.state = step
                self.watch.changed()

        threading.Timer(0.01, move).start()

    def pause(self, args: Any) -> None:
        self._call("pause", dict(args))

    def resume(self) -> None:
        self._call("resume")

    def cancel(self) -> None:
        self._call("cancel")


def command(cmd: str, cmd_id: str = "c1", **args: Any) -> bytes:
    return json.dumps({"cmd_id": cmd_id, "cmd": cmd, "args": args, "initiator": "api", "ts": 1.0}).encode()


def handler_for(state: str, **kwargs: Any) -> tuple[CommandHandler, FakePrinter]:
    watch = StateWatch()
    printer = FakePrinter(state, watch, **kwargs)
    return CommandHandler(printer, watch, ack_bound_s=2.0), printer


def test_pause_resume_cancel_ack_ok_once_the_state_follows() -> None:
    handler, printer = handler_for("PRINTING")
    assert handler.handle(command("pause", "p1", retract=6.5, lift_z=2.5, tools_off=True)) == {
        "cmd_id": "p1",
        "ok": True,
        "error": None,
    }
    assert printer.calls == [("pause", {"retract": 6.5, "lift_z": 2.5, "tools_off": True})]
    printer.state = "PAUSED"
    assert handler.handle(command("resume", "r1")) == {"cmd_id": "r1", "ok": True, "error": None}
    assert handler.handle(command("cancel", "x1")) == {"cmd_id": "x1", "ok": True, "error": None}
    assert [c for c, _ in printer.calls] == ["pause", "resume", "cancel"]


def test_a_repeated_cmd_id_is_acked_again_and_not_run_again() -> None:
    handler, printer = handler_for("PRINTING")
    first = handler.handle(command("pause", "same"))
    assert first == {"cmd_id": "same", "ok": True, "error": None}
    assert handler.handle(command("pause", "same")) == first
    assert len(printer.calls) == 1
    # a new id in the new state is refused, with the reason
    assert handler.handle(command("pause", "other")) == {"cmd_id": "other", "ok": False, "error": "already paused"}


@pytest.mark.parametrize(
    ("cmd", "state", "reason"),
    [
        ("pause", "OPERATIONAL", "not printing"),
        ("pause", "OFFLINE", "not printing"),
        ("pause", "PAUSED", "already paused"),
        ("pause", "PAUSING", "already paused"),
        ("resume", "PRINTING", "not paused"),
        ("resume", "OPERATIONAL", "not printing"),
        ("cancel", "OPERATIONAL", "not printing"),
        ("cancel", "CANCELLING", "already cancelling"),
        ("reboot", "PRINTING", "unknown command 'reboot'"),
    ],
)
def test_refusals_say_why_and_touch_nothing(cmd: str, state: str, reason: str) -> None:
    handler, printer = handler_for(state)
    assert handler.handle(command(cmd)) == {"cmd_id": "c1", "ok": False, "error": reason}
    assert printer.calls == []
    assert refusal(cmd, state) == reason


def test_octoprints_own_error_is_the_reason() -> None:
    handler, printer = handler_for("PRINTING")
    printer.error = RuntimeError("Printer is not operational")
    assert handler.handle(command("pause")) == {
        "cmd_id": "c1",
        "ok": False,
        "error": "OctoPrint: Printer is not operational",
    }


def test_no_ok_when_octoprint_never_enters_the_state_asked_for() -> None:
    watch = StateWatch()
    printer = FakePrinter("PRINTING", watch, moves={"pause": []})
    handler = CommandHandler(printer, watch, ack_bound_s=0.2)
    assert handler.handle(command("pause")) == {
        "cmd_id": "c1",
        "ok": False,
        "error": "OctoPrint did not pause: state is Printing",
    }


@pytest.mark.parametrize(
    "payload",
    [b"", b"not json", b"[]", b'{"cmd": "pause"}', b'{"cmd_id": "", "cmd": "pause"}', b'{"cmd_id": "a", "cmd": 1}'],
)
def test_a_payload_that_is_not_a_command_is_dropped(payload: bytes) -> None:
    handler, printer = handler_for("PRINTING")
    assert handler.handle(payload) is None
    assert printer.calls == []


def test_state_watch_wakes_on_change_and_times_out_otherwise() -> None:
    watch = StateWatch()
    flag = threading.Event()
    threading.Timer(0.05, lambda: (flag.set(), watch.changed())).start()
    assert watch.wait_until(flag.is_set, timeout=5.0, poll_s=10.0)
    assert not watch.wait_until(lambda: False, timeout=0.05)


# -- pause and resume G-code (as Obico's agent sends it) --------------------------------------------------


def test_pause_retracts_lifts_and_turns_heaters_off_and_resume_undoes_it() -> None:
    seq = PauseSequence()
    seq.track_sent("G91")  # the print uses relative positioning and extrusion
    seq.track_sent("m83 ; comment")
    seq.prepare({"retract": 6.5, "lift_z": 2.5, "tools_off": True, "bed_off": True}, TEMPS)
    assert seq.script_hook("gcode", "beforePrintPaused") is None
    assert seq.script_hook("gcode", "afterPrintPaused") == (
        [],
        ["G91", "M83", "G1 E-6.5", "G1 Z2.5", "G91", "M83", "M104 S0", "M140 S0"],
    )
    assert seq.script_hook("gcode", "afterPrintPaused") is None  # used once
    assert seq.script_hook("gcode", "beforePrintResumed") == (
        ["M190 S40", "M109 S60", "G91", "M83", "G1 Z-2.5", "G1 E6.5", "G91", "M83"],
        [],
    )
    assert seq.script_hook("gcode", "beforePrintResumed") is None


def test_pause_without_args_sends_nothing_and_heaters_without_target_stay() -> None:
    seq = PauseSequence()
    seq.prepare({}, TEMPS)
    assert seq.script_hook("gcode", "afterPrintPaused") is None
    seq.prepare({"tools_off": True, "bed_off": True, "retract": -1, "lift_z": "2"}, {"tool0": {"target": None}})
    assert seq.script_hook("gcode", "afterPrintPaused") is None


def test_pause_with_several_tools_and_defaults_restored() -> None:
    seq = PauseSequence()
    temps = {"tool0": {"target": 200, "offset": 5}, "tool1": {"target": 0}, "tool2": {"target": 210}}
    seq.prepare({"lift_z": 1, "tools_off": True}, temps, tool_count=3)
    assert seq.pause_script == ["G91", "M83", "G1 Z1", "G90", "M82", "M104 T0 S0", "M104 T2 S0"]
    assert seq.resume_script == ["M109 T2 S210", "M109 T0 S205", "G91", "M83", "G1 Z-1", "G90", "M82"]
    seq.reset()
    assert seq.script_hook("gcode", "beforePrintResumed") is None
    assert seq.script_hook("sfx", "afterPrintPaused") is None


@pytest.mark.parametrize(
    ("exc", "says", "transient"),
    [
        (
            ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
            "Is it a TLS (mqtts://) listener?",
            False,
        ),
        (ConnectionRefusedError(111, "Connection refused"), "cannot reach the broker at mqtts://h:8883: ", True),
        (None, "cannot reach the broker at mqtts://h:8883", True),
    ],
)
def test_a_failed_connection_says_why(exc: BaseException | None, says: str, transient: bool) -> None:
    """Failures other than a refused certificate (tests/integration/test_octoprint_tls.py has those): a TLS
    handshake that fails otherwise will not mend itself; an unreachable broker may come back."""
    settings = parse_settings({**DEFAULTS, "broker_url": "mqtts://h", "printer_id": 1, "password": "p"})
    message, retrying_may_help = _explain_connect_fail(exc, settings)
    assert says in message
    assert retrying_may_help is transient
