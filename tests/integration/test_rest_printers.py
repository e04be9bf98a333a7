"""docs/rest.md through the real app: list, create, get, PATCH, archive, DELETE, pic, commands, rotate_token,
/health and the OpenAPI document (the five actions are tested with their MQTT side elsewhere)."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime
from typing import Any

from bridge.dialects.registry import DIALECTS
from tests.support.agent import TestAgent
from tests.support.env import BridgeEnv, wait_for

API = "/api/v1/printers"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(range(256)) + b"\xff\xd9"

WRITABLE_NON_DEFAULT: dict[str, Any] = {
    "action_on_failure": "NONE",
    "watching_enabled": False,
    "tools_off_on_pause": False,
    "bed_off_on_pause": True,
    "retract_on_pause": 0.0,
    "lift_z_on_pause": 10.25,
    "detective_sensitivity": 1.2,
    "min_timelapse_secs_on_finish": -1,
    "min_timelapse_secs_on_cancel": 0,
}


def parse_iso(text: str) -> datetime:
    assert ISO_Z.match(text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def ids(env: BridgeEnv, **params: Any) -> list[int]:
    resp = await env.client.get(f"{API}/", headers=env.auth(), params=params)
    assert resp.status_code == 200, resp.text
    return [p["id"] for p in resp.json()]


# -- create and get ----------------------------------------------------------------------------------------


async def test_create_fresh_printer_has_every_field_with_its_default(env: BridgeEnv) -> None:
    before = env.clock()
    resp = await env.client.post(f"{API}/", json={"name": "Prusa MK4"}, headers=env.auth())
    assert resp.status_code == 201, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    token = body.pop("auth_token")
    created_at = body.pop("created_at")
    printer_id = body.pop("id")
    assert isinstance(printer_id, int) and printer_id > 0
    assert isinstance(token, str) and len(token) >= 22  # >= 128 bits of randomness in URL-safe base64
    assert before - 1 <= parse_iso(created_at).timestamp() <= env.clock() + 1
    assert body == {
        "name": "Prusa MK4",
        "dialect": "printbridge",
        "action_on_failure": "PAUSE",
        "watching_enabled": True,
        "not_watching_reason": "Printer is not actively printing",
        "tools_off_on_pause": True,
        "bed_off_on_pause": False,
        "retract_on_pause": 6.5,
        "lift_z_on_pause": 2.5,
        "detective_sensitivity": 1.0,
        "min_timelapse_secs_on_finish": 600,
        "min_timelapse_secs_on_cancel": 300,
        "archived_at": None,
        "agent_name": None,
        "agent_version": None,
        "pic": None,
        "status": None,
        "settings": {},
        "current_print": None,
        "normalized_p": 0,
    }
    # GET returns the same document, and so does the list.
    got = await env.get_printer(printer_id)
    assert got == {**body, "id": printer_id, "auth_token": token, "created_at": created_at}
    listed = (await env.client.get(f"{API}/", headers=env.auth())).json()
    assert listed == [got]


async def test_create_with_every_writable_field(env: BridgeEnv) -> None:
    printer = await env.create_printer("Voron", **WRITABLE_NON_DEFAULT)
    for field, value in WRITABLE_NON_DEFAULT.items():
        assert printer[field] == value, field
    assert printer["not_watching_reason"] == "AI failure detection is disabled"
    assert await env.get_printer(printer["id"]) == printer


async def test_create_ignores_read_only_fields(env: BridgeEnv) -> None:
    body = {
        "name": "Ender",
        "id": 4242,
        "created_at": "2001-01-01T00:00:00Z",
        "auth_token": "chosen-by-client",
        "not_watching_reason": "x",
        "agent_name": "evil",
        "agent_version": "6.6.6",
        "pic": {"img_url": "http://example.invalid/x.jpg"},
        "status": {"state": {"text": "Printing"}},
        "settings": {"a": 1},
        "current_print": {"id": 1},
        "normalized_p": 0.9,
    }
    resp = await env.client.post(f"{API}/", json=body, headers=env.auth())
    assert resp.status_code == 201, resp.text
    printer = resp.json()
    assert printer["id"] != 4242
    assert printer["auth_token"] != "chosen-by-client"
    assert not printer["created_at"].startswith("2001")
    assert (printer["agent_name"], printer["agent_version"], printer["pic"]) == (None, None, None)
    assert (printer["status"], printer["settings"], printer["current_print"]) == (None, {}, None)
    assert printer["normalized_p"] == 0
    assert printer["not_watching_reason"] == "Printer is not actively printing"


async def test_printers_get_distinct_ids_and_tokens(env: BridgeEnv) -> None:
    a = await env.create_printer("A")
    b = await env.create_printer("A")  # names need not be unique
    assert a["id"] != b["id"]
    assert a["auth_token"] != b["auth_token"]
    assert await ids(env) == sorted([a["id"], b["id"]])


async def test_create_unicode_name_round_trips(env: BridgeEnv) -> None:
    name = "Prüsa 🖨️ 打印机 \u202e" + "x" * 240
    printer = await env.create_printer(name)
    assert printer["name"] == name
    assert (await env.get_printer(printer["id"]))["name"] == name


async def test_get_unknown_printer_is_404(env: BridgeEnv) -> None:
    for path in (f"{API}/999", f"{API}/999/", f"{API}/0/", f"{API}/-1/"):
        resp = await env.client.get(path, headers=env.auth())
        assert resp.status_code == 404, path
        assert resp.json() == {"detail": "Not found."}


# -- list and with_archived --------------------------------------------------------------------------------


async def test_list_with_and_without_archived(env: BridgeEnv) -> None:
    assert await ids(env) == []
    live = await env.create_printer("live")
    archived = await env.create_printer("archived")
    resp = await env.client.patch(
        f"{API}/{archived['id']}/", json={"archived_at": "2024-05-01T10:00:00Z"}, headers=env.auth()
    )
    assert resp.status_code == 200, resp.text
    assert await ids(env) == [live["id"]]
    for true in ("true", "True", "TRUE", "1", "yes", "YES", "Yes"):
        assert await ids(env, with_archived=true) == [live["id"], archived["id"]], true
    for false in ("false", "FALSE", "0", "no", "No"):
        assert await ids(env, with_archived=false) == [live["id"]], false


async def test_list_bad_with_archived_is_400_naming_the_parameter(env: BridgeEnv) -> None:
    await env.create_printer()
    for bad in ("bogus", "", "2", "-1", "t", "y", "truee", "on", "null", "é"):
        resp = await env.client.get(f"{API}/", headers=env.auth(), params={"with_archived": bad})
        assert resp.status_code == 400, bad
        assert "with_archived" in resp.json()["detail"], bad


async def test_get_with_archived_bad_value_is_400_for_a_live_printer(env: BridgeEnv) -> None:
    printer = await env.create_printer()
    resp = await env.client.get(f"{API}/{printer['id']}/?with_archived=maybe", headers=env.auth())
    assert resp.status_code == 400
    assert "with_archived" in resp.json()["detail"]


# -- PATCH ----------------------------------------------------------------------------------------------------


async def test_patch_every_writable_field(env: BridgeEnv) -> None:
    printer = await env.create_printer("Before")
    url = f"{API}/{printer['id']}/"
    expected = dict(printer)
    for field, value in {"name": "After", **WRITABLE_NON_DEFAULT}.items():
        resp = await env.client.patch(url, json={field: value}, headers=env.auth())
        assert resp.status_code == 200, f"{field}: {resp.text}"
        expected[field] = value
        if field == "watching_enabled":
            expected["not_watching_reason"] = "AI failure detection is disabled"
        assert resp.json() == expected, field
    assert await env.get_printer(printer["id"]) == expected
    # All at once, back to the defaults.
    defaults = {
        "name": "Before",
        "action_on_failure": "PAUSE",
        "watching_enabled": True,
        "tools_off_on_pause": True,
        "bed_off_on_pause": False,
        "retract_on_pause": 6.5,
        "lift_z_on_pause": 2.5,
        "detective_sensitivity": 1.0,
        "min_timelapse_secs_on_finish": 600,
        "min_timelapse_secs_on_cancel": 300,
    }
    resp = await env.client.patch(url, json=defaults, headers=env.auth())
    assert resp.status_code == 200, resp.text
    assert resp.json() == printer
    assert await env.get_printer(printer["id"]) == printer


async def test_patch_accepts_boundary_values(env: BridgeEnv) -> None:
    printer = await env.create_printer()
    url = f"{API}/{printer['id']}/"
    cases: list[dict[str, Any]] = [
        {"name": "x"},
        {"name": "y" * 256},
        {"detective_sensitivity": 0.8},
        {"detective_sensitivity": 1},
        {"retract_on_pause": 0},
        {"retract_on_pause": 1e6},
        {"lift_z_on_pause": 3},
        {"min_timelapse_secs_on_finish": -1},
        {"min_timelapse_secs_on_cancel": 86400 * 365},
    ]
    for change in cases:
        resp = await env.client.patch(url, json=change, headers=env.auth())
        assert resp.status_code == 200, f"{change}: {resp.text}"
        body = resp.json()
        for field, value in change.items():
            assert body[field] == value, change
            assert type(body[field]) is type(printer[field]), change  # ints stay ints, floats stay floats


async def test_patch_ignores_read_only_fields(env: BridgeEnv) -> None:
    printer = await env.create_printer("Keep")
    read_only = {
        "id": printer["id"] + 100,
        "created_at": "2001-01-01T00:00:00Z",
        "auth_token": "mine-now",
        "not_watching_reason": None,
        "agent_name": "x",
        "agent_version": "y",
        "pic": {"img_url": "/x"},
        "status": {"a": 1},
        "settings": {"b": 2},
        "current_print": {"id": 3},
        "normalized_p": 1,
    }
    resp = await env.client.patch(f"{API}/{printer['id']}/", json=read_only, headers=env.auth())
    assert resp.status_code == 200, resp.text
    assert resp.json() == printer
    # Mixed with a writable field: only that one changes.
    resp = await env.client.patch(f"{API}/{printer['id']}/", json={**read_only, "name": "New"}, headers=env.auth())
    assert resp.status_code == 200, resp.text
    assert resp.json() == {**printer, "name": "New"}
    assert await env.get_printer(printer["id"]) == {**printer, "name": "New"}


async def test_patch_empty_object_and_empty_body_change_nothing(env: BridgeEnv) -> None:
    printer = await env.create_printer()
    url = f"{API}/{printer['id']}/"
    for content in (b"{}", b"", b"  \n"):
        resp = await env.client.patch(url, content=content, headers=env.auth())
        assert resp.status_code == 200, content
        assert resp.json() == printer
    assert await env.get_printer(printer["id"]) == printer


async def test_patch_survives_a_bridge_restart(env: BridgeEnv) -> None:
    """What PATCH wrote is in SQLite, not only in memory."""
    printer = await env.create_printer()
    changes = {"name": "Persisted", **WRITABLE_NON_DEFAULT}
    resp = await env.client.patch(f"{API}/{printer['id']}/", json=changes, headers=env.auth())
    assert resp.status_code == 200
    env.bridge.store.flush()
    from bridge.state.store import Store

    fresh = Store(env.settings.db_path)
    fresh.load()
    rec = fresh.printers.get(printer["id"])
    assert rec is not None
    for field, value in changes.items():
        assert getattr(rec, field) == value, field


# -- archive / unarchive -----------------------------------------------------------------------------------


async def test_archive_and_unarchive(env: BridgeEnv) -> None:
    printer = await env.create_printer()
    pid = printer["id"]
    url = f"{API}/{pid}/"
    resp = await env.client.patch(url, json={"archived_at": "2024-05-01T12:00:00+02:00"}, headers=env.auth())
    assert resp.status_code == 200, resp.text
    assert resp.json()["archived_at"] == "2024-05-01T10:00:00Z"

    # 404 without with_archived on get / patch / delete / every sub-resource / every action.
    for method, path in [
        ("GET", url),
        ("GET", f"{API}/{pid}"),
        ("PATCH", url),
        ("DELETE", url),
        ("GET", f"{url}pic"),
        ("GET", f"{url}commands/"),
        ("POST", f"{url}rotate_token/"),
        ("GET", f"{url}?with_archived=false"),
        ("GET", f"{url}?with_archived=bogus"),
        ("PATCH", f"{url}?with_archived=0"),
    ]:
        resp = await env.client.request(method, path, headers=env.auth(), json={"name": "changed"})
        assert resp.status_code == 404, f"{method} {path}: {resp.status_code}"
        assert resp.json() == {"detail": "Not found."}
    for action in ("cancel_print", "pause_print", "resume_print", "mute_current_print", "acknowledge_alert"):
        for params in ({}, {"with_archived": "true"}):
            resp = await env.client.post(f"{url}{action}", headers=env.auth(), params=params)
            assert resp.status_code == 404, f"{action} {params}"
            assert resp.json() == {"detail": "Not found."}

    got = await env.get_printer(pid, with_archived="true")
    assert got["archived_at"] == "2024-05-01T10:00:00Z"
    assert got["name"] == printer["name"]  # the 404 PATCH above changed nothing

    # PATCH with with_archived works on the archived printer; null unarchives.
    resp = await env.client.patch(f"{url}?with_archived=yes", json={"name": "Back"}, headers=env.auth())
    assert resp.status_code == 200, resp.text
    assert resp.json()["archived_at"] == "2024-05-01T10:00:00Z"
    resp = await env.client.patch(f"{url}?with_archived=1", json={"archived_at": None}, headers=env.auth())
    assert resp.status_code == 200, resp.text
    assert resp.json() == {**printer, "name": "Back"}
    assert await ids(env) == [pid]
    assert (await env.get_printer(pid))["archived_at"] is None


async def test_archived_at_accepts_iso_forms_and_serves_utc_z(env: BridgeEnv) -> None:
    printer = await env.create_printer()
    url = f"{API}/{printer['id']}/?with_archived=true"
    for given, served in [
        ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00Z"),
        ("2024-05-01T10:00:00.250000Z", "2024-05-01T10:00:00.250000Z"),
        ("2024-05-01T10:00:00", "2024-05-01T10:00:00Z"),  # naive is taken as UTC
        ("2024-05-01T05:30:00-04:30", "2024-05-01T10:00:00Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
        ("9999-12-31T00:00:00Z", "9999-12-31T00:00:00Z"),
    ]:
        resp = await env.client.patch(url, json={"archived_at": given}, headers=env.auth())
        assert resp.status_code == 200, f"{given}: {resp.text}"
        assert resp.json()["archived_at"] == served, given
        assert (await env.get_printer(printer["id"], with_archived="true"))["archived_at"] == served


async def test_archived_printer_can_be_deleted_with_with_archived(env: BridgeEnv) -> None:
    printer = await env.create_printer()
    url = f"{API}/{printer['id']}/"
    assert (await env.client.patch(url, json={"archived_at": "2024-01-01T00:00:00Z"}, headers=env.auth())).is_success
    resp = await env.client.delete(f"{url}?with_archived=true", headers=env.auth())
    assert resp.status_code == 200
    assert resp.content == b""
    assert await ids(env, with_archived="true") == []


# -- DELETE ---------------------------------------------------------------------------------------------------


async def test_delete_then_404_everywhere_and_gone_from_lists(env: BridgeEnv) -> None:
    keep = await env.create_printer("keep")
    gone = await env.create_printer("gone")
    pid = gone["id"]
    resp = await env.client.delete(f"{API}/{pid}/", headers=env.auth())
    assert resp.status_code == 200
    assert resp.content == b""
    assert await ids(env) == [keep["id"]]
    assert await ids(env, with_archived="true") == [keep["id"]]
    for method, path in [
        ("GET", f"{API}/{pid}/"),
        ("GET", f"{API}/{pid}/?with_archived=true"),
        ("PATCH", f"{API}/{pid}/"),
        ("PATCH", f"{API}/{pid}/?with_archived=true"),
        ("DELETE", f"{API}/{pid}/"),
        ("DELETE", f"{API}/{pid}/?with_archived=true"),
        ("GET", f"{API}/{pid}/pic"),
        ("GET", f"{API}/{pid}/agent_config/"),
        ("GET", f"{API}/{pid}/commands/"),
        ("POST", f"{API}/{pid}/rotate_token/"),
        ("POST", f"{API}/{pid}/cancel_print"),
        ("GET", f"{API}/{pid}/pause_print"),
        ("POST", f"{API}/{pid}/resume_print"),
        ("POST", f"{API}/{pid}/mute_current_print"),
        ("POST", f"{API}/{pid}/acknowledge_alert"),
    ]:
        resp = await env.client.request(method, path, headers=env.auth(), json={"name": "zombie"})
        assert resp.status_code == 404, f"{method} {path}"
        assert resp.json() == {"detail": "Not found."}
    # The other printer is untouched.
    assert await env.get_printer(keep["id"]) == keep


async def test_delete_stops_the_printers_mqtt_credentials(env: BridgeEnv) -> None:
    printer = await env.create_printer()
    agent = await env.agent(printer)
    await asyncio.to_thread(agent.disconnect)
    resp = await env.client.delete(f"{API}/{printer['id']}", headers=env.auth())
    assert resp.status_code == 200
    await wait_for(lambda: env.bridge.store.accounts.broker_tokens().get(printer["id"]) is None, what="account removed")
    assert await _refused(env, printer["id"], printer["auth_token"]), "a deleted printer's credentials still connect"


async def _refused(env: BridgeEnv, printer_id: int, password: str) -> bool:
    """Whether the broker refuses an agent logging in as `printer-{id}` with `password`."""
    agent = TestAgent(env.broker.host, env.broker.port, printer_id, password, base_topic=env.settings.base_topic)
    try:
        await asyncio.to_thread(agent.connect, 3.0)
    except ConnectionRefusedError:
        return True
    await asyncio.to_thread(agent.disconnect)
    return False


# -- pic ------------------------------------------------------------------------------------------------------


async def test_pic_404_without_snapshot_then_jpeg_after_agent_publishes(env: BridgeEnv) -> None:
    printer = await env.create_printer()
    pid = printer["id"]
    for path in (f"{API}/{pid}/pic", f"{API}/{pid}/pic/"):
        resp = await env.client.get(path, headers=env.auth())
        assert resp.status_code == 404
        assert resp.json() == {"detail": "Not found."}

    agent = await env.agent(printer)
    await asyncio.to_thread(agent.publish_raw, "snapshot", JPEG)

    async def served() -> bool:
        resp = await env.client.get(f"{API}/{pid}/pic", headers=env.auth())
        return resp.status_code == 200

    await wait_for(served, what="the snapshot served")
    for path in (f"{API}/{pid}/pic", f"{API}/{pid}/pic/"):
        resp = await env.client.get(path, headers=env.auth())
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "image/jpeg"
        assert resp.content == JPEG
    assert (await env.get_printer(pid))["pic"] == {"img_url": f"/api/v1/printers/{pid}/pic"}

    # A newer snapshot replaces it.
    newer = JPEG[:-2] + b"newer\xff\xd9"
    await asyncio.to_thread(agent.publish_raw, "snapshot", newer)

    async def replaced() -> bool:
        return (await env.client.get(f"{API}/{pid}/pic", headers=env.auth())).content == newer

    await wait_for(replaced, what="the newer snapshot served")
    # The pic endpoint needs auth like every other one.
    resp = await env.client.get(f"{API}/{pid}/pic")
    assert resp.status_code == 401


# -- commands -------------------------------------------------------------------------------------------------


async def test_commands_empty_list_and_limit_validation(env: BridgeEnv) -> None:
    printer = await env.create_printer()
    base = f"{API}/{printer['id']}/commands"
    for path in (base, base + "/"):
        resp = await env.client.get(path, headers=env.auth())
        assert resp.status_code == 200
        assert resp.json() == []
    for good in ("1", "50", "1000"):
        resp = await env.client.get(base + "/", headers=env.auth(), params={"limit": good})
        assert resp.status_code == 200, good
        assert resp.json() == []
    for bad in ("0", "-1", "1001", "abc", "", "1.5", "1e3", "9" * 5000):
        resp = await env.client.get(base + "/", headers=env.auth(), params={"limit": bad})
        assert resp.status_code == 400, bad
        assert "limit" in resp.json()["detail"], bad


# -- rotate_token ---------------------------------------------------------------------------------------------


async def test_rotate_token_changes_auth_token_and_broker_password(env: BridgeEnv) -> None:
    printer = await env.create_printer()
    pid = printer["id"]
    old = printer["auth_token"]
    for path in (f"{API}/{pid}/rotate_token", f"{API}/{pid}/rotate_token/"):
        resp = await env.client.post(path, headers=env.auth())
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["auth_token"] != old
        assert body == {**printer, "auth_token": body["auth_token"]}
        assert (await env.get_printer(pid))["auth_token"] == body["auth_token"]
        old = body["auth_token"]
    # The newest token connects; the first one no longer does.
    agent = await env.agent({**printer, "auth_token": old})
    assert agent.printer_id == pid
    assert await _refused(env, pid, printer["auth_token"]), "the old auth_token still connects"


# -- health and OpenAPI -------------------------------------------------------------------------------------


async def test_health_connected_then_disconnected_while_api_keeps_serving(env: BridgeEnv) -> None:
    printer = await env.create_printer()
    for path in ("/health", "/health/"):
        resp = await env.client.get(path)  # no auth needed
        assert resp.status_code == 200
        assert resp.json() == {"mqtt": "connected", "db": "ok"}

    await asyncio.to_thread(env.broker.stop)

    async def down() -> bool:
        return (await env.client.get("/health")).status_code == 503

    await wait_for(down, 10, "health 503")
    resp = await env.client.get("/health/")
    assert resp.status_code == 503
    assert resp.json() == {"mqtt": "disconnected", "db": "ok"}
    # The API keeps serving from SQLite meanwhile.
    started = time.monotonic()
    assert await env.get_printer(printer["id"]) == printer
    assert await ids(env) == [printer["id"]]
    assert time.monotonic() - started < 1.0
    # Writes go to SQLite too, without waiting for the broker.
    resp = await env.client.post(f"{API}/", json={"name": "while down"}, headers=env.auth())
    assert resp.status_code == 201, resp.text
    resp = await env.client.patch(f"{API}/{printer['id']}/", json={"name": "renamed"}, headers=env.auth())
    assert resp.status_code == 200, resp.text
    assert (await env.get_printer(printer["id"]))["name"] == "renamed"


async def test_openapi_document_lists_the_paths(env: BridgeEnv) -> None:
    resp = await env.client.get("/schema/openapi.json")
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["openapi"].startswith("3.")
    paths = set(doc["paths"])
    for path in (
        "/api/v1/printers",
        "/api/v1/printers/{printer_id}",
        "/api/v1/printers/{printer_id}/pic",
        "/api/v1/printers/{printer_id}/agent_config",
        "/api/v1/printers/{printer_id}/commands",
        "/api/v1/printers/{printer_id}/rotate_token",
        "/api/v1/printers/{printer_id}/cancel_print",
        "/api/v1/printers/{printer_id}/pause_print",
        "/api/v1/printers/{printer_id}/resume_print",
        "/api/v1/printers/{printer_id}/mute_current_print",
        "/api/v1/printers/{printer_id}/acknowledge_alert",
        "/health",
    ):
        assert path in paths, path
    create = doc["paths"]["/api/v1/printers"]["post"]
    schema = create["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["name"]
    with_settings = {name for name, cls in DIALECTS.items() if cls.takes_config}  # e.g. "bambu": {...}
    assert set(schema["properties"]) == {"name", "archived_at", "dialect", *WRITABLE_NON_DEFAULT, *with_settings}
