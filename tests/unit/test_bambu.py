"""The pure Bambu modules: merging reports, mapping to SPEC 5.2, the print lifecycle, requests and replies,
and the pushall rate limit."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from bridge.bambu.protocol import (
    confirmed,
    encode_print_command,
    encode_pushall,
    judge_reply,
    not_confirmed,
    refusal,
    report_topic,
    request_topic,
)
from bridge.bambu.pushall import PushallLimiter
from bridge.bambu.report import (
    CANCELLED_PRINT_ERROR,
    Lifecycle,
    Reply,
    ReportError,
    build_message,
    build_status,
    decode_report,
    merge,
    print_errors,
    replies,
    state_and_flags,
    status_delta,
)

NOW = 1_716_905_000.0


def full_state(**changes: Any) -> dict[str, Any]:
    """The fields of OpenBambuAPI's pushall example that the bridge reads, printing a benchy."""
    state: dict[str, Any] = {
        "gcode_state": "RUNNING",
        "mc_percent": 42,
        "mc_remaining_time": 17,
        "subtask_name": "benchy",
        "gcode_file": "/data/Metadata/plate_1.gcode",
        "gcode_start_time": "1716904799",
        "nozzle_temper": 219.5,
        "nozzle_target_temper": 220.0,
        "bed_temper": 59.8,
        "bed_target_temper": 60.0,
        "print_error": 0,
        "hms": [],
        "lights_report": [{"node": "chamber_light", "mode": "on"}],
        "upgrade_state": {"status": "IDLE", "progress": "0"},
    }
    state.update(changes)
    return state


# -- reports -------------------------------------------------------------------------------------------------


def test_decode_report_refuses_what_is_not_an_object_of_objects() -> None:
    assert decode_report(b'{"print": {"command": "push_status"}}') == {"print": {"command": "push_status"}}
    for bad in (b"", b"[]", b"{", b'{"print": 3}', b"\xff"):
        with pytest.raises(ReportError):
            decode_report(bad)


def test_merge_replaces_values_and_merges_objects() -> None:
    state = full_state()
    merge(state, {"mc_percent": 43, "upgrade_state": {"progress": "5"}, "hms": [{"attr": 1, "code": 2}]})
    assert state["mc_percent"] == 43
    assert state["upgrade_state"] == {"status": "IDLE", "progress": "5"}
    assert state["hms"] == [{"attr": 1, "code": 2}]
    assert state["nozzle_temper"] == 219.5  # a delta leaves the rest alone


def test_status_delta_is_only_a_status_push() -> None:
    push = {"print": {"command": "push_status", "sequence_id": "2021", "mc_percent": 5, "msg": 1}}
    assert status_delta(push) == {"mc_percent": 5}
    assert status_delta({"print": {"command": "pause", "sequence_id": "7", "result": "success"}}) is None
    assert status_delta({"info": {"command": "get_version"}}) is None
    assert status_delta({"print": {"mc_percent": 6}}) == {"mc_percent": 6}  # no command: a status


def test_replies_with_and_without_result() -> None:
    report = {
        "print": {"command": "pause", "sequence_id": "abc", "result": "SUCCESS", "reason": "", "param": ""},
        "pushing": {"command": "pushall", "sequence_id": 7},
    }
    assert replies(report) == [
        Reply("abc", "pause", "success", None),
        Reply("7", "pushall", None, None),
    ]
    assert replies({"print": {"command": "push_status", "sequence_id": "9"}}) == []
    assert replies({"print": {"command": "stop"}}) == []  # no sequence_id: nothing to match


# -- mapping --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gcode_state", "print_error", "text", "printing", "paused", "error", "ready"),
    [
        ("IDLE", 0, "Operational", False, False, False, True),
        ("PREPARE", 0, "Starting", True, False, False, False),
        ("RUNNING", 0, "Printing", True, False, False, False),
        ("PAUSE", 0, "Paused", False, True, False, False),
        ("FINISH", 0, "Operational", False, False, False, True),
        ("FAILED", CANCELLED_PRINT_ERROR, "Operational", False, False, False, True),
        ("FAILED", 0x07008011, "Error: print failed (print_error 0700_8011)", False, False, True, False),
        ("SLICING", 0, "Operational", False, False, False, True),
    ],
)
def test_state_and_flags(
    gcode_state: str, print_error: int, text: str, printing: bool, paused: bool, error: bool, ready: bool
) -> None:
    got_text, flags = state_and_flags(gcode_state, print_error)
    assert got_text == text
    assert (flags["printing"], flags["paused"], flags["error"], flags["ready"]) == (printing, paused, error, ready)
    assert flags["closedOrError"] == error and flags["operational"] is True


