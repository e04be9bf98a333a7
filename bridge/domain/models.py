"""The printer and print records the bridge keeps, and the derived views of them. Pure: no I/O."""

from __future__ import annotations

from typing import Any

import msgspec

from bridge.domain import detection

ACTION_ON_FAILURE = ("PAUSE", "NONE")
ALERT_OVERWRITES = ("FAILED", "NOT_FAILED")


class PrintRecord(msgspec.Struct, kw_only=True):
    """One print job; times are epoch seconds."""

    id: int
    printer_id: int
    ts: float  # the agent's current_print_ts
    filename: str | None = None
    started_at: float
    ended_at: float | None = None
    finished_at: float | None = None
    cancelled_at: float | None = None
    alerted_at: float | None = None
    alert_acknowledged_at: float | None = None
    alert_muted_at: float | None = None
    paused_at: float | None = None
    alert_overwrite: str | None = None
    print_time: float | None = None

    @property
    def alert_outstanding(self) -> bool:
        return detection.alert_outstanding(self.alerted_at, self.alert_acknowledged_at)


class PrinterRecord(msgspec.Struct, kw_only=True):
    """A printer as the bridge holds it in memory; `status_raw` and `settings_raw` are the agent's JSON."""

    id: int
    owner_id: int
    name: str
    created_at: float
    auth_token: str
    dialect: str = "printbridge"  # the protocol the printer speaks (bridge.dialects); fixed at creation
    dialect_config: dict[str, Any] = msgspec.field(default_factory=dict)  # the dialect's own settings
    action_on_failure: str = "PAUSE"
    watching_enabled: bool = True
    tools_off_on_pause: bool = True
    bed_off_on_pause: bool = False
    retract_on_pause: float = 6.5
    lift_z_on_pause: float = 2.5
    detective_sensitivity: float = 1.0
    min_timelapse_secs_on_finish: int = 600
    min_timelapse_secs_on_cancel: int = 300
    archived_at: float | None = None
    agent_name: str | None = None
    agent_version: str | None = None
    settings_raw: bytes = b"{}"
    status_raw: bytes | None = None
    status_ts: float | None = None  # the agent's status._ts of the stored status
    status_received_at: float | None = None
    available: bool | None = None  # from the availability topic; None before any
    stale: bool = False  # status older than the TTL (kept current by the sweeper)
    # Parsed from the stored status, for derived views.
    state_text: str | None = None
    flag_printing: bool = False
    flag_paused: bool = False
    progress: float | None = None
    time_left_s: int | None = None
    job_file: str | None = None
    print_time_s: float | None = None
    temperatures_raw: bytes = b"{}"
    temperature_keys: tuple[str, ...] = ()
    has_pic: bool = False
    normalized_p: float = 0.0
    prediction_raw: bytes = b"{}"
    current_print: PrintRecord | None = None

    @property
    def online(self) -> bool:
        return self.status_raw is not None and not self.stale and self.available is not False

    @property
    def muted(self) -> bool:
        return self.current_print is not None and self.current_print.alert_muted_at is not None


# The printer settings an owner chooses (REST and command line); their defaults are PrinterRecord's.
SETTINGS_FIELDS = (
    "action_on_failure",
    "watching_enabled",
    "tools_off_on_pause",
    "bed_off_on_pause",
    "retract_on_pause",
    "lift_z_on_pause",
    "detective_sensitivity",
    "min_timelapse_secs_on_finish",
    "min_timelapse_secs_on_cancel",
)


def printer_defaults() -> dict[str, Any]:
    """Each setting's default, as PrinterRecord declares it."""
    fields = {f.name: f for f in msgspec.structs.fields(PrinterRecord)}
    return {name: fields[name].default for name in SETTINGS_FIELDS}


def visible_to(printer: PrinterRecord, user_id: int, with_archived: bool = False) -> bool:
    """The one rule of which printers a user sees: their own, archived ones only when asked for."""
    return printer.owner_id == user_id and (with_archived or printer.archived_at is None)


def not_watching_reason(printer: PrinterRecord) -> str | None:
    """docs/detection.md, first match wins."""
    if not printer.watching_enabled:
        return detection.REASON_DISABLED
    if not printer.online or not printer.flag_printing:
        return detection.REASON_NOT_PRINTING
    if printer.muted:
        return detection.REASON_MUTED
    return None


def should_watch(printer: PrinterRecord) -> bool:
    """`remote_status.should_watch`; also whether a detection frame is counted (docs/detection.md)."""
    return printer.watching_enabled and printer.current_print is not None and not printer.muted


def pause_args(printer: PrinterRecord) -> dict[str, Any]:
    """The `args` of a pause command (docs/mqtt.md, Commands)."""
    args: dict[str, Any] = {"retract": printer.retract_on_pause, "lift_z": printer.lift_z_on_pause}
    if printer.tools_off_on_pause:
        args["tools_off"] = True
    if printer.bed_off_on_pause:
        args["bed_off"] = True
    return args
