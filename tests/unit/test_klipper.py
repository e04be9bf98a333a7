"""bridge.domain.klipper: Moonraker's snapshot-then-deltas merged into Klipper's full state, the state mapped
into the SPEC 5.2 status, and the print's life cycle from Klipper's state transitions."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bridge.domain.klipper import (
    STATUS_OBJECTS,
    KlipperStateError,
    PrintUpdate,
    build_status,
    check_status,
    is_reachable,
    merge_status,
    print_start_ts,
    print_update,
    time_left,
)

NOW = 1_800_000_000.0


def klipper(
    print_state: str = "standby",
    *,
    klippy: str = "ready",
    message: str = "Printer is ready",
    filename: str = "",
    progress: float = 0.0,
    total: float = 0.0,
    printed: float = 0.0,
    paused: bool = False,
    print_message: str = "",
) -> dict[str, dict[str, Any]]:
    """A full state, as Moonraker's first snapshot has it."""
    return {
        "webhooks": {"state": klippy, "state_message": message},
        "print_stats": {
            "state": print_state,
            "filename": filename,
            "total_duration": total,
            "print_duration": printed,
            "message": print_message,
        },
        "virtual_sdcard": {"progress": progress, "is_active": print_state == "printing"},
        "pause_resume": {"is_paused": paused},
        "extruder": {"temperature": 214.567, "target": 215.0},
        "heater_bed": {"temperature": 59.9, "target": 60.0},
    }


# -- merging ----------------------------------------------------------------------------------------------


def test_a_delta_changes_only_the_fields_it_names_and_leaves_the_old_state_alone() -> None:
    full = klipper("printing", filename="benchy.gcode", progress=0.1)
    before = copy.deepcopy(full)
    merged = merge_status(full, check_status({"virtual_sdcard": {"progress": 0.2}, "extruder": {"temperature": 215}}))
    assert merged["virtual_sdcard"] == {"progress": 0.2, "is_active": True}
    assert merged["extruder"] == {"temperature": 215, "target": 215.0}
    assert merged["print_stats"] == full["print_stats"]
    assert full == before


def test_a_delta_may_bring_an_object_not_seen_before_and_unknown_fields_are_kept() -> None:
    merged = merge_status({}, check_status({"toolhead": {"homed_axes": "xyz"}, "print_stats": {"state": "paused"}}))
    assert merged == {"toolhead": {"homed_axes": "xyz"}, "print_stats": {"state": "paused"}}


@pytest.mark.parametrize(
    ("status", "names"),
    [
        ([], "status: expected an object"),
        ({"print_stats": "printing"}, "status.print_stats: expected an object"),
        ({"print_stats": {"state": 3}}, "status.print_stats.state: expected str, not number"),
        ({"print_stats": {"state": "flying"}}, "unknown state 'flying'"),
        ({"virtual_sdcard": {"progress": "half"}}, "status.virtual_sdcard.progress"),
        ({"virtual_sdcard": {"progress": True}}, "status.virtual_sdcard.progress: expected number, not bool"),
        ({"pause_resume": {"is_paused": 1}}, "status.pause_resume.is_paused"),
        ({"extruder": {"temperature": [1]}}, "status.extruder.temperature"),
        ({"print_stats": {"total_duration": float("nan")}}, "not non-finite number"),
    ],
)
def test_a_malformed_status_is_refused_naming_the_part(status: Any, names: str) -> None:
    with pytest.raises(KlipperStateError, match=names.replace("(", r"\(").replace(")", r"\)")):
        check_status(status)


def test_null_temperatures_are_accepted_a_sensor_without_a_target() -> None:
    assert check_status({"extruder": {"temperature": None, "target": None}})


# -- mapping into the SPEC 5.2 status ---------------------------------------------------------------------


def flags_set(status: dict[str, Any]) -> set[str]:
    return {k for k, v in status["state"]["flags"].items() if v}


def test_printing_maps_text_flags_file_progress_times_and_temperatures() -> None:
    status = build_status(
        klipper("printing", filename="subdir/benchy.gcode", progress=0.25, total=130.4, printed=100.0), NOW
    )
    assert status == {
        "_ts": NOW,
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
        "progress": {"completion": 25.0, "printTime": 130, "printTimeLeft": 300},
        "temperatures": {"tool0": {"actual": 214.57, "target": 215.0}, "bed": {"actual": 59.9, "target": 60.0}},
    }


