"""The `moonraker` dialect: Klipper printers through Moonraker's own MQTT client, no agent to install
(docs/moonraker.md).

Moonraker is configured with the `[mqtt]` section printbridge gives (`agent_config`): its `instance_name` is
the printer's topic space `B/printers/{id}`, so it publishes `moonraker/status` (retained `{"server":
"online"|"offline"}`, also its Will), `klipper/status` (a snapshot of the configured objects when Klippy
becomes ready, then only what changed) and `moonraker/api/response` (JSON-RPC replies, one topic shared
by every requester), and it takes JSON-RPC requests on `moonraker/api/request`.

The dialect keeps each printer's full Klipper state and maps it into the status Obico's agents send
(`bridge.domain.klipper`). Status is not retained: when Moonraker comes online (or the bridge starts and
finds it online) the bridge asks for the whole state (`printer.objects.query`). A Klippy that disconnects
says nothing on MQTT: `server.info`, polled every `poll_interval_s`, tells (and its answers keep an idle
printer's status from going stale). Commands are JSON-RPC requests whose id is the command's id; Klipper
answers "ok" even when nothing happens (PAUSE when already paused, a PAUSE macro that does nothing), so
a command succeeds only when the state then changes as asked (`confirmation`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec

from bridge.dialects.base import BrokerPermission, CommandNotSent, CommandRequest, Confirmation, Dialect
from bridge.dialects.printbridge import decode_frame
from bridge.domain.inputs import (
    Availability,
    CommandReply,
    Input,
    PayloadError,
    SignOfLife,
    Snapshot,
    StatusUpdate,
)
from bridge.domain.klipper import (
    STATUS_OBJECTS,
    KlipperState,
    build_status,
    is_reachable,
    merge_status,
    print_state,
    print_update,
)
from bridge.domain.models import PrinterRecord
from bridge.mqtt.jsonrpc import RpcFormatError, decode_reply, encode_request, peek_id
from bridge.mqtt.link import NotConnected
from bridge.mqtt.moonraker_payloads import (
    decode_klipper_status,
    decode_query_result,
    decode_server_info,
    decode_server_status,
)
from bridge.mqtt.topics import Topics

log = logging.getLogger("printbridge.moonraker")

SERVER_STATUS = "moonraker/status"
KLIPPER_STATUS = "klipper/status"
API_REQUEST = "moonraker/api/request"
API_RESPONSE = "moonraker/api/response"
INBOUND = frozenset({SERVER_STATUS, KLIPPER_STATUS, API_RESPONSE})
# The retained `availability` the bridge publishes for a Moonraker printer (Home Assistant's availability
# reads it, as for every printer); it comes back to the bridge, which ignores it.
AVAILABILITY = "availability"
# What a failure detector or a camera publishes for any printer (with credentials of its own: the printer's
# account is Moonraker's alone), decoded as for printbridge's agents.
DETECTION, SNAPSHOT = "detection", "snapshot"
ACCEPTED = INBOUND | {AVAILABILITY, DETECTION, SNAPSHOT}

METHODS = {"pause": "printer.print.pause", "resume": "printer.print.resume", "cancel": "printer.print.cancel"}
# The print_stats.state that confirms each command (SPEC 10).
CONFIRMING = {"pause": ("paused",), "resume": ("printing",), "cancel": ("cancelled", "standby")}
QUERY = {"objects": {name: list(fields) for name, fields in STATUS_OBJECTS.items()}}
AGENT_NAME = "moonraker"
# Requests go at QoS 0. Moonraker's socket has no TCP_NODELAY: with QoS 1 it writes a PUBACK for the request
# and then its reply, which Nagle's algorithm holds until the broker's delayed ACK, 40 ms later (bench/
# moonraker.py measured 47 ms against 2 ms). QoS 0 loses nothing QoS 1 would keep: Moonraker has no persistent
# session, so a request reaches it only while it is connected, and an unanswered command times out.
REQUEST_QOS = 0
REMEMBERED_REQUESTS = 1024  # request ids awaiting a reply (a timed-out command's id is forgotten eventually)


_encoder = msgspec.json.Encoder()


@dataclass
class _Printer:
    """What the dialect knows of one printer, beyond what ingest stores."""

    klipper: KlipperState  # the merged state (possibly partial until a snapshot or query answer)
    klippy_connected: bool = True
    moonraker_online: bool = False
    moonraker_version: str | None = None
    reported: bool = False  # whether the agent settings (name, version) were reported since the bridge started
    reported_version: str | None = None

    @property
    def known(self) -> bool:
        """Enough to map: Klippy's state and the print's."""
        return "state" in self.klipper.get("webhooks", {}) and print_state(self.klipper) is not None


class MoonrakerDialect(Dialect):
    name = "moonraker"
    clears_silently = frozenset({SERVER_STATUS, AVAILABILITY})
    poll_interval_s: ClassVar[float] = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._printers: dict[int, _Printer] = {}
        # JSON-RPC id -> (printer id, what it asked): commands use their cmd_id; queries and polls ours
        self._requests: OrderedDict[str, tuple[int, str]] = OrderedDict()
        self._prefix = f"printbridge-{uuid.uuid4().hex[:8]}-"
        self._seq = itertools.count()
        self._poller: asyncio.Task[None] | None = None

    # -- topics ------------------------------------------------------------------------------------------

    def subscriptions(self) -> list[str]:
        return [self.ctx.topics.printer("+", leaf) for leaf in sorted(INBOUND)]

    def accepts(self, subtopic: str) -> bool:
        return subtopic in ACCEPTED

    @classmethod
    def broker_permissions(cls, topics: Topics, printer_id: int) -> list[BrokerPermission]:
        """Exactly Moonraker's own topics under the printer's space (its Will is on `moonraker/status`)."""
        t = topics
        return [
            BrokerPermission("publish", t.printer(printer_id, SERVER_STATUS)),
            BrokerPermission("publish", t.printer(printer_id, KLIPPER_STATUS)),
            BrokerPermission("publish", t.printer(printer_id, API_RESPONSE)),
            BrokerPermission("subscribe", t.printer(printer_id, API_REQUEST)),
        ]

    def _state(self, printer_id: int) -> _Printer:
        state = self._printers.get(printer_id)
        if state is None:
            state = self._printers[printer_id] = _Printer(klipper={})
        return state

    # -- inbound -------------------------------------------------------------------------------------------

    def decode(self, rec: PrinterRecord, subtopic: str, payload: bytes, retained: bool) -> Sequence[Input]:
        if subtopic == KLIPPER_STATUS:
            return self._klipper_status(rec, payload)
        if subtopic == API_RESPONSE:
            return self._response(rec, payload)
        if subtopic == SERVER_STATUS:
            return self._server_status(rec, payload)
        if subtopic == DETECTION:
            return (decode_frame(payload),)
        if subtopic == SNAPSHOT:
            return (Snapshot(payload),)
        if subtopic == AVAILABILITY:
            return ()  # the bridge's own mirror of moonraker/status
        raise PayloadError(f"not a {self.name} topic: {subtopic}")

    def _server_status(self, rec: PrinterRecord, payload: bytes) -> Sequence[Input]:
        online = decode_server_status(payload)
        state = self._state(rec.id)
        state.moonraker_online = online
        self.ctx.publisher.publish_nowait(
            self.ctx.topics.availability(rec.id), b"online" if online else b"offline", retain=True
        )
        if online:
            self._ask(rec.id, "printer.objects.query", "query", QUERY)
            self._ask(rec.id, "server.info", "info")
            return (Availability(True),)
        state.klipper = {}  # what Moonraker published before it stopped may be stale when it is back
        return (Availability(False), StatusUpdate(None, None))

    def _klipper_status(self, rec: PrinterRecord, payload: bytes) -> Sequence[Input]:
        delta = decode_klipper_status(payload)
        state = self._state(rec.id)
        state.klippy_connected = True  # Moonraker publishes Klipper's status only while Klippy is connected
        before = state.klipper if state.known else None
        state.klipper = merge_status(state.klipper, delta)
        if not state.known:  # deltas without the snapshot they change (the bridge started mid-way): ask
            self._ask(rec.id, "printer.objects.query", "query", QUERY)
            return (SignOfLife(),)
        return self._status_update(rec, state, before)

    def _response(self, rec: PrinterRecord, payload: bytes) -> Sequence[Input]:
        try:
            request_id = peek_id(payload)
        except RpcFormatError as exc:
            raise PayloadError(f"{API_RESPONSE}: {exc}") from None
        entry = self._requests.get(request_id) if isinstance(request_id, str) else None
        if entry is None or entry[0] != rec.id or not isinstance(request_id, str):
            return ()  # another client's reply on the shared topic
        try:
            reply = decode_reply(payload)
        except RpcFormatError as exc:
            raise PayloadError(f"{API_RESPONSE}: {exc}") from None
        del self._requests[request_id]
        kind = entry[1]
        if kind == "command":
            return (CommandReply(request_id, reply.error is None, reply.error),)
        state = self._state(rec.id)
        if reply.error is not None:
            log.info("printer %d: %s failed: %s (%s)", rec.id, kind, reply.error, reply.code)
            if reply.code == 503:  # Klippy Host not connected
                return self._klippy_gone(rec, state)
            return (SignOfLife(),)
        if kind == "info":
            info = decode_server_info(reply.result)
            state.moonraker_version = info.moonraker_version
            if not info.klippy_connected or info.klippy_state == "disconnected":
                return self._klippy_gone(rec, state)
            if not state.klippy_connected or not state.known:
                state.klippy_connected = True
                self._ask(rec.id, "printer.objects.query", "query", QUERY)
            if self._settings(state) is not None and state.known:  # the version to report: with the status
                return self._status_update(rec, state, state.klipper)
            return (SignOfLife(),)
        full = decode_query_result(reply.result)
        before = state.klipper if state.known else None
        state.klipper = merge_status(state.klipper, full)
        state.klippy_connected = True
        if not state.known:
            return (SignOfLife(),)
        return self._status_update(rec, state, before)

    def _klippy_gone(self, rec: PrinterRecord, state: _Printer) -> Sequence[Input]:
        """Klippy is not connected to Moonraker: no status (offline), the print's fate unknown for now."""
        state.klippy_connected = False
        return (SignOfLife(), StatusUpdate(None, None))

    def _settings(self, state: _Printer) -> bytes | None:
        """The agent settings (`{"agent": {"name": "moonraker", "version": ...}}`) when they are still to be
        reported: never since the bridge started, or Moonraker's version changed."""
        if state.reported and state.reported_version == state.moonraker_version:
            return None
        return _encoder.encode({"agent": {"name": AGENT_NAME, "version": state.moonraker_version}})

    def _status_update(self, rec: PrinterRecord, state: _Printer, before: KlipperState | None) -> Sequence[Input]:
        now = self.ctx.clock()
        settings = self._settings(state)
        if settings is not None:
            state.reported, state.reported_version = True, state.moonraker_version
        name, version = (AGENT_NAME, state.moonraker_version) if settings is not None else (None, None)
        if not is_reachable(state.klipper, state.klippy_connected):
            return (StatusUpdate(None, None, settings, name, version),)
        opened = rec.current_print
        update = print_update(
            before, state.klipper, now, opened.ts if opened else None, opened.filename if opened else None
        )
        status = build_status(state.klipper, now)
        raw = _encoder.encode(status)
        return (
            StatusUpdate(status, raw, settings, name, version, update.current_print_ts, update.event, update.filename),
        )

    # -- requests ------------------------------------------------------------------------------------------

    def _ask(self, printer_id: int, method: str, kind: str, params: dict[str, Any] | None = None) -> None:
        """Send a JSON-RPC request whose reply `_response` handles (queries and polls; not awaited)."""
        request_id = f"{self._prefix}{next(self._seq)}"
        self._remember(request_id, printer_id, kind)
        topic = self.ctx.topics.printer(printer_id, API_REQUEST)
        if not self.ctx.publisher.publish_nowait(topic, encode_request(method, request_id, params), qos=REQUEST_QOS):
            self._requests.pop(request_id, None)

    def _remember(self, request_id: str, printer_id: int, kind: str) -> None:
        self._requests[request_id] = (printer_id, kind)
        while len(self._requests) > REMEMBERED_REQUESTS:
            self._requests.popitem(last=False)

    # -- commands ------------------------------------------------------------------------------------------

    def refuse(self, rec: PrinterRecord, cmd: str) -> str | None:
        """What an agent would refuse from the known state: Klipper itself would say "ok" and do nothing."""
        state = self._printers.get(rec.id)
        if state is None or not state.known:
            return None
        pstate = print_state(state.klipper)
        paused = state.klipper.get("pause_resume", {}).get("is_paused") is True
        if cmd == "pause" and (pstate == "paused" or paused):
            return "already paused"
        if cmd == "resume" and pstate != "paused":
            return "not paused"
        return None

    async def send_command(self, rec: PrinterRecord, request: CommandRequest) -> None:
        """The command's id is the JSON-RPC id. Klipper's PAUSE macro decides how to pause (retract, lift,
        heaters): Moonraker's pause takes no arguments, so `args` are not sent."""
        self._remember(request.cmd_id, rec.id, "command")
        try:
            await self.ctx.publisher.publish(
                self.ctx.topics.printer(rec.id, API_REQUEST),
                encode_request(METHODS[request.cmd], request.cmd_id),
                qos=REQUEST_QOS,
                timeout=self.ctx.command_timeout_s,
            )
        except (NotConnected, TimeoutError) as exc:
            self._requests.pop(request.cmd_id, None)
            raise CommandNotSent(str(exc) or "no answer from the broker") from exc

    def confirmation(self, rec: PrinterRecord, cmd: str) -> Confirmation:
        targets = CONFIRMING[cmd]

        def current(r: PrinterRecord) -> str:
            state = self._printers.get(r.id)
            return (print_state(state.klipper) if state is not None else None) or "unknown"

        def met(r: PrinterRecord) -> bool:
            return current(r) in targets

        def reason(r: PrinterRecord) -> str:
            return f"printer did not {cmd}: state is {current(r)}"

        return Confirmation(met, reason)

    # -- life cycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._poller = asyncio.get_running_loop().create_task(self._poll_forever(), name="moonraker-poll")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    def connected(self) -> None:
        """The bridge's broker connection is up: ask every printer for its whole state now (status is not
        retained); the retained `moonraker/status` will also say which Moonrakers are online."""
        for rec in self.ctx.printers():
            self._ask(rec.id, "printer.objects.query", "query", QUERY)

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            self.poll()

    def poll(self) -> None:
        """`server.info` to every online Moonraker: a silent Klippy disconnect shows in its answer."""
        for rec in self.ctx.printers():
            state = self._printers.get(rec.id)
            if state is not None and state.moonraker_online:
                self._ask(rec.id, "server.info", "info")

    def printer_removed(self, rec: PrinterRecord) -> None:
        """Forget it, and clear the retained topics of its space (Moonraker's status and the mirror)."""
        self._printers.pop(rec.id, None)
        for leaf in (AVAILABILITY, SERVER_STATUS):
            self.ctx.publisher.publish_nowait(self.ctx.topics.printer(rec.id, leaf), b"", retain=True)
