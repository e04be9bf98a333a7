"""bridge/bambu/connection.py against the simulated printer: certificate trust, reports, commands confirmed
by state, reconnects and the pushall limit. (The whole bridge is exercised in test_bambu_bridge.py.)"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.bambu.connection import BambuConnections, BambuTarget
from tests.support.bambu import BambuSetup, Timing, bambu_printers
from tests.support.env import Clock, wait_for

SERIAL = "01P00A000000001"
CODE = "12345678"
FAST = Timing(prepare_s=0.05, pause_s=0.1, resume_s=0.1, stop_s=0.1, clear_error_s=0.3)


class Sink:
    """The bridge's side of BambuEvents, recorded."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.availability: list[bool] = []
        self.pins: dict[int, str] = {}
        self.open_print: tuple[float, str | None] | None = None

    def bambu_message(self, printer_id: int, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def bambu_availability(self, printer_id: int, online: bool) -> None:
        self.availability.append(online)

    def bambu_pinned(self, printer_id: int, pem: str) -> None:
        self.pins[printer_id] = pem

    def bambu_open_print(self, printer_id: int) -> tuple[float, str | None] | None:
        return self.open_print

    def state_text(self) -> str | None:
        return self.messages[-1]["status"]["state"]["text"] if self.messages else None

    def events(self) -> list[str]:
        return [m["event"]["event_type"] for m in self.messages if "event" in m]


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
    await connections.sync([target(printer)])
    await wait_for(lambda: sink.state_text() == "Operational", 10, "the full state after pushall")
    assert sink.availability == [True]
    assert sink.pins[1] == printer.identity(SERIAL).cert.read_text()
    assert sink.messages[0]["settings"]["agent"]["name"] == "Bambu Lab (LAN mode)"
    assert printer.printer(SERIAL).pushalls == 1
    printer.printer(SERIAL).start_print("benchy")
    await wait_for(lambda: sink.state_text() == "Printing", 5, "the print running")
    assert sink.messages[-1]["current_print_ts"] > 0
    assert sink.messages[-1]["status"]["job"]["file"]["name"] == "benchy"


async def test_pause_resume_cancel_are_confirmed_by_state(printer: BambuSetup, conns: Any) -> None:
    connections, sink, _ = conns
    await connections.sync([target(printer)])
    await wait_for(lambda: sink.state_text() == "Operational", 10, "connected")
    printer.printer(SERIAL).start_print("benchy")
    await wait_for(lambda: sink.state_text() == "Printing", 5, "printing")
    pause = await connections.command(1, "pause", "cmd-1", 5.0)
    assert (pause.outcome, pause.error) == ("acked", None)
    assert sink.state_text() == "Paused"
    again = await connections.command(1, "pause", "cmd-2", 5.0)
    assert (again.outcome, again.error) == ("refused", "already paused")
    resume = await connections.command(1, "resume", "cmd-3", 5.0)
    assert (resume.outcome, resume.error) == ("acked", None)
    printer.printer(SERIAL).echo_result = False  # an echo without result: the state still decides
    cancel = await connections.command(1, "cancel", "cmd-4", 5.0)
    assert (cancel.outcome, cancel.error) == ("acked", None)
    assert sink.events() == ["PrintPaused", "PrintResumed", "PrintCancelled"]
    requests = [r["print"] for r in printer.printer(SERIAL).requests if "print" in r]
    assert requests == [
        {"sequence_id": "cmd-1", "command": "pause", "param": ""},
        {"sequence_id": "cmd-3", "command": "resume", "param": ""},
        {"sequence_id": "cmd-4", "command": "stop", "param": ""},
    ]


async def test_refused_and_unconfirmed_commands(printer: BambuSetup, conns: Any) -> None:
    connections, sink, _ = conns
    await connections.sync([target(printer)])
    await wait_for(lambda: sink.state_text() == "Operational", 10, "connected")
    not_paused = await connections.command(1, "resume", "r-1", 5.0)
    assert (not_paused.outcome, not_paused.error) == ("refused", "not paused")
    sim = printer.printer(SERIAL)
    sim.start_print("benchy")
    await wait_for(lambda: sink.state_text() == "Printing", 5, "printing")
    sim.refuse_next = "busy homing"
    refused = await connections.command(1, "pause", "r-2", 5.0)
    assert (refused.outcome, refused.error) == ("refused", "refused by the printer: busy homing")
    sim.ignore_commands = True  # "success", and then nothing happens
    stuck = await connections.command(1, "pause", "r-3", 1.0)
    assert (stuck.outcome, stuck.error) == ("refused", "printer did not pause: state is RUNNING")


async def test_a_changed_certificate_is_refused(printer: BambuSetup, conns: Any) -> None:
    connections, sink, _ = conns
    await connections.sync([target(printer)])
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
    await connections.sync([target(printer, ca_pem=printer.vendor_ca.cert_pem)])
    await wait_for(lambda: sink.availability == [True], 10, "connected")
    assert sink.pins == {}  # a CA was given: nothing to pin
    printer.replace_certificate(SERIAL, printer.vendor_ca.issue(SERIAL))
    await wait_for(lambda: sink.availability == [True, False, True], 10, "reconnected with the new certificate")


async def test_a_certificate_for_another_serial_is_refused(printer: BambuSetup, conns: Any) -> None:
    connections, sink, _ = conns
    await connections.sync([target(printer, serial="01P00A000000999")])
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
    await connections.sync([target(printer, access_code="87654321")])
    connection = connections.get(1)
    assert connection is not None
    await wait_for(lambda: connection.phase == "refused", 10, "the refusal")
    assert connection.last_error is not None and "refused the access code" in connection.last_error
    assert "87654321" not in caplog.text and "87654321" not in repr(connection.target)
    # The right code, given at runtime: the connection is replaced and comes up.
    await connections.sync([target(printer)])
    await wait_for(lambda: sink.availability == [True], 10, "connected with the new code")


async def test_away_and_back_without_a_second_pushall_within_five_minutes(printer: BambuSetup, conns: Any) -> None:
    connections, sink, clock = conns
    await connections.sync([target(printer)])
    await wait_for(lambda: sink.state_text() == "Operational", 10, "connected")
    sim = printer.printer(SERIAL)
    await asyncio.to_thread(printer.power_off)
    await wait_for(lambda: sink.availability == [True, False], 10, "offline")
    await asyncio.to_thread(printer.power_on)
    await wait_for(lambda: sink.availability == [True, False, True], 10, "back")
    sim.push_delta(mc_percent=1)  # a delta after the reconnect still merges into the known state
    await wait_for(lambda: sink.messages[-1]["status"]["temperatures"]["bed"]["actual"] == 25.0, 5, "a delta")
    assert sim.pushalls == 1
    clock.advance(301)
    await asyncio.to_thread(printer.power_off)
    await wait_for(lambda: sink.availability[-1] is False, 10, "offline again")
    await asyncio.to_thread(printer.power_on)
    await wait_for(lambda: sim.pushalls == 2, 10, "a pushall after five minutes")


async def test_printers_are_added_and_removed_at_runtime(printer: BambuSetup, conns: Any) -> None:
    connections, sink, _ = conns
    await connections.sync([target(printer)])
    await wait_for(lambda: sink.availability == [True], 10, "connected")
    await connections.sync([])
    assert sink.availability == [True, False] and len(connections) == 0
