"""bridge.dialects.moonraker without a broker: what each Moonraker message decodes into, which requests the
dialect sends, and its refusals and confirmations, judged from the Klipper state it keeps."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from bridge.dialects.base import BrokerPermission, DialectContext
from bridge.dialects.moonraker import MoonrakerDialect
from bridge.domain.inputs import Availability, CommandReply, PayloadError, SignOfLife, StatusUpdate
from bridge.domain.models import PrinterRecord, PrintRecord
from bridge.mqtt.topics import Topics

TOPICS = Topics("pb")
NOW = 1_800_000_000.0
SPACE = "pb/printers/7"


class Publisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, int, bool]] = []

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, **kwargs: Any) -> None:
        self.sent.append((topic, payload, qos, False))

    def publish_nowait(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        self.sent.append((topic, payload, qos, retain))
        return True

    def requests(self) -> list[dict[str, Any]]:
        return [json.loads(p) for t, p, _, _ in self.sent if t == f"{SPACE}/moonraker/api/request"]


@pytest.fixture
def publisher() -> Publisher:
    return Publisher()


@pytest.fixture
def dialect(publisher: Publisher) -> MoonrakerDialect:
    ctx = DialectContext(
        topics=TOPICS,
        publisher=publisher,
        clock=lambda: NOW,
        command_timeout_s=5.0,
        deliver=lambda printer_id, inputs: None,
        printers=lambda: [printer()],
    )
    return MoonrakerDialect(ctx)


def printer(current: PrintRecord | None = None) -> PrinterRecord:
    return PrinterRecord(
        id=7, owner_id=1, name="Voron", created_at=NOW, auth_token="t", dialect="moonraker", current_print=current
    )


def snapshot(state: str = "standby", **extra: Any) -> dict[str, Any]:
    status = {
        "webhooks": {"state": "ready", "state_message": "Printer is ready"},
        "print_stats": {"state": state, "filename": "a.gcode" if state != "standby" else "", "total_duration": 10.0},
        "virtual_sdcard": {"progress": 0.1},
        "pause_resume": {"is_paused": state == "paused"},
    }
    status.update(extra)
    return status


def klipper(status: dict[str, Any]) -> bytes:
    return msgspec.json.encode({"eventtime": 123.4, "status": status})


def reply(request_id: Any, result: Any = None, error: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id}
    body.update({"error": error} if error else {"result": result})
    return msgspec.json.encode(body)


def test_topics_and_the_printers_broker_permissions(dialect: MoonrakerDialect) -> None:
    assert dialect.subscriptions() == [
        "pb/printers/+/klipper/status",
        "pb/printers/+/moonraker/api/response",
        "pb/printers/+/moonraker/status",
    ]
    assert MoonrakerDialect.broker_permissions(TOPICS, 7) == [
        BrokerPermission("publish", f"{SPACE}/moonraker/status"),
        BrokerPermission("publish", f"{SPACE}/klipper/status"),
        BrokerPermission("publish", f"{SPACE}/moonraker/api/response"),
        BrokerPermission("subscribe", f"{SPACE}/moonraker/api/request"),
    ]
    assert dialect.accepts("detection") and dialect.accepts("snapshot") and not dialect.accepts("status")


def test_moonraker_online_asks_for_the_whole_state_and_mirrors_availability(
    dialect: MoonrakerDialect, publisher: Publisher
) -> None:
    assert dialect.decode(printer(), "moonraker/status", b'{"server": "online"}', True) == (Availability(True),)
    assert (f"{SPACE}/availability", b"online", 1, True) in publisher.sent
    methods = [(r["method"], r.get("params")) for r in publisher.requests()]
    assert methods[0][0] == "printer.objects.query"
    assert methods[0][1]["objects"]["print_stats"] == [
        "state",
        "filename",
        "total_duration",
        "print_duration",
        "message",
    ]
    assert methods[1] == ("server.info", None)
    assert all(qos == 0 for t, _, qos, _ in publisher.sent if t.endswith("/api/request"))
    offline = dialect.decode(printer(), "moonraker/status", b'{"server": "offline"}', False)
    assert offline == (Availability(False), StatusUpdate(None, None))


def test_a_query_answer_becomes_the_status_with_the_print(dialect: MoonrakerDialect, publisher: Publisher) -> None:
    dialect.decode(printer(), "moonraker/status", b'{"server": "online"}', True)
    query_id = publisher.requests()[0]["id"]
    (update,) = dialect.decode(
        printer(), "moonraker/api/response", reply(query_id, {"eventtime": 1.0, "status": snapshot("printing")}), False
    )
    assert isinstance(update, StatusUpdate) and update.status is not None
    assert update.status["state"]["text"] == "Printing"
    assert msgspec.json.decode(update.status_raw or b"") == update.status
    assert (update.current_print_ts, update.event, update.filename) == (NOW - 10.0, "PrintStarted", "a.gcode")
    assert (update.agent_name, msgspec.json.decode(update.settings_raw or b"")) == (
        "moonraker",
        {"agent": {"name": "moonraker", "version": None}},
    )
    # the answer is taken once; a second copy is another client's business
    again = reply(query_id, {"eventtime": 1.0, "status": snapshot("printing")})
    assert dialect.decode(printer(), "moonraker/api/response", again, False) == ()


def test_deltas_merge_and_map_and_pause_is_an_event(dialect: MoonrakerDialect) -> None:
    dialect.decode(printer(), "klipper/status", klipper(snapshot("printing")), False)
    opened = PrintRecord(id=1, printer_id=7, ts=NOW - 10.0, filename="a.gcode", started_at=NOW)
    (update,) = dialect.decode(
        printer(opened),
        "klipper/status",
        klipper({"print_stats": {"state": "paused"}, "pause_resume": {"is_paused": True}}),
        False,
    )
    assert isinstance(update, StatusUpdate) and update.status is not None
    assert (update.status["state"]["text"], update.event, update.current_print_ts) == (
        "Paused",
        "PrintPaused",
        NOW - 10,
    )
    assert update.settings_raw is None  # reported once already


def test_a_delta_without_a_snapshot_asks_for_one(dialect: MoonrakerDialect, publisher: Publisher) -> None:
    assert dialect.decode(printer(), "klipper/status", klipper({"print_stats": {"total_duration": 3.0}}), False) == (
        SignOfLife(),
    )
    assert [r["method"] for r in publisher.requests()] == ["printer.objects.query"]


@pytest.mark.parametrize(
    "payload",
    [b"nope", b'{"eventtime": 1}', b'{"eventtime": 1, "status": {"print_stats": {"state": "x"}}}', b"{}"],
)
def test_malformed_klipper_status_is_refused_and_changes_nothing(dialect: MoonrakerDialect, payload: bytes) -> None:
    dialect.decode(printer(), "klipper/status", klipper(snapshot("printing")), False)
    with pytest.raises(PayloadError):
        dialect.decode(printer(), "klipper/status", payload, False)
    assert dialect.refuse(printer(), "resume") == "not paused"  # the state is still printing


def test_server_info_tells_klippy_is_gone_and_gives_moonrakers_version(
    dialect: MoonrakerDialect, publisher: Publisher
) -> None:
    dialect.decode(printer(), "moonraker/status", b'{"server": "online"}', True)
    dialect.decode(printer(), "klipper/status", klipper(snapshot()), False)
    info_id = publisher.requests()[1]["id"]
    info = {"klippy_connected": True, "klippy_state": "ready", "moonraker_version": "v0.11.0"}
    (update,) = dialect.decode(printer(), "moonraker/api/response", reply(info_id, info), False)
    assert isinstance(update, StatusUpdate) and update.agent_version == "v0.11.0"

    dialect.poll()
    poll_id = publisher.requests()[-1]["id"]
    gone = {"klippy_connected": False, "klippy_state": "disconnected", "moonraker_version": "v0.11.0"}
    assert dialect.decode(printer(), "moonraker/api/response", reply(poll_id, gone), False) == (
        SignOfLife(),
        StatusUpdate(None, None),
    )
    dialect.poll()
    poll_id = publisher.requests()[-1]["id"]
    error = {"code": 503, "message": "Klippy Host not connected"}
    assert dialect.decode(printer(), "moonraker/api/response", reply(poll_id, error=error), False)[-1] == (
        StatusUpdate(None, None)
    )


def test_other_clients_replies_are_ignored_and_ours_must_be_well_formed(
    dialect: MoonrakerDialect, publisher: Publisher
) -> None:
    assert dialect.decode(printer(), "moonraker/api/response", reply(203, "ok"), False) == ()
    assert dialect.decode(printer(), "moonraker/api/response", reply("someone-else", "ok"), False) == ()
    assert (
        dialect.decode(printer(), "moonraker/api/response", reply(None, error={"code": -32700, "message": "x"}), False)
        == ()
    )
    with pytest.raises(PayloadError):
        dialect.decode(printer(), "moonraker/api/response", b"[1, 2]", False)
    dialect.poll()  # nothing asked: Moonraker was never seen online
    assert publisher.requests() == []
    dialect.decode(printer(), "moonraker/status", b'{"server": "online"}', True)
    ours = publisher.requests()[0]["id"]
    with pytest.raises(PayloadError):
        dialect.decode(printer(), "moonraker/api/response", b'{"jsonrpc": "2.0", "id": "%s"}' % ours.encode(), False)


async def test_commands_use_the_cmd_id_and_their_replies_come_back_as_command_replies(
    dialect: MoonrakerDialect, publisher: Publisher
) -> None:
    from bridge.dialects.base import CommandRequest

    await dialect.send_command(printer(), CommandRequest("c-1", "pause", {"retract": 6.5}, "api", NOW))
    assert publisher.requests() == [{"jsonrpc": "2.0", "method": "printer.print.pause", "id": "c-1"}]
    assert publisher.sent[-1][2] == 0
    ok = dialect.decode(printer(), "moonraker/api/response", reply("c-1", "ok"), False)
    assert ok == (CommandReply("c-1", True, None),)
    await dialect.send_command(printer(), CommandRequest("c-2", "cancel", {}, "api", NOW))
    error = {"code": 503, "message": "Klippy Host not connected"}
    refused = dialect.decode(printer(), "moonraker/api/response", reply("c-2", error=error), False)
    assert refused == (CommandReply("c-2", False, "Klippy Host not connected"),)


def test_refusals_and_confirmations_from_the_known_state(dialect: MoonrakerDialect) -> None:
    assert dialect.refuse(printer(), "pause") is None  # nothing known yet: Moonraker decides
    dialect.decode(printer(), "klipper/status", klipper(snapshot("printing")), False)
    assert dialect.refuse(printer(), "pause") is None
    assert dialect.refuse(printer(), "resume") == "not paused"
    pause = dialect.confirmation(printer(), "pause")
    assert not pause.met(printer())
    assert pause.reason(printer()) == "printer did not pause: state is printing"
    dialect.decode(printer(), "klipper/status", klipper({"print_stats": {"state": "paused"}}), False)
    assert pause.met(printer())
    assert dialect.refuse(printer(), "pause") == "already paused"
    assert dialect.refuse(printer(), "resume") is None
    cancel = dialect.confirmation(printer(), "cancel")
    dialect.decode(printer(), "klipper/status", klipper({"print_stats": {"state": "standby"}}), False)
    assert cancel.met(printer())
