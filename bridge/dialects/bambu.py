"""The `bambu` dialect: Bambu Lab printers in LAN mode, reached by an outbound connection to each printer's
own broker (`bridge.bambu`). Printers of this dialect get no account on the bridge's broker.

Settings (the REST body's `bambu` object): `host`, `serial`, `access_code` (required on creation; the code
is write-only: stored, used to connect, never shown or logged), `port` (default 8883) and `ca` (PEM text of
a CA to verify the printer's certificate against; without it the certificate seen at first contact is
pinned). PATCH changes only the fields given; giving `ca` (a PEM, or null) or another host or serial
forgets the pinned certificate.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from bridge.bambu.connection import BambuConnections, NotReachable
from bridge.bambu.protocol import confirmed, not_confirmed, refusal
from bridge.bambu.trust import BambuTarget
from bridge.dialects.base import (
    BrokerPermission,
    CommandNotSent,
    CommandRequest,
    Confirmation,
    Dialect,
    DialectConfigError,
    DialectContext,
)
from bridge.dialects.printbridge import DETECTION, SNAPSHOT, decode_frame
from bridge.domain.bambu_setup import DEFAULT_PORT
from bridge.domain.inputs import Input, PayloadError, Snapshot
from bridge.domain.models import PrinterRecord
from bridge.mqtt.tls import CertificateProblem, check_ca_pem
from bridge.mqtt.topics import Topics

FIELDS = ("host", "serial", "access_code", "port", "ca")
REQUIRED = ("host", "serial", "access_code")
PINNED = "pinned"  # the certificate pinned at first contact (PEM), kept with the settings
MAX_CA_CHARS = 64 * 1024
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_SERIAL = re.compile(r"^[A-Za-z0-9]{4,32}$")


def _host(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DialectConfigError("host", "expected the printer's IP address or host name")
    text = value.strip()
    try:
        ipaddress.ip_address(text)
    except ValueError:
        if not _HOSTNAME.match(text):
            raise DialectConfigError("host", "expected the printer's IP address or host name") from None
    return text


def _serial(value: Any) -> str:
    if not isinstance(value, str) or not _SERIAL.match(value.strip()):
        raise DialectConfigError("serial", "expected the printer's serial number (letters and digits)")
    return value.strip()


def _access_code(value: Any) -> str:
    # 8 characters on current firmware; accept any printable code without spaces, but never echo it.
    if not isinstance(value, str) or not value or len(value) > 64 or not value.isprintable() or " " in value:
        raise DialectConfigError("access_code", "expected the LAN access code shown on the printer's screen")
    return value


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise DialectConfigError("port", "expected a port number 1-65535")
    return value


def _ca(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_CA_CHARS:
        raise DialectConfigError("ca", "expected PEM text of a CA certificate, or null")
    try:
        return check_ca_pem(value)
    except CertificateProblem as exc:
        raise DialectConfigError("ca", str(exc)) from None


_CHECKS = {"host": _host, "serial": _serial, "access_code": _access_code, "port": _port, "ca": _ca}


def target_of(rec: PrinterRecord) -> BambuTarget | None:
    config = rec.dialect_config
    if not all(isinstance(config.get(k), str) for k in REQUIRED):
        return None
    return BambuTarget(
        printer_id=rec.id,
        host=config["host"],
        port=int(config.get("port", DEFAULT_PORT)),
        serial=config["serial"],
        access_code=config["access_code"],
        ca_pem=config.get("ca"),
        pinned_pem=config.get(PINNED),
    )


class BambuDialect(Dialect):
    name = "bambu"
    takes_config = True

    @classmethod
    def validate_config(cls, value: Any, current: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(value, dict) or (not value and not current):
            raise DialectConfigError("", "required: an object {host, serial, access_code, port?, ca?}")
        for key in value:
            if key not in FIELDS:
                raise DialectConfigError(str(key), f"unknown field; expected {', '.join(FIELDS)}")
        merged = dict(current)
        for key, raw in value.items():
            checked = _CHECKS[key](raw)
            if key == "ca" and checked is None:
                merged.pop("ca", None)
            else:
                merged[key] = checked
        for key in REQUIRED:
            if key not in merged:
                raise DialectConfigError(key, "this field is required")
        moved = any(merged.get(k) != current.get(k) for k in ("host", "serial", "port"))
        if "ca" in value or moved:
            merged.pop(PINNED, None)  # trust is decided again: by the CA given, or at the next first contact
        return merged

    def __init__(self, ctx: DialectContext) -> None:
        super().__init__(ctx)
        self.connections = BambuConnections(self, ctx.clock, backoff_cap_s=ctx.reconnect_cap_s)
        self._printers: dict[int, PrinterRecord] = {}

    # -- the bridge's broker: what a camera or detector sends for the printer ------------------------------
    # A Bambu printer reports to its own broker; on the bridge's, its account (`printer-{id}` with its
    # auth_token) may only publish detection frames and snapshots, for a detector or a camera bridge that
    # watches it (failure detection works as for any printer).

    @classmethod
    def broker_permissions(cls, topics: Topics, printer_id: int) -> list[BrokerPermission]:
        return [
            BrokerPermission("publish", topics.detection(printer_id)),
            BrokerPermission("publish", topics.snapshot(printer_id)),
        ]

    def subscriptions(self) -> list[str]:
        return [self.ctx.topics.printer("+", DETECTION), self.ctx.topics.printer("+", SNAPSHOT)]

    def accepts(self, subtopic: str) -> bool:
        return subtopic in (DETECTION, SNAPSHOT)

    def decode(self, rec: PrinterRecord, subtopic: str, payload: bytes, retained: bool) -> Sequence[Input]:
        if subtopic == DETECTION:
            return (decode_frame(payload),)
        if subtopic == SNAPSHOT:
            return (Snapshot(payload),)
        raise PayloadError(f"not a {self.name} topic: {subtopic}")

    # -- life cycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        for rec in self.ctx.printers():
            self.printer_added(rec)

    async def stop(self) -> None:
        await self.connections.stop()

    def printer_added(self, rec: PrinterRecord) -> None:
        self._printers[rec.id] = rec
        target = target_of(rec)
        if target is None:
            self.connections.remove(rec.id)
        else:
            self.connections.put(target)

    def printer_changed(self, rec: PrinterRecord) -> None:
        self.printer_added(rec)

    def printer_removed(self, rec: PrinterRecord) -> None:
        self._printers.pop(rec.id, None)
        self.connections.remove(rec.id)

    # -- what the connections report (BambuEvents) ---------------------------------------------------------

    def bambu_inputs(self, printer_id: int, inputs: list[Input]) -> None:
        self.ctx.deliver(printer_id, inputs)

    def bambu_pinned(self, printer_id: int, pem: str) -> None:
        rec = self._printers.get(printer_id)
        if rec is not None:
            self.ctx.save_config(printer_id, {**rec.dialect_config, PINNED: pem})

    def bambu_open_print(self, printer_id: int) -> tuple[float, str | None] | None:
        rec = self._printers.get(printer_id)
        p = rec.current_print if rec is not None else None
        return None if p is None else (p.ts, p.filename)

    # -- commands -----------------------------------------------------------------------------------------

    def _gcode_state(self, rec: PrinterRecord) -> str | None:
        connection = self.connections.get(rec.id)
        return connection.gcode_state if connection is not None else None

    def refuse(self, rec: PrinterRecord, cmd: str) -> str | None:
        return refusal(cmd, self._gcode_state(rec))

    async def send_command(self, rec: PrinterRecord, request: CommandRequest) -> None:
        connection = self.connections.get(rec.id)
        if connection is None:
            raise CommandNotSent("the printer has no connection")
        try:
            await connection.send(request.cmd, request.cmd_id)
        except NotReachable as exc:
            raise CommandNotSent(str(exc)) from exc

    def confirmation(self, rec: PrinterRecord, cmd: str) -> Confirmation:
        """The echo's `result` is sometimes absent and proves little: the gcode_state must follow."""
        return Confirmation(
            met=lambda r: confirmed(cmd, self._gcode_state(r)),
            reason=lambda r: not_confirmed(cmd, self._gcode_state(r)),
        )
