"""What users and consumers see of a printer: the REST Printer object (docs/rest.md), the retained state
and events (docs/mqtt.md). Pure builders; the agent's JSON passes through as `msgspec.Raw`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from bridge.domain.models import PrinterRecord, PrintRecord, not_watching_reason


def to_datetime(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def to_iso(epoch: float | None) -> str | None:
    dt = to_datetime(epoch)
    return None if dt is None else dt.isoformat().replace("+00:00", "Z")


class Pic(msgspec.Struct):
    img_url: str


class Print(msgspec.Struct, omit_defaults=False):
    id: int
    printer: int
    filename: str | None
    started_at: datetime | None
    ended_at: datetime | None
    finished_at: datetime | None
    cancelled_at: datetime | None
    alerted_at: datetime | None
    alert_acknowledged_at: datetime | None
    alert_muted_at: datetime | None
    paused_at: datetime | None
    alert_overwrite: str | None
    print_time: float | None


class Printer(msgspec.Struct, omit_defaults=False):
    id: int
    name: str
    created_at: datetime
    dialect: str
    action_on_failure: str
    watching_enabled: bool
    not_watching_reason: str | None
    tools_off_on_pause: bool
    bed_off_on_pause: bool
    retract_on_pause: float
    lift_z_on_pause: float
    detective_sensitivity: float
    min_timelapse_secs_on_finish: int
    min_timelapse_secs_on_cancel: int
    archived_at: datetime | None
    agent_name: str | None
    agent_version: str | None
    auth_token: str
    pic: Pic | None
    status: msgspec.Raw | None
    settings: msgspec.Raw
    current_print: Print | None
    normalized_p: float


def build_print(p: PrintRecord) -> Print:
    return Print(
        id=p.id,
        printer=p.printer_id,
        filename=p.filename,
        started_at=to_datetime(p.started_at),
        ended_at=to_datetime(p.ended_at),
        finished_at=to_datetime(p.finished_at),
        cancelled_at=to_datetime(p.cancelled_at),
        alerted_at=to_datetime(p.alerted_at),
        alert_acknowledged_at=to_datetime(p.alert_acknowledged_at),
        alert_muted_at=to_datetime(p.alert_muted_at),
        paused_at=to_datetime(p.paused_at),
        alert_overwrite=p.alert_overwrite,
        print_time=p.print_time,
    )


def build_printer(r: PrinterRecord) -> Printer:
    online = r.online
    return Printer(
        id=r.id,
        name=r.name,
        created_at=datetime.fromtimestamp(r.created_at, UTC),
        dialect=r.dialect,
        action_on_failure=r.action_on_failure,
        watching_enabled=r.watching_enabled,
        not_watching_reason=not_watching_reason(r),
        tools_off_on_pause=r.tools_off_on_pause,
        bed_off_on_pause=r.bed_off_on_pause,
        retract_on_pause=r.retract_on_pause,
        lift_z_on_pause=r.lift_z_on_pause,
        detective_sensitivity=r.detective_sensitivity,
        min_timelapse_secs_on_finish=r.min_timelapse_secs_on_finish,
        min_timelapse_secs_on_cancel=r.min_timelapse_secs_on_cancel,
        archived_at=to_datetime(r.archived_at),
        agent_name=r.agent_name,
        agent_version=r.agent_version,
        auth_token=r.auth_token,
        pic=Pic(img_url=f"/api/v1/printers/{r.id}/pic") if r.has_pic else None,
        status=msgspec.Raw(r.status_raw) if online and r.status_raw is not None else None,
        settings=msgspec.Raw(r.settings_raw),
        current_print=build_print(r.current_print) if r.current_print else None,
        normalized_p=r.normalized_p if r.current_print else 0.0,
    )


_encoder = msgspec.json.Encoder()


def encode_printer(r: PrinterRecord) -> bytes:
    return _encoder.encode(build_printer(r))


# -- consumers (docs/mqtt.md) ---------------------------------------------------------------------


class PrinterState(msgspec.Struct, omit_defaults=False):
    id: int
    name: str
    online: bool
    state_text: str | None
    printing: bool
    paused: bool
    progress: float | None
    time_left_s: int | None
    file: str | None
    temperatures: msgspec.Raw
    normalized_p: float
    alert_outstanding: bool
    muted: bool
    not_watching_reason: str | None
    current_print_id: int | None
    updated_at: str | None = None


def build_state(r: PrinterRecord) -> PrinterState:
    """The derived state without `updated_at`; compare two of these to know whether to publish."""
    online = r.online
    cp = r.current_print
    return PrinterState(
        id=r.id,
        name=r.name,
        online=online,
        state_text=r.state_text if online else None,
        printing=online and r.flag_printing,
        paused=online and r.flag_paused,
        progress=r.progress if online else None,
        time_left_s=r.time_left_s if online else None,
        file=(r.job_file or (cp.filename if cp else None)) if online else None,
        temperatures=msgspec.Raw(r.temperatures_raw if online else b"{}"),
        normalized_p=r.normalized_p if cp else 0.0,
        alert_outstanding=cp.alert_outstanding if cp else False,
        muted=r.muted,
        not_watching_reason=not_watching_reason(r),
        current_print_id=cp.id if cp else None,
    )


def state_key(state: PrinterState) -> bytes:
    """A comparable form of a state (without updated_at)."""
    return _encoder.encode(msgspec.structs.replace(state, updated_at=None))


def encode_state(state: PrinterState, now: float) -> bytes:
    return _encoder.encode(msgspec.structs.replace(state, updated_at=to_iso(now)))


class PrinterRef(msgspec.Struct):
    id: int
    name: str


class Event(msgspec.Struct, omit_defaults=False):
    event_type: str
    printer: PrinterRef
    print: Print | None
    ts: float


def encode_event(event_type: str, r: PrinterRecord, p: PrintRecord | None, now: float) -> bytes:
    return _encoder.encode(
        Event(
            event_type=event_type,
            printer=PrinterRef(id=r.id, name=r.name),
            print=build_print(p) if p else None,
            ts=now,
        )
    )


def parse_status_fields(status: dict[str, Any]) -> dict[str, Any]:
    """Read the fields the bridge derives from an agent status object; tolerant of missing parts."""
    out: dict[str, Any] = {
        "state_text": None,
        "flag_printing": False,
        "flag_paused": False,
        "progress": None,
        "time_left_s": None,
        "job_file": None,
        "print_time_s": None,
    }
    state = status.get("state")
    if isinstance(state, dict):
        text = state.get("text")
        out["state_text"] = text if isinstance(text, str) else None
        flags = state.get("flags")
        if isinstance(flags, dict):
            out["flag_printing"] = flags.get("printing") is True
            out["flag_paused"] = flags.get("paused") is True
    progress = status.get("progress")
    if isinstance(progress, dict):
        completion = progress.get("completion")
        if isinstance(completion, int | float) and not isinstance(completion, bool):
            out["progress"] = float(completion)
        spent = progress.get("printTime")
        if isinstance(spent, int | float) and not isinstance(spent, bool):
            out["print_time_s"] = float(spent)
        left = progress.get("printTimeLeft")
        if isinstance(left, int | float) and not isinstance(left, bool):
            out["time_left_s"] = int(left)
    job = status.get("job")
    if isinstance(job, dict):
        file = job.get("file")
        if isinstance(file, dict) and isinstance(file.get("name"), str):
            out["job_file"] = file["name"]
    return out
