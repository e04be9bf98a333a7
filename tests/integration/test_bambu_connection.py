"""bridge/bambu/connection.py against the simulated printer: certificate trust, reports, commands confirmed
by state, reconnects and the pushall limit. (The whole bridge is exercised in test_bambu_bridge.py.)"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.bambu import connection as connection_module
from bridge.bambu.connection import BambuConnections
from bridge.bambu.trust import BambuTarget
from bridge.domain.inputs import Availability, CommandReply, Input, SignOfLife, StatusUpdate
from tests.support.bambu import BambuSetup, Timing, bambu_printers
from tests.support.env import Clock, wait_for

SERIAL = "01P00A000000001"
CODE = "12345678"
FAST = Timing(prepare_s=0.05, pause_s=0.1, resume_s=0.1, stop_s=0.1, clear_error_s=0.3)


class Sink:
    """The bridge's side of BambuEvents, recorded."""

    def __init__(self) -> None:
        self.updates: list[StatusUpdate] = []
        self.availability: list[bool] = []
        self.replies: list[CommandReply] = []
        self.signs_of_life = 0
        self.pins: dict[int, str] = {}
        self.open_print: tuple[float, str | None] | None = None

    def bambu_inputs(self, printer_id: int, inputs: list[Input]) -> None:
        for item in inputs:
            if isinstance(item, StatusUpdate):
                self.updates.append(item)
            elif isinstance(item, Availability):
                self.availability.append(item.online)
            elif isinstance(item, CommandReply):
                self.replies.append(item)
            elif isinstance(item, SignOfLife):
                self.signs_of_life += 1

    def bambu_pinned(self, printer_id: int, pem: str) -> None:
        self.pins[printer_id] = pem

    def bambu_open_print(self, printer_id: int) -> tuple[float, str | None] | None:
        return self.open_print

    def state_text(self) -> str | None:
        status = self.updates[-1].status if self.updates else None
        return None if status is None else status["state"]["text"]

    def events(self) -> list[str]:
        return [u.event for u in self.updates if u.event is not None]


@pytest.fixture
def printer(tmp_path: Path) -> Iterator[BambuSetup]:
    with bambu_printers(tmp_path / "bambu", [SERIAL], access_code=CODE, timing=FAST) as setup:
        yield setup


def target(setup: BambuSetup, **changes: Any) -> BambuTarget:
    values: dict[str, Any] = {
        "printer_id": 1,
        "host": "127.0.0.1",
        "port": setup.identity(SERIAL).tls_port,
        "serial": SERIAL,
        "access_code": CODE,
    }
    values.update(changes)
    return BambuTarget(**values)


@pytest.fixture
async def conns() -> AsyncIterator[tuple[BambuConnections, Sink, Clock]]:
    sink, clock = Sink(), Clock()
    connections = BambuConnections(sink, clock, backoff_cap_s=0.2)
    try:
        yield connections, sink, clock
    finally:
        await connections.stop()


async def test_first_contact_pins_and_reports_arrive(printer: BambuSetup, conns: Any) -> None:
    connections, sink, _ = conns
    connections.sync([target(printer)])
    await wait_for(lambda: sink.state_text() == "Operational", 10, "the full state after pushall")
    assert sink.availability == [True]
    assert sink.pins[1] == printer.identity(SERIAL).cert.read_text()
    assert sink.updates[0].agent_name == "Bambu Lab (LAN mode)"  # named once per session
    assert printer.printer(SERIAL).pushalls == 1
    printer.printer(SERIAL).start_print("benchy")
    await wait_for(lambda: sink.state_text() == "Printing", 5, "the print running")
    last = sink.updates[-1]
    assert last.agent_name is None and last.settings_raw is None
    assert last.current_print_ts is not None and last.current_print_ts > 0
    assert last.status is not None and last.status["job"]["file"]["name"] == "benchy"


async def test_commands_carry_the_command_id_and_echoes_become_replies(printer: BambuSetup, conns: Any) -> None:
    connections, sink, _ = conns
    connections.sync([target(printer)])
    await wait_for(lambda: sink.state_text() == "Operational", 10, "connected")
    sim = printer.printer(SERIAL)
    sim.start_print("benchy")
    await wait_for(lambda: sink.state_text() == "Printing", 5, "printing")
    connection = connections.get(1)
    assert connection is not None
    await connection.send("pause", "cmd-1")
    await wait_for(lambda: sink.state_text() == "Paused", 5, "paused")
    sim.echo_result = False
    await connection.send("resume", "cmd-2")
    await wait_for(lambda: sink.state_text() == "Printing", 5, "printing again")
    sim.echo_result, sim.refuse_next = True, "busy homing"
    await connection.send("cancel", "cmd-3")
    await wait_for(lambda: len(sink.replies) == 3, 5, "three echoes")
    assert sink.replies == [
        CommandReply("cmd-1", True, None),
        CommandReply("cmd-2", True, None),  # no result in the echo: not a refusal
        CommandReply("cmd-3", False, "refused by the printer: busy homing"),
    ]
    assert sink.events() == ["PrintPaused", "PrintResumed"]
    assert [r["print"] for r in sim.requests if "print" in r] == [
        {"sequence_id": "cmd-1", "command": "pause", "param": ""},
        {"sequence_id": "cmd-2", "command": "resume", "param": ""},
        {"sequence_id": "cmd-3", "command": "stop", "param": ""},
    ]


