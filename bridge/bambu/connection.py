"""The bridge's outbound connections to Bambu printers: one supervised session per printer.

Each `PrinterConnection` checks the printer's certificate (against the user's CA, or pinned at first
contact and compared ever after) with a TLS handshake of its own before it sends the access code, then
holds an MQTT session on the printer's broker, merges its reports and hands the bridge SPEC 5.2 agent
messages. When the printer is switched off the connection waits with exponential backoff; an attempt costs
one refused or timed-out TCP connect. The session being up is the printer's availability.

`BambuConnections.sync(targets)` starts, restarts (a changed host, serial, access code, port or CA) and
stops connections at runtime. The access code is never logged and never leaves this module but to the
printer's broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from bridge.bambu.protocol import (
    encode_print_command,
    encode_pushall,
    judge_reply,
    report_topic,
    request_topic,
)
from bridge.bambu.pushall import PushallLimiter
from bridge.bambu.report import (
    Lifecycle,
    ReportError,
    build_message,
    connection_error_update,
    decode_report,
    merge,
    replies,
    status_delta,
    to_update,
)
from bridge.bambu.trust import BambuTarget, CertificateRefused, trusted_context
from bridge.domain.bambu_setup import USERNAME
from bridge.domain.inputs import Availability, CommandReply, Input, SignOfLife
from bridge.mqtt.droplog import DropLog
from bridge.mqtt.link import Incoming
from bridge.mqtt.peerlink import PeerError, PeerParams, PeerRefused, PeerSession, run_session
from bridge.mqtt.tls import fingerprint, pem_to_der

log = logging.getLogger("printbridge.bambu")

BACKOFF_START_S = 1.0
CONNECT_TIMEOUT_S = 5.0  # a printer on the LAN answers in milliseconds; a lost CONNACK is retried sooner
# An idle P1 may report nothing for minutes; its session (MQTT keepalive 30 s) shows it is there, and this
# often the bridge says so, so that its status is not served as stale.
LIVENESS_INTERVAL_S = 20.0


class BambuEvents(Protocol):
    """What the connections tell the bridge."""

    def bambu_inputs(self, printer_id: int, inputs: list[Input]) -> None:
        """Normalised inputs: the status built from the merged state, availability, command replies."""

    def bambu_pinned(self, printer_id: int, pem: str) -> None:
        """Record the certificate pinned at first contact."""

    def bambu_open_print(self, printer_id: int) -> tuple[float, str | None] | None:
        """(ts, filename) of the print the bridge has open for this printer."""


class NotReachable(RuntimeError):
    """No session with the printer: nothing was sent."""


class PrinterConnection:
    def __init__(
        self,
        target: BambuTarget,
        events: BambuEvents,
        clock: Callable[[], float],
        pushall: PushallLimiter,
        backoff_cap_s: float,
        drops: DropLog,
    ) -> None:
        self.target = target
        self.events = events
        self.clock = clock
        self.pushall = pushall
        self.backoff_cap_s = backoff_cap_s
        self.drops = drops
        self.state: dict[str, Any] = {}  # the merged report; survives reconnects
        self.lifecycle = Lifecycle()
        self.session: PeerSession | None = None
        self.connected = False
        self.phase = "connecting"  # connecting | connected | unreachable | refused | certificate
        self.last_error: str | None = None
        self.attempts = 0
        self.sessions = 0
        self._first_message = True
        self._reset_backoff = False
        self._task: asyncio.Task[None] | None = None

    @property
    def serial(self) -> str:
        return self.target.serial

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"bambu-{self.target.printer_id}")

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def when_done(self, callback: Callable[[], None]) -> None:
        if self._task is None or self._task.done():
            callback()
        else:
            self._task.add_done_callback(lambda _task: callback())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- supervision --------------------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = BACKOFF_START_S
        while True:
            self.attempts += 1
            try:
                context = await self._tls_context()
                params = PeerParams(
                    host=self.target.host,
                    port=self.target.port,
                    username=USERNAME,
                    password=self.target.access_code,
                    tls=context,
                    client_id=f"printbridge-{uuid.uuid4().hex[:12]}",
                    timeout_s=CONNECT_TIMEOUT_S,
                )
                await run_session(params, [report_topic(self.serial)], self._on_message, self._on_ready)
                self._lost("unreachable", "the printer closed the connection")
            except PeerRefused:
                self._lost(
                    "refused",
                    "the printer refused the access code: check it on the printer's screen (it changes when "
                    "the printer is reset) and PATCH bambu.access_code",
                )
            except CertificateRefused as exc:
                self._lost("certificate", str(exc))
            except (PeerError, OSError, TimeoutError, ssl.SSLError) as exc:
                self._lost("unreachable", f"cannot reach the printer at {self._address}: {exc or type(exc).__name__}")
            except Exception as exc:  # a bug must not end the supervision: log it, and try again later
                log.exception(
                    "bambu printer %d (%s): connection failed unexpectedly", self.target.printer_id, self.serial
                )
                self._lost("unreachable", f"unexpected error: {type(exc).__name__}: {exc}")
            if self._reset_backoff:  # it was connected: the next loss starts the backoff afresh
                delay, self._reset_backoff = BACKOFF_START_S, False
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_cap_s)

    @property
    def _address(self) -> str:
        return f"{self.target.host}:{self.target.port}"

    def _lost(self, phase: str, error: str) -> None:
        was_connected = self.connected
        self.connected = False
        self.session = None
        self.phase = phase
        if error != self.last_error or was_connected:
            level = logging.WARNING if phase in ("unreachable",) else logging.ERROR
            log.log(level, "bambu printer %d (%s): %s", self.target.printer_id, self.serial, error)
        self.last_error = error
        if phase in ("refused", "certificate"):  # the user must act: say so where the status is seen
            self.events.bambu_inputs(self.target.printer_id, [connection_error_update(error, self.clock())])
        elif was_connected:
            self.events.bambu_inputs(self.target.printer_id, [Availability(False)])

    async def _tls_context(self) -> ssl.SSLContext:
        context, pinned = await trusted_context(self.target, CONNECT_TIMEOUT_S)
        if pinned is not None:
            self.target = dataclasses.replace(self.target, pinned_pem=pinned)
            log.info(
                "bambu printer %d (%s): pinned its certificate (sha256 %s)",
                self.target.printer_id,
                self.serial,
                fingerprint(pem_to_der(pinned)),
            )
            self.events.bambu_pinned(self.target.printer_id, pinned)
        return context

    async def _on_ready(self, session: PeerSession) -> None:
        self.session = session
        self.connected = True
        self.sessions += 1
        self.phase = "connected"
        if self.last_error is not None:
            log.info("bambu printer %d (%s): connected again", self.target.printer_id, self.serial)
        self.last_error = None
        self._reset_backoff = True
        self._first_message = True
        self.events.bambu_inputs(self.target.printer_id, [Availability(True)])
        if self.pushall.may_ask(self.pushall_key):
            await session.publish(request_topic(self.serial), encode_pushall(uuid.uuid4().hex[:8]), qos=1)
        elif self.state:
            self._publish_state()  # what we knew before the reconnect still stands

    @property
    def pushall_key(self) -> str:
        return f"{self.target.printer_id}/{self.serial}"

    # -- reports ------------------------------------------------------------------------------------------

    def _on_message(self, msg: Incoming) -> None:
        try:
            report = decode_report(msg.payload)
        except ReportError as exc:
            self.drops.drop(msg.topic, str(exc))
            return
        inputs: list[Input] = []
        for reply in replies(report):
            verdict = judge_reply(reply)
            inputs.append(CommandReply(reply.sequence_id, verdict is None, verdict.error if verdict else None))
        delta = status_delta(report)
        if delta is not None:
            merge(self.state, delta)
        if inputs:  # replies first: a confirmation then waits for the state this very report may bring
            self.events.bambu_inputs(self.target.printer_id, inputs)
        if delta is not None:
            self._publish_state()

    def _publish_state(self) -> None:
        printer_id = self.target.printer_id
        message = build_message(self.state, self.lifecycle, self.clock(), self.events.bambu_open_print(printer_id))
        if message is None:
            return
        update = to_update(message, with_settings=self._first_message)
        self._first_message = False
        self.events.bambu_inputs(printer_id, [update])

    @property
    def gcode_state(self) -> str | None:
        value = self.state.get("gcode_state")
        return value if isinstance(value, str) else None

    async def send(self, cmd: str, cmd_id: str) -> None:
        """Publish pause/resume/cancel with `cmd_id` as its sequence_id, at QoS 1; the echo comes back as a
        CommandReply. Raises NotReachable when there is no session."""
        session = self.session
        if session is None or not self.connected:
            raise NotReachable("no connection to the printer")
        try:
            await session.publish(request_topic(self.serial), encode_print_command(cmd, cmd_id), qos=1)
        except PeerError as exc:
            raise NotReachable(str(exc)) from exc


class BambuConnections:
    """Every Bambu printer's connection, kept in step with the printers the bridge has."""

    def __init__(self, events: BambuEvents, clock: Callable[[], float], *, backoff_cap_s: float = 30.0) -> None:
        self.events = events
        self.clock = clock
        self.backoff_cap_s = backoff_cap_s
        self.pushall = PushallLimiter(clock)
        self.drops = DropLog()
        self._connections: dict[int, PrinterConnection] = {}
        self._stopping: set[PrinterConnection] = set()  # cancelled, awaited at shutdown
        self._liveness_task: asyncio.Task[None] | None = None

    def get(self, printer_id: int) -> PrinterConnection | None:
        return self._connections.get(printer_id)

    async def _liveness(self) -> None:
        while True:
            await asyncio.sleep(LIVENESS_INTERVAL_S)
            for printer_id, connection in list(self._connections.items()):
                if connection.connected:
                    self.events.bambu_inputs(printer_id, [SignOfLife()])

    def __len__(self) -> int:
        return len(self._connections)

    def sync(self, targets: list[BambuTarget]) -> None:
        """Start connections for new printers, restart changed ones, stop those no longer wanted."""
        wanted = {t.printer_id: t for t in targets}
        for printer_id in [p for p in self._connections if p not in wanted]:
            self.remove(printer_id)
        for target in wanted.values():
            self.put(target)

    def put(self, target: BambuTarget) -> None:
        """Connect to `target`, replacing the printer's connection if its address or credentials changed."""
        current = self._connections.get(target.printer_id)
        if current is not None and current.target.same_session(target):
            return
        same_printer = current is not None and current.serial == target.serial
        if current is not None:
            self.remove(target.printer_id, keep_pushall=same_printer)
        if self._liveness_task is None:
            self._liveness_task = asyncio.get_running_loop().create_task(self._liveness(), name="bambu-liveness")
        connection = PrinterConnection(target, self.events, self.clock, self.pushall, self.backoff_cap_s, self.drops)
        if current is not None and same_printer:
            # The same printer (a new access code, another address): what it reported still stands, and it may
            # not be asked for everything again within five minutes.
            connection.state, connection.lifecycle = current.state, current.lifecycle
        self._connections[target.printer_id] = connection
        connection.start()

    def remove(self, printer_id: int, *, keep_pushall: bool = False) -> None:
        connection = self._connections.pop(printer_id, None)
        if connection is None:
            return
        connection.cancel()
        self._stopping.add(connection)
        connection.when_done(lambda: self._stopping.discard(connection))
        if not keep_pushall:
            self.pushall.forget(connection.pushall_key)
        if connection.connected:
            connection.connected = False
            self.events.bambu_inputs(printer_id, [Availability(False)])

    async def stop(self) -> None:
        if self._liveness_task is not None:
            self._liveness_task.cancel()
            self._liveness_task = None
        for printer_id in list(self._connections):
            self.remove(printer_id)
        for connection in list(self._stopping):
            await connection.stop()
        self._stopping.clear()