def test_build_status_in_the_shape_of_spec_5_2() -> None:
    status = build_status(full_state(), NOW)
    assert status == {
        "_ts": NOW,
        "state": {"text": "Printing", "flags": state_and_flags("RUNNING", 0)[1]},
        "job": {"file": {"name": "benchy"}},
        "progress": {"completion": 42.0, "printTime": NOW - 1716904799, "printTimeLeft": 17 * 60},
        "temperatures": {"tool0": {"actual": 219.5, "target": 220.0}, "bed": {"actual": 59.8, "target": 60.0}},
        "gcode_state": "RUNNING",
        "errors": [],
    }
    assert msgspec.json.decode(msgspec.json.encode(status)) == status


def test_build_status_falls_back_to_gcode_file_and_waits_for_a_state() -> None:
    status = build_status(full_state(subtask_name="", gcode_start_time="0"), NOW)
    assert status is not None
    assert status["job"]["file"]["name"] == "/data/Metadata/plate_1.gcode"
    assert status["progress"]["printTime"] is None
    idle = build_status(full_state(gcode_state="IDLE"), NOW)
    assert idle is not None and idle["progress"] == {"completion": None, "printTime": None, "printTimeLeft": None}
    assert build_status({"mc_percent": 3}, NOW) is None


def test_print_error_and_hms_are_errors() -> None:
    state = full_state(print_error=0x07008011, hms=[{"attr": 0x03000100, "code": 0x00010001}, "junk"])
    assert print_errors(state) == [
        {"source": "print_error", "code": "0700_8011", "value": 0x07008011},
        {"source": "hms", "code": "0300_0100_0001_0001", "attr": 0x03000100, "value": 0x00010001},
    ]


# -- lifecycle -------------------------------------------------------------------------------------------------


def run(lifecycle: Lifecycle, state: dict[str, Any], open_print: tuple[float, str | None] | None = None) -> Any:
    message = build_message(state, lifecycle, NOW, open_print)
    assert message is not None
    return message.get("current_print_ts"), (message.get("event") or {}).get("event_type")


def test_a_print_from_start_to_finish() -> None:
    life = Lifecycle()
    assert run(life, full_state(gcode_state="IDLE")) == (-1, None)
    assert run(life, full_state(gcode_state="PREPARE")) == (1716904799.0, None)
    assert run(life, full_state(gcode_state="RUNNING")) == (1716904799.0, None)
    assert run(life, full_state(gcode_state="PAUSE")) == (1716904799.0, "PrintPaused")
    assert run(life, full_state(gcode_state="RUNNING")) == (1716904799.0, "PrintResumed")
    assert run(life, full_state(gcode_state="FINISH")) == (-1, "PrintDone")
    assert run(life, full_state(gcode_state="FINISH")) == (-1, None)
    assert run(life, full_state(gcode_state="IDLE")) == (-1, None)


def test_a_stopped_print_is_a_cancel_and_an_error_a_failure() -> None:
    life = Lifecycle()
    run(life, full_state())
    assert run(life, full_state(gcode_state="FAILED", print_error=CANCELLED_PRINT_ERROR)) == (-1, "PrintCancelled")
    assert run(life, full_state(gcode_state="FAILED", print_error=0)) == (-1, None)  # the code is cleared later
    run(life, full_state(gcode_state="RUNNING", gcode_start_time="1716909999"))
    assert run(life, full_state(gcode_state="FAILED", print_error=0x07008011)) == (-1, "PrintFailed")


def test_without_a_start_time_the_print_is_identified_by_when_it_was_seen() -> None:
    life = Lifecycle()
    run(life, full_state(gcode_state="IDLE"))
    assert run(life, full_state(gcode_start_time="0")) == (NOW, None)


