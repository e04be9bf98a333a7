"""Validation of request bodies and query parameters: every error names the offending field."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import msgspec

from bridge.config import parse_bool
from bridge.dialects.base import DialectConfigError
from bridge.dialects.registry import DEFAULT_DIALECT, DIALECTS, UnknownDialect, dialect_class
from bridge.domain.models import ACTION_ON_FAILURE, ALERT_OVERWRITES


class InvalidInput(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


READ_ONLY = frozenset(
    {
        "id",
        "created_at",
        "not_watching_reason",
        "agent_name",
        "agent_version",
        "auth_token",
        "pic",
        "status",
        "settings",
        "current_print",
        "normalized_p",
    }
)


def _bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(field, "must be a boolean")
    return value


def _number(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(field, "must be a number")
    try:
        number = float(value)
    except OverflowError:
        raise InvalidInput(field, "is out of range") from None
    if not math.isfinite(number):
        raise InvalidInput(field, "must be a finite number")
    return number


def _nonneg(field: str, value: Any) -> float:
    number = _number(field, value)
    if number < 0:
        raise InvalidInput(field, "must be greater than or equal to 0")
    return number


def _sensitivity(field: str, value: Any) -> float:
    number = _number(field, value)
    if not 0.8 <= number <= 1.2:
        raise InvalidInput(field, "must be between 0.8 and 1.2")
    return number


def _timelapse(field: str, value: Any) -> int:
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        value = int(value)  # JSON has one number type: 600.0 is the integer 600 (as in Obico and JSON Schema)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, "must be an integer")
    if value < -1:
        raise InvalidInput(field, "must be greater than or equal to -1")
    if value > 2**53:
        raise InvalidInput(field, "is too large")
    return value


# What the OpenAPI document's pattern `\S` means (JSON Schema uses ECMAScript's whitespace, which is not
# Python's str.isspace: U+001C-U+001F and U+0085 are not blank there).
_NOT_BLANK = re.compile("[^\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]")


def _name(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    if not 1 <= len(value) <= 256:
        raise InvalidInput(field, "must be 1 to 256 characters long")
    if not _NOT_BLANK.search(value):
        raise InvalidInput(field, "must not be blank")
    return value


def _action(field: str, value: Any) -> str:
    if value not in ACTION_ON_FAILURE:
        raise InvalidInput(field, "must be 'PAUSE' or 'NONE'")
    return str(value)


def _datetime(field: str, value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(field, "must be an ISO 8601 datetime or null")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(field, "must be an ISO 8601 datetime or null") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        # Stored as an epoch float: only values that convert back to a datetime (years 1-9999) can be served.
        epoch = dt.astimezone(UTC).timestamp()
        datetime.fromtimestamp(epoch, UTC)
    except (OverflowError, ValueError, OSError):
        raise InvalidInput(field, "is out of range") from None
    return epoch


WRITABLE = {
    "name": _name,
    "action_on_failure": _action,
    "watching_enabled": _bool,
    "tools_off_on_pause": _bool,
    "bed_off_on_pause": _bool,
    "retract_on_pause": _nonneg,
    "lift_z_on_pause": _nonneg,
    "detective_sensitivity": _sensitivity,
    "min_timelapse_secs_on_finish": _timelapse,
    "min_timelapse_secs_on_cancel": _timelapse,
    "archived_at": _datetime,
}

# Each field's value is decoded on its own so that an error inside it (a number out of range) names the field.
_object_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])


def _dialect_fields(data: dict[str, msgspec.Raw], dialect: str | None, config: dict[str, Any] | None) -> dict[str, Any]:
    """`dialect` (chosen at creation: `dialect` None; fixed afterwards) and the dialect's own settings,
    the object under the dialect's name, validated by the dialect."""
    out: dict[str, Any] = {}
    if "dialect" in data:
        try:
            chosen = msgspec.json.decode(data["dialect"])
        except msgspec.ValidationError as exc:
            raise InvalidInput("dialect", str(exc)) from None
        try:
            dialect_class(chosen)
        except UnknownDialect as exc:
            raise InvalidInput("dialect", str(exc)) from None
        if dialect is not None and chosen != dialect:
            raise InvalidInput("dialect", "cannot be changed; delete the printer and add it again")
        if dialect is None:
            out["dialect"] = chosen
    name = dialect or out.get("dialect", DEFAULT_DIALECT)
    for other in DIALECTS:
        if other in data and other != name:
            raise InvalidInput(other, f"settings of another dialect (this printer speaks {name!r})")
    creating_without = dialect is None and name not in data and DIALECTS[name].takes_config
    if name in data or creating_without:
        try:
            # A printer created without its dialect's settings object: the dialect says whether it needs one.
            value = msgspec.json.decode(data[name]) if name in data else {}
        except msgspec.ValidationError as exc:
            raise InvalidInput(name, str(exc)) from None
        try:
            out["dialect_config"] = DIALECTS[name].validate_config(value, config or {})
        except DialectConfigError as exc:
            field = f"{name}.{exc.field}" if exc.field else name
            raise InvalidInput(field, exc.message) from None
    return out


def parse_printer_body(
    body: bytes,
    *,
    require_name: bool,
    dialect: str | None = None,
    dialect_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A printer body (POST or PATCH) -> the validated writable fields. Read-only fields are ignored.

    On PATCH pass the printer's `dialect` and `dialect_config`: the dialect cannot change, and the
    dialect's settings object is validated against (and merged over) the current one."""
    if not body.strip():
        if require_name:
            raise InvalidInput("name", "this field is required")
        return {}
    try:
        data = _object_decoder.decode(body)
    except msgspec.ValidationError:
        raise InvalidInput("body", "must be a JSON object") from None
    except msgspec.DecodeError as exc:
        raise InvalidInput("body", f"invalid JSON: {exc}") from None
    except RecursionError:
        raise InvalidInput("body", "is nested too deeply") from None
    changes = _dialect_fields(data, dialect, dialect_config)
    for field, raw in data.items():
        if field in READ_ONLY or field == "dialect" or field in DIALECTS:
            continue
        check = WRITABLE.get(field)
        if check is None:
            raise InvalidInput(field, "unknown field")
        try:
            value = msgspec.json.decode(raw)
        except msgspec.ValidationError as exc:  # e.g. "Number out of range"
            raise InvalidInput(field, str(exc)) from None
        changes[field] = check(field, value)
    if require_name and "name" not in changes:
        raise InvalidInput("name", "this field is required")
    return changes


def parse_bool_param(field: str, raw: str | None, default: bool) -> bool:
    if raw is None:
        return default
    try:
        if raw != raw.strip():  # exactly the documented words (the OpenAPI pattern says so too)
            raise ValueError(raw)
        return parse_bool(raw)
    except ValueError:
        raise InvalidInput(field, "must be a boolean (true/false, 1/0, yes/no)") from None


def parse_overwrite(raw: str | None) -> str | None:
    if raw is None:
        return None
    if raw not in ALERT_OVERWRITES:
        raise InvalidInput("alert_overwrite", "must be FAILED or NOT_FAILED")
    return raw


def parse_limit(raw: str | None, default: int = 50, maximum: int = 1000) -> int:
    if raw is None:
        return default
    # digits only: int() would also take " 5", "+5" and "1_0", which the OpenAPI document calls invalid
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise InvalidInput("limit", "must be an integer")
    value = int(raw)
    if not 1 <= value <= maximum:
        raise InvalidInput("limit", f"must be between 1 and {maximum}")
    return value
