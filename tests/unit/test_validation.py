"""bridge/http/validation.py: every validator, and the body / query parsers; each error names the field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.http.validation import (
    READ_ONLY,
    WRITABLE,
    InvalidInput,
    parse_bool_param,
    parse_limit,
    parse_overwrite,
    parse_printer_body,
)


def invalid(field: str, value: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        WRITABLE[field](field, value)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    return info.value


def test_writable_and_read_only_cover_the_printer_object() -> None:
    assert set(WRITABLE) == {
        "name",
        "action_on_failure",
        "watching_enabled",
        "tools_off_on_pause",
        "bed_off_on_pause",
        "retract_on_pause",
        "lift_z_on_pause",
        "detective_sensitivity",
        "min_timelapse_secs_on_finish",
        "min_timelapse_secs_on_cancel",
        "archived_at",
    }
    assert {
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
    } == READ_ONLY


# -- each validator -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["x", "Prusa MK4", "y" * 256, "🖨️" * 128, " padded "])
def test_name_valid(value: str) -> None:
    assert WRITABLE["name"]("name", value) == value


@pytest.mark.parametrize("value", ["", "y" * 257, "   ", "\t\n", None, 1, True, [], {}])
def test_name_invalid(value: Any) -> None:
    invalid("name", value)


def test_action_on_failure() -> None:
    assert WRITABLE["action_on_failure"]("action_on_failure", "PAUSE") == "PAUSE"
    assert WRITABLE["action_on_failure"]("action_on_failure", "NONE") == "NONE"
    for bad in ("pause", "none", "", "FAILED", None, 1, True, ["PAUSE"]):
        invalid("action_on_failure", bad)


@pytest.mark.parametrize("field", ["watching_enabled", "tools_off_on_pause", "bed_off_on_pause"])
def test_booleans_are_strict_json_booleans(field: str) -> None:
    assert WRITABLE[field](field, True) is True
    assert WRITABLE[field](field, False) is False
    bad_values: tuple[Any, ...] = ("true", "false", 1, 0, None, "yes", [], 1.0)
    for bad in bad_values:
        invalid(field, bad)


@pytest.mark.parametrize("field", ["retract_on_pause", "lift_z_on_pause"])
def test_non_negative_numbers(field: str) -> None:
    for good, expected in ((0, 0.0), (0.0, 0.0), (6.5, 6.5), (3, 3.0), (1e300, 1e300)):
        result = WRITABLE[field](field, good)
        assert result == expected and isinstance(result, float)
    bad_values: tuple[Any, ...] = (
        -0.001,
        -1,
        float("inf"),
        float("nan"),
        float("-inf"),
        "1",
        None,
        True,
        False,
        [],
        10**400,
    )
    for bad in bad_values:
        invalid(field, bad)


def test_detective_sensitivity_range() -> None:
    for good in (0.8, 1, 1.0, 1.2, 0.95):
        assert WRITABLE["detective_sensitivity"]("detective_sensitivity", good) == float(good)
    for bad in (0.7999, 1.2001, 0, -1, 2, float("nan"), float("inf"), "1.0", None, True, 10**400):
        invalid("detective_sensitivity", bad)


@pytest.mark.parametrize("field", ["min_timelapse_secs_on_finish", "min_timelapse_secs_on_cancel"])
def test_timelapse_integers(field: str) -> None:
    for good in (-1, 0, 1, 600, 2**53, 600.0, -1.0):
        result = WRITABLE[field](field, good)
        assert result == good and type(result) is int
    for bad in (-2, -100, 1.5, -2.0, 2.0**60, "600", None, True, False, 2**53 + 1, 10**400):
        invalid(field, bad)


def test_archived_at_datetimes() -> None:
    check = WRITABLE["archived_at"]
    stamp = datetime(2024, 5, 1, 10, 0, tzinfo=UTC).timestamp()
    assert check("archived_at", None) is None
    assert check("archived_at", "2024-05-01T10:00:00Z") == stamp
    assert check("archived_at", "2024-05-01T10:00:00z") == stamp
    assert check("archived_at", "2024-05-01T10:00:00+00:00") == stamp
    assert check("archived_at", "2024-05-01T12:00:00+02:00") == stamp
    assert check("archived_at", "2024-05-01T10:00:00") == stamp  # naive is UTC
    assert check("archived_at", " 2024-05-01T10:00:00Z ") == stamp
    assert check("archived_at", "2024-05-01T10:00:00.5Z") == stamp + 0.5
    assert check("archived_at", "0001-01-01T00:00:00Z") == datetime(1, 1, 1, tzinfo=UTC).timestamp()
    assert check("archived_at", "9999-12-31T00:00:00Z") == datetime(9999, 12, 31, tzinfo=UTC).timestamp()
    bad_values: tuple[Any, ...] = (
        "",
        "yesterday",
        "2024-13-01T00:00:00Z",
        "2024-02-30",
        "2024-05-01T25:00:00Z",
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC: could not be served back
        "9999-12-31T23:59:59-14:00",  # after year 9999 in UTC
        "9999-12-31T23:59:59.999999Z",  # rounds past year 9999 as an epoch float
        123,
        1.5,
        True,
        {},
        [],
    )
    for bad in bad_values:
        invalid("archived_at", bad)


def test_every_accepted_archived_at_can_be_served_back() -> None:
    """Whatever the validator accepts must convert back into a datetime (else the printer could not be served)."""
    for text in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:58.999Z", "9999-12-31T09:59:59-14:00"):
        epoch = WRITABLE["archived_at"]("archived_at", text)
        assert isinstance(epoch, float)
        assert datetime.fromtimestamp(epoch, UTC).year in (1, 9999)


# -- parse_printer_body -----------------------------------------------------------------------------------


def body_error(body: bytes, require_name: bool = False) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        parse_printer_body(body, require_name=require_name)
    return info.value


def test_body_valid_fields_are_returned_validated() -> None:
    body = b'{"name": "P", "retract_on_pause": 3, "archived_at": null, "watching_enabled": false}'
    assert parse_printer_body(body, require_name=True) == {
        "name": "P",
        "retract_on_pause": 3.0,
        "archived_at": None,
        "watching_enabled": False,
    }


def test_body_read_only_fields_are_ignored_whatever_their_value() -> None:
    body = b'{"id": "x", "status": 1e400, "settings": [], "auth_token": null, "name": "P"}'
    assert parse_printer_body(body, require_name=False) == {"name": "P"}


def test_body_empty() -> None:
    assert parse_printer_body(b"", require_name=False) == {}
    assert parse_printer_body(b"  \n", require_name=False) == {}
    assert parse_printer_body(b"{}", require_name=False) == {}
    assert body_error(b"", require_name=True).field == "name"
    assert body_error(b"{}", require_name=True).field == "name"
    assert body_error(b'{"status": {}}', require_name=True).field == "name"


def test_body_unknown_field_named() -> None:
    err = body_error(b'{"name": "P", "colour": "red"}')
    assert err.field == "colour"
    assert str(err) == "colour: unknown field"


@pytest.mark.parametrize("body", [b"[]", b"1", b'"x"', b"null", b"true"])
def test_body_not_an_object(body: bytes) -> None:
    err = body_error(body)
    assert (err.field, str(err)) == ("body", "body: must be a JSON object")


@pytest.mark.parametrize("body", [b"{", b"{'a': 1}", b'{"a": 1,}', b"\xff", b'{"a": NaN}', b"{} {}"])
def test_body_malformed(body: bytes) -> None:
    err = body_error(body)
    assert err.field == "body"
    assert str(err).startswith("body: invalid JSON")


def test_body_nested_too_deeply_is_a_400_not_a_crash() -> None:
    assert body_error(b"[" * 100_000 + b"]" * 100_000).field == "body"
    assert body_error(b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}").field == "body"


def test_body_number_out_of_range_names_the_field() -> None:
    for field in ("retract_on_pause", "lift_z_on_pause", "detective_sensitivity"):
        for raw in (b"1e400", b"-1e400"):
            assert body_error(b'{"' + field.encode() + b'": ' + raw + b"}").field == field
        assert body_error(b'{"' + field.encode() + b'": ' + b"9" * 400 + b"}").field == field


def test_body_first_error_wins_and_names_its_field() -> None:
    assert body_error(b'{"name": "ok", "lift_z_on_pause": -1, "colour": 1}').field == "lift_z_on_pause"


# -- query parameters ---------------------------------------------------------------------------------------


def test_parse_bool_param() -> None:
    assert parse_bool_param("with_archived", None, False) is False
    assert parse_bool_param("mute_alert", None, True) is True
    for text in ("true", "TRUE", "True", "1", "yes", "YES", "Yes"):
        assert parse_bool_param("with_archived", text, False) is True, text
    for text in ("false", "FALSE", "0", "no", "NO", "No"):
        assert parse_bool_param("with_archived", text, True) is False, text
    for text in ("", "bogus", "2", "t", "y", "on", "off", "null", "truee", " yes ", "true\n"):
        with pytest.raises(InvalidInput) as info:
            parse_bool_param("with_archived", text, False)
        assert info.value.field == "with_archived"
        assert "with_archived" in str(info.value)


def test_parse_overwrite() -> None:
    assert parse_overwrite(None) is None
    assert parse_overwrite("FAILED") == "FAILED"
    assert parse_overwrite("NOT_FAILED") == "NOT_FAILED"
    for bad in ("", "failed", "NOT FAILED", "OK", "null"):
        with pytest.raises(InvalidInput) as info:
            parse_overwrite(bad)
        assert info.value.field == "alert_overwrite"


def test_parse_limit() -> None:
    assert parse_limit(None) == 50
    assert parse_limit("1") == 1
    assert parse_limit("1000") == 1000
    assert parse_limit(None, default=7) == 7
    for bad in ("0", "-1", "1001", "abc", "", "1.5", "1e3", "9" * 5000, " 5", "+5", "1_0", "\u0665"):
        with pytest.raises(InvalidInput) as info:
            parse_limit(bad)
        assert info.value.field == "limit"