def test_a_print_already_open_keeps_its_ts_after_a_reconnect() -> None:
    life = Lifecycle()  # a new connection (or a restarted bridge) sees the print running
    assert run(life, full_state(gcode_start_time="0"), open_print=(1716900000.0, "benchy")) == (1716900000.0, None)
    other = Lifecycle()  # another file: a different print
    assert run(other, full_state(), open_print=(1716900000.0, "cube")) == (1716904799.0, None)


def test_an_end_seen_first_closes_the_open_print_as_it_ended() -> None:
    assert run(Lifecycle(), full_state(gcode_state="FINISH")) == (-1, "PrintDone")
    cancelled = full_state(gcode_state="FAILED", print_error=CANCELLED_PRINT_ERROR)
    assert run(Lifecycle(), cancelled) == (-1, "PrintCancelled")
    assert run(Lifecycle(), full_state(gcode_state="IDLE")) == (-1, None)


def test_an_event_names_the_file() -> None:
    life = Lifecycle()
    run(life, full_state())
    message = build_message(full_state(gcode_state="PAUSE"), life, NOW, None)
    assert message is not None
    assert message["event"] == {"event_type": "PrintPaused", "data": {"name": "benchy"}}


# -- requests and replies -------------------------------------------------------------------------------------


def test_requests() -> None:
    assert report_topic("01S00A000000001") == "device/01S00A000000001/report"
    assert request_topic("01S00A000000001") == "device/01S00A000000001/request"
    assert msgspec.json.decode(encode_print_command("cancel", "c0ffee")) == {
        "print": {"sequence_id": "c0ffee", "command": "stop", "param": ""}
    }
    assert msgspec.json.decode(encode_print_command("pause", "1"))["print"]["command"] == "pause"
    assert msgspec.json.decode(encode_pushall("2")) == {
        "pushing": {"sequence_id": "2", "command": "pushall", "version": 1, "push_target": 1}
    }


def test_refusals_from_the_known_state() -> None:
    assert refusal("pause", "PAUSE") == "already paused"
    assert refusal("resume", "RUNNING") == "not paused"
    assert refusal("resume", "IDLE") == "not paused"
    assert refusal("pause", "RUNNING") is None
    assert refusal("resume", "PAUSE") is None
    assert refusal("cancel", "PAUSE") is None
    assert refusal("pause", None) is None


def test_confirmation_by_state() -> None:
    assert confirmed("pause", "PAUSE") and not confirmed("pause", "RUNNING")
    assert confirmed("resume", "RUNNING") and not confirmed("resume", "PAUSE")
    assert confirmed("cancel", "FAILED") and confirmed("cancel", "IDLE") and not confirmed("cancel", "RUNNING")
    assert not confirmed("pause", None)
    assert not_confirmed("pause", "RUNNING") == "printer did not pause: state is RUNNING"


def test_judging_replies_case_insensitively() -> None:
    assert judge_reply(Reply("1", "pause", "success", None)) is None
    assert judge_reply(Reply("1", "pause", None, None)) is None  # no result: wait for the state
    failed = decode_report(b'{"print": {"command": "pause", "sequence_id": "1", "result": "FAILED", "reason": "busy"}}')
    verdict = judge_reply(replies(failed)[0])
    assert verdict is not None and verdict.failed and verdict.error == "refused by the printer: busy"
    no_reason = judge_reply(Reply("1", "pause", "failed", None))
    assert no_reason is not None and no_reason.error == "refused by the printer: failed"


# -- pushall ---------------------------------------------------------------------------------------------------


def test_pushall_at_most_every_five_minutes_per_printer() -> None:
    now = [1000.0]
    limiter = PushallLimiter(lambda: now[0])
    assert limiter.may_ask("A")
    assert not limiter.may_ask("A")  # a reconnect a moment later
    assert limiter.may_ask("B")  # another printer
    now[0] += 299.0
    assert not limiter.may_ask("A")
    now[0] += 1.0
    assert limiter.may_ask("A")
    limiter.forget("A")
    assert limiter.may_ask("A")


def test_setup_text_says_what_to_enable_and_never_the_code() -> None:
    from bridge.domain.bambu_setup import broker_url, build_setup_text

    text = build_setup_text("192.168.1.50", "01P00A000000001", 8883)
    assert "LAN mode" in text and "access code" in text
    assert "mqtts://192.168.1.50:8883" in text and "01P00A000000001" in text
    assert broker_url("printer.lan") == "mqtts://printer.lan:8883"
