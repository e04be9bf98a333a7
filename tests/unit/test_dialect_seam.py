"""The dialect seam carries a second protocol: ingest, actions and commands driven through a fake dialect
whose wire format is not printbridge's (semicolon-separated text), with no broker.

The store is a real SQLite file; what the bridge would publish is recorded by a stand-in link.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bridge.actions import Actions
from bridge.commands import Commands
from bridge.detector import Detector
from bridge.dialects.base import (
    CommandNotSent,
    CommandRequest,
    Confirmation,
    Dialect,
    DialectContext,
)
from bridge.dialects.registry import DEFAULT_DIALECT, DIALECTS, UnknownDialect, dialect_class
from bridge.domain.inputs import (
    Availability,
    CommandReply,
    DetectionFrame,
    Input,
    PayloadError,
    SignOfLife,
    StatusUpdate,
)
from bridge.domain.models import PrinterRecord
from bridge.domain.views import encode_printer
from bridge.ingest import Ingest
from bridge.mqtt.outputs import Outputs
from bridge.mqtt.topics import Topics
from bridge.state.store import Store

TOPICS = Topics("seam")
START_TS = 1_700_000_100.0


class RecordingLink:
    """What Outputs needs of the broker connection; keeps what would have been published."""

    send_backlog = 0

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    def publish_nowait(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        self.published.append((topic, payload))
        return True

    async def publish(self, topic: str, payload: bytes, **kwargs: Any) -> None:
        self.published.append((topic, payload))

    def events(self, printer_id: int) -> list[str]:
        return [msgspec.json.decode(p)["event_type"] for t, p in self.published if t == TOPICS.event(printer_id)]


class LineDialect(Dialect):
    """`key=value;key=value` text lines on `B/printers/{id}/line`; commands are `PAUSE <id>` lines handed
    to a transport of its own; replies are `re=<id>;ok=1`. Pause must be confirmed by a paused state."""

    name = "line"

    def __init__(self, ctx: DialectContext) -> None:
        super().__init__(ctx)
        self.sent: list[tuple[int, str]] = []
        self.sent_event = asyncio.Event()
        self.connected_ok = True

    def accepts(self, subtopic: str) -> bool:
        return subtopic == "line"

    def decode(self, rec: PrinterRecord, subtopic: str, payload: bytes, retained: bool) -> Sequence[Input]:
        try:
            fields = dict(part.split("=", 1) for part in payload.decode("ascii").split(";"))
        except (UnicodeDecodeError, ValueError):
            raise PayloadError("line: expected key=value pairs") from None
        if "re" in fields:
            return (CommandReply(fields["re"], fields.get("ok") == "1", fields.get("why")),)
        if "up" in fields:
            return (Availability(fields["up"] == "1"),)
        if "frame" in fields:
            return (DetectionFrame(float(fields["frame"])),)
        if "ping" in fields:
            return (SignOfLife(),)
        state = fields.get("state", "Operational")
        status = {
            "state": {"text": state, "flags": {"printing": state == "Printing", "paused": state == "Paused"}},
            "progress": {"completion": float(fields.get("pct", 0))},
            "job": {"file": {"name": fields.get("file")}},
        }
        start = fields.get("start")
        return (
            StatusUpdate(
                status=status,
                status_raw=msgspec.json.encode(status),
                current_print_ts=float(start) if start else None,
                event="PrintDone" if fields.get("done") else None,
            ),
        )

    def refuse(self, rec: PrinterRecord, cmd: str) -> str | None:
        if cmd == "pause" and rec.flag_paused:
            return "already paused"
        return None

    async def send_command(self, rec: PrinterRecord, request: CommandRequest) -> None:
        if not self.connected_ok:
            raise CommandNotSent("no connection to the printer")
        self.sent.append((rec.id, f"{request.cmd.upper()} {request.cmd_id}"))
        self.sent_event.set()

    def confirmation(self, rec: PrinterRecord, cmd: str) -> Confirmation | None:
        if cmd != "pause":
            return None
        return Confirmation(
            met=lambda r: r.flag_paused, reason=lambda r: f"printer did not pause: state is {r.state_text}"
        )


@dataclass
class Seam:
    store: Store
    link: RecordingLink
    dialect: LineDialect
    ingest: Ingest
    commands: Commands
    actions: Actions
    detector: Detector
    rec: PrinterRecord

    def feed(self, line: str) -> None:
        self.ingest.apply(self.rec, self.dialect.decode(self.rec, "line", line.encode(), False))

    async def next_command(self) -> str:
        await asyncio.wait_for(self.dialect.sent_event.wait(), 5)
        self.dialect.sent_event.clear()
        return self.dialect.sent[-1][1]


@pytest.fixture
async def seam(tmp_path: Path) -> AsyncIterator[Seam]:
    clock = lambda: 1_700_000_000.0  # noqa: E731
    store = Store(tmp_path / "seam.db", clock)
    store.load()
    link = RecordingLink()
    ctx = DialectContext(
        TOPICS,
        link,  # type: ignore[arg-type]  # what a dialect uses of the MqttLink
        clock,
        0.5,
        lambda pid, inputs: None,
        lambda: list(store.printers.values()),
    )
    dialect = LineDialect(ctx)
    outputs = Outputs(link, TOPICS, clock, ha_discovery=False, ha_mode="device")  # type: ignore[arg-type]
    commands = Commands(store, lambda rec: dialect, clock, timeout_s=0.5)
    detector = Detector(store, outputs, clock)
    actions = Actions(store, commands, outputs, clock)
    detector.bind(lambda rec: actions.command(rec, "pause", "system"))
    ingest = Ingest(store, outputs, commands, detector, clock)
    owner, _ = store.users.add("ann")
    rec = store.printers.create(owner, "Line printer", {"dialect": "line"})
    try:
        yield Seam(store, link, dialect, ingest, commands, actions, detector, rec)
    finally:
        await detector.drain()
        store.close()


async def test_a_status_line_opens_a_print_and_is_served(seam: Seam) -> None:
    seam.feed(f"state=Printing;pct=12.5;file=cube.gcode;start={START_TS}")
    rec = seam.rec
    assert rec.online and rec.flag_printing and rec.progress == 12.5
    assert rec.current_print is not None and rec.current_print.filename == "cube.gcode"
    assert seam.link.events(rec.id) == ["STARTED"]
    body = msgspec.json.decode(encode_printer(rec))
    assert body["dialect"] == "line"
    assert body["status"]["state"]["text"] == "Printing"
    seam.feed(f"state=Operational;pct=100;start={START_TS};done=1")
    assert rec.current_print is None
    assert seam.link.events(rec.id) == ["STARTED", "ENDED"]


async def test_availability_and_sign_of_life(seam: Seam) -> None:
    seam.feed(f"state=Printing;start={START_TS}")
    seam.feed("up=0")
    assert seam.rec.available is False and not seam.rec.online
    seam.feed("up=1")
    assert seam.rec.online
    seam.store.printers.mark_stale(2_000_000_000.0)
    assert seam.rec.stale
    seam.feed("ping=1")
    assert not seam.rec.stale and seam.rec.online


async def test_malformed_line_is_refused_before_anything_changes(seam: Seam) -> None:
    with pytest.raises(PayloadError):
        seam.feed("no pairs here")
    assert seam.rec.status_raw is None


async def test_pause_is_sent_replied_and_confirmed(seam: Seam) -> None:
    seam.feed(f"state=Printing;start={START_TS}")
    task = asyncio.create_task(seam.actions.command(seam.rec, "pause", "api"))
    line = await seam.next_command()
    verb, cmd_id = line.split()
    assert verb == "PAUSE"
    seam.feed(f"re={cmd_id};ok=1")
    for _ in range(1000):  # the reply alone does not finish a pause: it now waits for the paused state
        await asyncio.sleep(0)
        if seam.commands._confirming:
            break
    assert seam.commands._confirming and not task.done()
    seam.feed(f"state=Paused;start={START_TS}")
    outcome = await asyncio.wait_for(task, 5)
    assert (outcome.succeeded, outcome.error) == (True, None)
    [row] = seam.store.commands.recent(seam.rec.id, 10)
    assert (row.cmd, row.outcome, row.initiator) == ("pause", "acked", "api")


async def test_a_pause_never_confirmed_fails_with_the_state(seam: Seam) -> None:
    seam.feed(f"state=Printing;start={START_TS}")
    task = asyncio.create_task(seam.actions.command(seam.rec, "pause", "api"))
    _, cmd_id = (await seam.next_command()).split()
    seam.feed(f"re={cmd_id};ok=1")
    outcome = await asyncio.wait_for(task, 5)
    assert (outcome.succeeded, outcome.error) == (False, "printer did not pause: state is Printing")
    [row] = seam.store.commands.recent(seam.rec.id, 10)
    assert (row.outcome, row.error) == ("timeout", "printer did not pause: state is Printing")


async def test_a_refusing_reply_and_a_refusal_before_sending(seam: Seam) -> None:
    seam.feed(f"state=Printing;start={START_TS}")
    task = asyncio.create_task(seam.actions.command(seam.rec, "cancel", "api"))
    _, cmd_id = (await seam.next_command()).split()
    seam.feed(f"re={cmd_id};ok=0;why=door open")
    outcome = await asyncio.wait_for(task, 5)
    assert (outcome.succeeded, outcome.error) == (False, "door open")
    seam.feed(f"state=Paused;start={START_TS}")
    sent = len(seam.dialect.sent)
    outcome = await seam.actions.command(seam.rec, "pause", "api")
    assert (outcome.succeeded, outcome.error) == (False, "already paused")
    assert len(seam.dialect.sent) == sent
    rows = seam.store.commands.recent(seam.rec.id, 10)
    assert [(r.cmd, r.outcome, r.error) for r in rows] == [
        ("pause", "refused", "already paused"),
        ("cancel", "refused", "door open"),
    ]


async def test_a_command_the_transport_cannot_send(seam: Seam) -> None:
    seam.feed(f"state=Printing;start={START_TS}")
    seam.dialect.connected_ok = False
    outcome = await seam.actions.command(seam.rec, "resume", "api")
    assert (outcome.succeeded, outcome.error) == (False, "broker unavailable")
    [row] = seam.store.commands.recent(seam.rec.id, 10)
    assert row.outcome == "not_sent"


async def test_detection_frames_through_the_seam_pause_a_failing_print(seam: Seam) -> None:
    seam.feed(f"state=Printing;start={START_TS}")
    p = seam.rec.current_print
    assert p is not None
    for _ in range(30):  # a calm start, then a failure
        seam.feed("frame=0")
    for _ in range(20):
        seam.feed("frame=5")
        if p.paused_at is not None:
            break
    assert p.paused_at is not None
    _, cmd_id = (await seam.next_command()).split()  # the automatic pause goes out through the dialect
    seam.feed(f"re={cmd_id};ok=1")
    seam.feed(f"state=Paused;start={START_TS}")
    await seam.detector.drain()
    [row] = seam.store.commands.recent(seam.rec.id, 10)
    assert (row.cmd, row.initiator, row.outcome) == ("pause", "system", "acked")


def test_the_registry_maps_names_to_classes_and_names_the_known_ones() -> None:
    assert dialect_class(DEFAULT_DIALECT) is DIALECTS["printbridge"]
    with pytest.raises(UnknownDialect, match="unknown dialect 'nope'; one of: " + ", ".join(sorted(DIALECTS))):
        dialect_class("nope")
    with pytest.raises(UnknownDialect):
        dialect_class(3)