@pytest.mark.parametrize(
    ("state", "text", "flags"),
    [
        (klipper("standby"), "Operational", {"operational", "ready"}),
        (klipper("paused", filename="a.gcode", paused=True), "Paused", {"operational", "paused"}),
        (klipper("printing", filename="a.gcode", paused=True), "Pausing", {"operational", "pausing"}),
        (klipper("complete", filename="a.gcode", progress=1.0), "Operational", {"operational", "ready"}),
        (klipper("cancelled", filename="a.gcode"), "Operational", {"operational", "ready"}),
        (
            klipper("error", filename="a.gcode", print_message="Move out of range: 0.000 0.000 -5.000\nmore"),
            "Error: Move out of range: 0.000 0.000 -5.000",
            {"operational", "ready", "error"},
        ),
        (
            klipper("printing", klippy="shutdown", message="MCU 'mcu' shutdown: Timer too close\nOnce the..."),
            "Error: MCU 'mcu' shutdown: Timer too close",
            {"error", "closedOrError"},
        ),
        (klipper("standby", klippy="error", message=""), "Error: Klipper error", {"error", "closedOrError"}),
    ],
)
def test_state_text_and_flags(state: dict[str, Any], text: str, flags: set[str]) -> None:
    status = build_status(state, NOW)
    assert status["state"]["text"] == text
    assert flags_set(status) == flags


def test_idle_klipper_shows_no_job_and_no_progress() -> None:
    status = build_status(klipper("standby"), NOW)
    assert status["job"] == {"file": {"name": None}}
    assert status["progress"] == {"completion": None, "printTime": None, "printTimeLeft": None}


def test_a_finished_print_keeps_its_file_and_completion_but_no_time_left() -> None:
    status = build_status(klipper("complete", filename="a.gcode", progress=1.0, total=3600.4, printed=3500), NOW)
    assert status["job"]["file"]["name"] == "a.gcode"
    assert status["progress"] == {"completion": 100.0, "printTime": 3600, "printTimeLeft": None}


def test_objects_klipper_does_not_have_are_left_out() -> None:
    state = klipper("standby")
    del state["heater_bed"]
    assert build_status(state, NOW)["temperatures"] == {"tool0": {"actual": 214.57, "target": 215.0}}


@pytest.mark.parametrize(
    ("progress", "printed", "left"),
    [(0.5, 600.0, 600.0), (0.001, 5.0, None), (0.0, 0.0, None), (1.0, 10.0, 0.0), (None, 10.0, None)],
)
def test_time_left_is_obicos_estimate_from_progress_and_print_duration(
    progress: float | None, printed: float, left: float | None
) -> None:
    state = klipper("printing", printed=printed)
    state["virtual_sdcard"]["progress"] = progress
    assert time_left(state) == left


@pytest.mark.parametrize(
    ("klippy", "connected", "reachable"),
    [
        ("ready", True, True),
        ("shutdown", True, True),
        ("error", True, True),
        ("startup", True, False),
        ("ready", False, False),
    ],
)
def test_reachable_only_with_klippy_connected_and_started(klippy: str, connected: bool, reachable: bool) -> None:
    assert is_reachable(klipper(klippy=klippy), connected) is reachable
    assert is_reachable({}, True) is False


# -- the print's life cycle -------------------------------------------------------------------------------


def test_a_print_starts_with_its_start_time_taken_from_total_duration() -> None:
    before = klipper("standby")
    after = klipper("printing", filename="benchy.gcode", total=12.4)
    assert print_update(before, after, NOW, None, None) == PrintUpdate(NOW - 12.4, "PrintStarted", "benchy.gcode")


def test_the_start_time_stays_the_open_prints_while_the_clock_moves() -> None:
    state = klipper("printing", filename="benchy.gcode", total=1000.0)
    opened = print_start_ts(state, NOW, None, None)
    later = klipper("printing", filename="benchy.gcode", total=1010.7)
    assert print_start_ts(later, NOW + 13, opened, "benchy.gcode") == opened
    assert print_update(state, later, NOW + 13, opened, "benchy.gcode") == PrintUpdate(opened, None, "benchy.gcode")


