"""The interface a printer dialect implements, and what the bridge hands it (see `bridge.dialects`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from bridge.domain.inputs import Input, PayloadError
from bridge.domain.models import PrinterRecord
from bridge.mqtt.link import MqttLink
from bridge.mqtt.topics import Topics


class CommandNotSent(RuntimeError):
    """The command could not be handed to the printer (no connection); its outcome is `not_sent`."""


class DialectConfigError(ValueError):
    """A dialect's per-printer settings are invalid; `field` names the offending key (REST answers 400)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class DialectContext:
    """What the bridge gives every dialect instance."""

    topics: Topics
    # The bridge's broker connection: `await publish(topic, payload, qos=, retain=, response_topic=,
    # correlation=, timeout=)` waits for the broker (raises NotConnected or TimeoutError);
    # `publish_nowait(topic, payload, qos=, retain=)` queues and says False when the connection is down.
    publisher: MqttLink
    clock: Callable[[], float]
    command_timeout_s: float
    # Feed inputs for a printer into ingest (for a dialect that owns its transport; broker dialects return
    # their inputs from `decode`). Must be called on the event loop's thread.
    deliver: Callable[[int, Sequence[Input]], None]
    # The live (not archived) printers of this dialect, as the bridge holds them now.
    printers: Callable[[], Sequence[PrinterRecord]]
    # Store what a dialect learned about a printer as its settings (`printer.dialect_config`), e.g. a
    # certificate pinned at first contact. Must be called on the event loop's thread.
    save_config: Callable[[int, dict[str, Any]], None] = lambda _printer_id, _config: None
    # For a dialect that owns its connections: the longest wait between two attempts to reach a printer.
    reconnect_cap_s: float = 30.0


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """A command to encode: `cmd` is pause / resume / cancel; `cmd_id` is how its reply is matched."""

    cmd_id: str
    cmd: str
    args: dict[str, Any]
    initiator: str
    ts: float


@dataclass(frozen=True, slots=True)
class Confirmation:
    """After a positive reply, the command succeeds only once `met(printer)` holds on a later status update
    (or already does), within the command timeout; otherwise it fails with `reason(printer)`."""

    met: Callable[[PrinterRecord], bool]
    reason: Callable[[PrinterRecord], str]


class BrokerPermission(NamedTuple):
    """One entry of a printer account's broker role: `publish` (the printer may publish to `topic`) or
    `subscribe` (it may subscribe to exactly `topic`)."""

    kind: str  # "publish" | "subscribe"
    topic: str


class Dialect:
    """One printer protocol. One instance per dialect serves all printers of that dialect.

    Override what the protocol needs; the defaults describe a dialect with no broker topics, no
    per-printer settings and nothing to start.
    """

    name: ClassVar[str]
    # Sub-topics (below `B/printers/{id}/`) on which an empty payload for an unknown printer is the normal
    # clearing of a retained message, not worth a log line.
    clears_silently: ClassVar[frozenset[str]] = frozenset()
    # Whether printers of this dialect take settings of their own (`validate_config`).
    takes_config: ClassVar[bool] = False

    def __init__(self, ctx: DialectContext) -> None:
        self.ctx = ctx

    # -- per-printer settings (class level: validated before any printer exists) --------------------------

    @classmethod
    def validate_config(cls, value: Any, current: Mapping[str, Any]) -> dict[str, Any]:
        """The REST body's `"<dialect name>": {...}` object -> the settings to store (merged over `current`
        on PATCH). Raise DialectConfigError naming the key (relative to the object)."""
        raise DialectConfigError("", "this dialect takes no settings")

    # -- the bridge's broker ---------------------------------------------------------------------------------

    def subscriptions(self) -> list[str]:
        """Topic filters the bridge subscribes to for this dialect (from `ctx.topics` or built here)."""
        return []

    def accepts(self, subtopic: str) -> bool:
        """Whether `subtopic` (what follows `B/printers/{id}/`) is one of this dialect's inbound topics."""
        return False

    @classmethod
    def broker_permissions(cls, topics: Topics, printer_id: int) -> list[BrokerPermission]:
        """What a printer of this dialect may do on the bridge's broker (class level: the command line
        provisions accounts without a running dialect). Empty: it gets no broker account (a dialect that
        reaches its printers over its own connection)."""
        return []

    def decode(self, rec: PrinterRecord, subtopic: str, payload: bytes, retained: bool) -> Sequence[Input]:
        """Decode one message on an accepted subtopic; validate it fully (raise PayloadError) before
        returning, and change nothing of `rec`."""
        raise PayloadError(f"{self.name}: no inbound topics")

    # -- commands -----------------------------------------------------------------------------------------

    def refuse(self, rec: PrinterRecord, cmd: str) -> str | None:
        """A reason not to send `cmd` at all, judged from the known state (recorded as refused)."""
        return None

    async def send_command(self, rec: PrinterRecord, request: CommandRequest) -> None:
        """Hand the command to the printer; raise CommandNotSent when it cannot be. The reply comes back
        as a CommandReply input with `request.cmd_id`."""
        raise CommandNotSent(f"{self.name}: commands are not supported")

    def confirmation(self, rec: PrinterRecord, cmd: str) -> Confirmation | None:
        """None: the printer's positive reply is success. Otherwise also await the confirmation."""
        return None

    # -- life cycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Called once when the bridge starts (after the printers are loaded): start tasks, connections."""

    async def stop(self) -> None:
        """Called once when the bridge stops: stop what `start` started."""

    def connected(self) -> None:
        """The bridge's broker connection is (again) up: e.g. query printers for their full state."""

    def printer_added(self, rec: PrinterRecord) -> None:
        """A printer of this dialect was created or unarchived (by the API or another process)."""

    def printer_changed(self, rec: PrinterRecord) -> None:
        """A printer's configuration or dialect settings changed."""

    def printer_removed(self, rec: PrinterRecord) -> None:
        """A printer was deleted or archived: forget its state, close its connection."""
