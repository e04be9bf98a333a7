"""Reading the parts of an agent's status object that the bridge derives views from. Pure."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from bridge.domain.models import PrinterRecord
from bridge.domain.views import parse_status_fields

_decoder = msgspec.json.Decoder(dict[str, Any])
_encoder = msgspec.json.Encoder()


def _temp(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def normalize_temperatures(temps: Any) -> dict[str, dict[str, float | None]]:
    """`{"tool0": {"actual": 220.0, "target": 220.0}, ...}` keeping only well-formed entries."""
    out: dict[str, dict[str, float | None]] = {}
    if isinstance(temps, dict):
        for key, value in temps.items():
            if isinstance(key, str) and key and isinstance(value, dict):
                out[key] = {"actual": _temp(value.get("actual")), "target": _temp(value.get("target"))}
    return out


def apply_status_fields(rec: PrinterRecord, raw: bytes, status: dict[str, Any] | None = None) -> None:
    """Set the derived fields of `rec` from an agent status object (raw JSON, or already decoded)."""
    if status is None:
        status = _decoder.decode(raw)
    for key, value in parse_status_fields(status).items():
        setattr(rec, key, value)
    temps = normalize_temperatures(status.get("temperatures"))
    rec.temperatures_raw = _encoder.encode(temps)
    rec.temperature_keys = tuple(sorted(temps))