def test_a_print_seen_throughout_keeps_its_start_time_whatever_its_clocks_say() -> None:
    before = klipper("printing", filename="a.gcode", total=10.0)
    after = klipper("paused", filename="a.gcode", total=500.0)
    assert print_update(before, after, NOW, NOW - 10, "a.gcode") == PrintUpdate(NOW - 10, "PrintPaused", "a.gcode")


def test_another_file_or_a_distant_start_is_another_print() -> None:
    state = klipper("printing", filename="b.gcode", total=10.0)
    assert print_start_ts(state, NOW, NOW - 10, "a.gcode") == NOW - 10  # b started 10 s ago too
    assert print_start_ts(state, NOW, NOW - 100, "b.gcode") == NOW - 10


@pytest.mark.parametrize(
    ("before", "after", "event"),
    [
        ("printing", "paused", "PrintPaused"),
        ("paused", "printing", "PrintResumed"),
        ("printing", "printing", None),
        ("paused", "paused", None),
    ],
)
def test_pause_and_resume_events_come_from_transitions(before: str, after: str, event: str | None) -> None:
    update = print_update(klipper(before, filename="a.gcode"), klipper(after, filename="a.gcode"), NOW, NOW, "a.gcode")
    assert update == PrintUpdate(NOW, event, "a.gcode")


@pytest.mark.parametrize(
    ("end", "event"),
    [
        ("complete", "PrintDone"),
        ("cancelled", "PrintCancelled"),
        ("error", "PrintFailed"),
        ("standby", "PrintCancelled"),
    ],
)
def test_a_print_ends_as_klipper_says(end: str, event: str) -> None:
    update = print_update(
        klipper("printing", filename="a.gcode"), klipper(end, filename="a.gcode"), NOW, NOW, "a.gcode"
    )
    assert update == PrintUpdate(-1, event, "a.gcode")


def test_a_print_that_ended_while_the_bridge_was_away_is_closed_from_the_first_snapshot() -> None:
    update = print_update(None, klipper("complete", filename="a.gcode"), NOW, NOW - 500, "a.gcode")
    assert update == PrintUpdate(-1, "PrintDone", "a.gcode")


def test_a_klipper_shutdown_fails_the_print_under_way() -> None:
    after = klipper("printing", klippy="shutdown", filename="a.gcode")
    assert print_update(klipper("printing", filename="a.gcode"), after, NOW, NOW, "a.gcode") == PrintUpdate(
        -1, "PrintFailed", "a.gcode"
    )
    assert print_update(None, klipper("standby", klippy="shutdown"), NOW, None, None) == PrintUpdate(-1, None, None)


def test_nothing_is_known_while_klippy_starts_up() -> None:
    starting = klipper("printing", klippy="startup", filename="a.gcode")
    assert print_update(None, starting, NOW, NOW, "a.gcode") == PrintUpdate(None, None, "a.gcode")


def test_idle_says_no_print_and_a_snapshot_mid_print_reopens_nothing_new() -> None:
    assert print_update(None, klipper("standby"), NOW, None, None) == PrintUpdate(-1, None, None)
    mid = klipper("paused", filename="a.gcode", total=300.0)
    # the bridge restarted: no `before`, the open print is this one -> same start time, no event
    assert print_update(None, mid, NOW, NOW - 299, "a.gcode") == PrintUpdate(NOW - 299, None, "a.gcode")
    # the bridge restarted and knew no print: the print opens
    assert print_update(None, mid, NOW, None, None) == PrintUpdate(NOW - 300, "PrintStarted", "a.gcode")


def test_status_objects_name_every_field_the_mapping_reads() -> None:
    assert set(STATUS_OBJECTS) == {
        "webhooks",
        "print_stats",
        "virtual_sdcard",
        "pause_resume",
        "extruder",
        "heater_bed",
    }
    assert "total_duration" in STATUS_OBJECTS["print_stats"]
    assert "is_paused" in STATUS_OBJECTS["pause_resume"]