async def test_a_changed_certificate_is_refused(printer: BambuSetup, conns: Any) -> None:
    connections, sink, _ = conns
    connections.sync([target(printer)])
    await wait_for(lambda: sink.availability == [True], 10, "connected")
    # Same vendor CA, same serial, another key: not the certificate pinned at first contact.
    printer.replace_certificate(SERIAL, printer.vendor_ca.issue(SERIAL))
    connection = connections.get(1)
    assert connection is not None
    await wait_for(lambda: connection.phase == "certificate", 10, "the changed certificate refused")
    assert "another certificate" in (connection.last_error or "")
    assert "pinned at first contact" in (connection.last_error or "")
    assert sink.availability == [True, False]
    assert printer.printer(SERIAL).pushalls == 1  # never connected with it


async def test_the_vendor_ca_accepts_a_new_certificate_for_the_serial(printer: BambuSetup, conns: Any) -> None:
    connections, sink, _ = conns
    connections.sync([target(printer, ca_pem=printer.vendor_ca.cert_pem)])
    await wait_for(lambda: sink.availability == [True], 10, "connected")
    assert sink.pins == {}  # a CA was given: nothing to pin
    printer.replace_certificate(SERIAL, printer.vendor_ca.issue(SERIAL))
    await wait_for(lambda: sink.availability == [True, False, True], 10, "reconnected with the new certificate")


async def test_a_certificate_for_another_serial_is_refused(printer: BambuSetup, conns: Any) -> None:
    connections, sink, _ = conns
    connections.sync([target(printer, serial="01P00A000000999")])
    connection = connections.get(1)
    assert connection is not None
    await wait_for(lambda: connection.phase == "certificate", 10, "the certificate refused")
    assert connection.last_error is not None and "not for serial 01P00A000000999" in connection.last_error
    assert sink.pins == {}  # never pinned


async def test_a_wrong_access_code_is_reported_and_never_logged(
    printer: BambuSetup, conns: Any, caplog: pytest.LogCaptureFixture
) -> None:
    connections, sink, _ = conns
    caplog.set_level(logging.DEBUG)
    connections.sync([target(printer, access_code="87654321")])
    connection = connections.get(1)
    assert connection is not None
    await wait_for(lambda: connection.phase == "refused", 10, "the refusal")
    assert connection.last_error is not None and "refused the access code" in connection.last_error
    assert sink.state_text() == f"Error: {connection.last_error}"  # shown where the status is seen
    assert "87654321" not in caplog.text and "87654321" not in repr(connection.target)
    # The right code, given at runtime: the connection is replaced and comes up.
    connections.sync([target(printer)])
    await wait_for(lambda: sink.availability == [True], 10, "connected with the new code")


async def test_away_and_back_without_a_second_pushall_within_five_minutes(printer: BambuSetup, conns: Any) -> None:
    connections, sink, clock = conns
    connections.sync([target(printer)])
    await wait_for(lambda: sink.state_text() == "Operational", 10, "connected")
    sim = printer.printer(SERIAL)
    await asyncio.to_thread(printer.power_off)
    await wait_for(lambda: sink.availability == [True, False], 10, "offline")
    await asyncio.to_thread(printer.power_on)
    await wait_for(lambda: sink.availability == [True, False, True], 10, "back")
    sim.push_delta(nozzle_temper=30.5)  # a delta after the reconnect still merges into the known state
    await wait_for(lambda: _bed(sink) == 25.0 and _nozzle(sink) == 30.5, 5, "a delta on the known state")
    assert sim.pushalls == 1
    clock.advance(301)
    await asyncio.to_thread(printer.power_off)
    await wait_for(lambda: sink.availability[-1] is False, 10, "offline again")
    await asyncio.to_thread(printer.power_on)
    await wait_for(lambda: sim.pushalls == 2, 10, "a pushall after five minutes")


async def test_printers_are_added_and_removed_at_runtime(printer: BambuSetup, conns: Any) -> None:
    connections, sink, _ = conns
    connections.sync([target(printer)])
    await wait_for(lambda: sink.availability == [True], 10, "connected")
    connections.sync([])
    assert sink.availability == [True, False] and len(connections) == 0


def _bed(sink: Sink) -> float | None:
    status = sink.updates[-1].status
    return None if status is None else status["temperatures"]["bed"]["actual"]


def _nozzle(sink: Sink) -> float | None:
    status = sink.updates[-1].status
    return None if status is None else status["temperatures"]["tool0"]["actual"]


async def test_a_quiet_connected_printer_keeps_showing_signs_of_life(
    printer: BambuSetup, conns: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle P1 may send nothing for minutes: while its session is up, its status must not go stale."""
    monkeypatch.setattr(connection_module, "LIVENESS_INTERVAL_S", 0.05)
    connections, sink, _ = conns
    connections.sync([target(printer)])
    await wait_for(lambda: sink.signs_of_life >= 3, 10, "signs of life while connected")
    assert sink.availability == [True]
