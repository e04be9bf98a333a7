"""docs/rest.md, its validation rules, through the real app: every invalid value is a 400 naming the
field and changes nothing; authentication in three header styles; isolation between users (404 decided before
any validation); trailing slashes; body size; and no request shape producing a 500."""

from __future__ import annotations

import json
from typing import Any

from tests.support.env import BridgeEnv

API = "/api/v1/printers"
ACTIONS = ("cancel_print", "pause_print", "resume_print", "mute_current_print", "acknowledge_alert")

# field -> raw JSON values that must each be refused with a 400 naming the field.
INVALID: dict[str, list[bytes]] = {
    "name": [b'""', b'"' + b"x" * 257 + b'"', b'"   "', b"null", b"1", b"[]", b'{"a": "b"}', b"true"],
    "action_on_failure": [b'"pause"', b'""', b"null", b"1", b'"FAILED"', b"true", b'["PAUSE"]'],
    "watching_enabled": [b'"true"', b"1", b"0", b"null", b'"yes"', b"[]"],
    "tools_off_on_pause": [b'"false"', b"0", b"null"],
    "bed_off_on_pause": [b'"true"', b"1", b"null"],
    "retract_on_pause": [b"-0.1", b"-1", b'"1"', b"null", b"true", b"[]", b"1e400", b"-1e400", b"9" * 400],
    "lift_z_on_pause": [b"-0.001", b'"2.5"', b"null", b"false", b"{}", b"1e999"],
    "detective_sensitivity": [b"0.79", b"1.21", b"0", b"2", b'"1.0"', b"null", b"true", b"1e400"],
    "min_timelapse_secs_on_finish": [b"-2", b"1.5", b'"600"', b"null", b"true", b"600.5", b"9" * 400],
    "min_timelapse_secs_on_cancel": [b"-100", b"0.5", b'"0"', b"null", b"false"],
    "archived_at": [
        b'"yesterday"',
        b"123",
        b"true",
        b"{}",
        b'""',
        b'"2024-13-01T00:00:00Z"',
        b'"2024-02-30T00:00:00Z"',
        b'"0001-01-01T00:00:00+14:00"',  # before year 1 in UTC
        b'"9999-12-31T23:59:59-14:00"',  # after year 9999 in UTC
        b'"9999-12-31T23:59:59.999999Z"',
    ],
}

NON_OBJECT_BODIES = [b"[]", b'[{"name": "x"}]', b'"name"', b"1", b"null", b"true", b"1.5"]
MALFORMED_BODIES = [
    b"{",
    b'{"name": }',
    b"{'name': 'x'}",
    b'{"name": "x",}',
    b'{"name": NaN}',
    b"\xff\xfe\x00",
    b'{"name": "x"} trailing',
    b'{"name": "\\ud800"',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
]


async def raw_patch(env: BridgeEnv, printer_id: int, body: bytes, token: str | None = None) -> Any:
    return await env.client.patch(
        f"{API}/{printer_id}/",
        content=body,
        headers={**env.auth(token), "Content-Type": "application/json"},
    )


async def asgi_stream(env: BridgeEnv, method: str, path: str, chunks: list[bytes]) -> tuple[int, bytes]:
    """Send `chunks` as separate ASGI body messages with no Content-Length; return (status, body)."""
    pending = list(chunks)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return {"type": "http.request", "body": pending.pop(0), "more_body": bool(pending)}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    token = env.token.encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"authorization", b"Bearer " + token), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    await env.app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


def assert_error(resp: Any, status: int, mentions: str | None = None) -> None:
    assert resp.status_code == status, f"{resp.status_code}: {resp.text[:300]}"
    assert resp.headers["content-type"].startswith("application/json"), resp.headers["content-type"]
    body = resp.json()
    assert set(body) == {"detail"}, body
    assert isinstance(body["detail"], str) and body["detail"], body
    if mentions is not None:
        assert mentions in body["detail"], body


# -- PATCH validation: each invalid value is a 400 naming the field, and nothing changes -------------------


async def test_patch_each_invalid_value_is_400_naming_the_field_and_changes_nothing(env: BridgeEnv) -> None:
    printer = await env.create_printer("Original")
    for field, values in INVALID.items():
        for raw in values:
            body = b'{"' + field.encode() + b'": ' + raw + b"}"
            resp = await raw_patch(env, printer["id"], body)
            assert_error(resp, 400, field)
            # Together with a valid change, the valid change is not applied either.
            body = b'{"name": "Changed", "bed_off_on_pause": true, "' + field.encode() + b'": ' + raw + b"}"
            assert_error(await raw_patch(env, printer["id"], body), 400, field)
            got = await env.get_printer(printer["id"], with_archived="true")
            assert got == printer, f"{field}={raw[:40]!r} changed the printer"


async def test_patch_unknown_field_is_400_naming_it_and_changes_nothing(env: BridgeEnv) -> None:
    printer = await env.create_printer("Original")
    for body in (
        {"colour": "red"},
        {"name": "Changed", "colour": "red"},
        {"colour": "red", "name": "Changed"},
        {"Name": "Changed"},
        {"": 1},
        {"name ": "x"},
    ):
        unknown = next(k for k in body if k != "name")
        resp = await env.client.patch(f"{API}/{printer['id']}/", json=body, headers=env.auth())
        assert_error(resp, 400, repr(unknown)[1:-1] or ":")
        assert resp.json()["detail"].startswith(f"{unknown}:"), resp.json()
    assert await env.get_printer(printer["id"]) == printer


async def test_patch_non_object_and_malformed_bodies_are_400(env: BridgeEnv) -> None:
    printer = await env.create_printer("Original")
    for body in NON_OBJECT_BODIES:
        assert_error(await raw_patch(env, printer["id"], body), 400, "body")
    for body in MALFORMED_BODIES:
        resp = await raw_patch(env, printer["id"], body)
        assert_error(resp, 400)
        assert resp.json()["detail"].startswith(("body:", "name:")), resp.json()
    assert await env.get_printer(printer["id"]) == printer


async def test_duplicate_keys_last_wins(env: BridgeEnv) -> None:
    printer = await env.create_printer("Original")
    resp = await raw_patch(env, printer["id"], b'{"name": "first", "name": "second"}')
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "second"


# -- POST validation -----------------------------------------------------------------------------------------


async def test_create_requires_a_name(env: BridgeEnv) -> None:
    for body in (b"", b"{}", b'{"watching_enabled": false}', b'{"id": 5}'):
        resp = await env.client.post(
            f"{API}/", content=body, headers={**env.auth(), "Content-Type": "application/json"}
        )
        assert_error(resp, 400, "name")
    assert (await env.client.get(f"{API}/", headers=env.auth())).json() == []


async def test_create_invalid_values_are_400_and_create_nothing(env: BridgeEnv) -> None:
    headers = {**env.auth(), "Content-Type": "application/json"}
    for field, values in INVALID.items():
        for raw in values:
            name = b"" if field == "name" else b'"name": "P", '
            resp = await env.client.post(
                f"{API}/", content=b"{" + name + b'"' + field.encode() + b'": ' + raw + b"}", headers=headers
            )
            assert_error(resp, 400, field)
    for body in NON_OBJECT_BODIES:
        assert_error(await env.client.post(f"{API}/", content=body, headers=headers), 400, "body")
    for body in MALFORMED_BODIES:
        assert_error(await env.client.post(f"{API}/", content=body, headers=headers), 400)
    resp = await env.client.post(f"{API}/", json={"name": "P", "colour": "red"}, headers=env.auth())
    assert_error(resp, 400, "colour")
    assert (await env.client.get(f"{API}/?with_archived=true", headers=env.auth())).json() == []


# -- body size ------------------------------------------------------------------------------------------------


async def test_body_over_one_mib_is_413(env: BridgeEnv) -> None:
    printer = await env.create_printer("Original")
    big = json.dumps({"name": "x" * (1024 * 1024)}).encode()
    headers = {**env.auth(), "Content-Type": "application/json"}
    assert_error(await env.client.post(f"{API}/", content=big, headers=headers), 413)
    assert_error(await env.client.patch(f"{API}/{printer['id']}/", content=big, headers=headers), 413)

    # A streamed body without Content-Length is held to the same limit (the test client cannot stream, so
    # this goes to the ASGI app directly).
    chunks = [b'{"name": "', *([b"y" * 8192] * 130), b'"}']
    status, body = await asgi_stream(env, "PATCH", f"{API}/{printer['id']}/", chunks)
    assert status == 413, body
    assert json.loads(body) == {"detail": "Request Entity Too Large"}
    # Just under the limit is an ordinary validation error (name too long), not a 413.
    under = json.dumps({"name": "x" * (1024 * 1024 - 20)}).encode()
    assert_error(await env.client.patch(f"{API}/{printer['id']}/", content=under, headers=headers), 400, "name")
    assert await env.get_printer(printer["id"]) == printer


# -- authentication -------------------------------------------------------------------------------------------


async def test_three_header_styles_authenticate(env: BridgeEnv) -> None:
    printer = await env.create_printer()
    for headers in (
        {"Authorization": f"Bearer {env.token}"},
        {"Authorization": f"Token {env.token}"},
        {"X-API-KEY": env.token},
        {"x-api-key": env.token},
        {"Authorization": f"bearer {env.token}"},
        {"Authorization": f"TOKEN {env.token}"},
    ):
        resp = await env.client.get(f"{API}/", headers=headers)
        assert resp.status_code == 200, headers
        assert [p["id"] for p in resp.json()] == [printer["id"]]


async def test_missing_or_invalid_credentials_are_401_with_www_authenticate(env: BridgeEnv) -> None:
    printer = await env.create_printer()
    pid = printer["id"]
    bad_headers: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "Token wrong-token"},
        {"X-API-KEY": "wrong-token"},
        {"Authorization": f"Basic {env.token}"},
        {"Authorization": f"Digest {env.token}"},
        {"Authorization": env.token},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": ""},
        {"X-API-KEY": ""},
        {"Authorization": f"Bearer {env.token}x"},
        {"Authorization": f"Bearer {env.token[:-1]}"},
    ]
    paths = [
        ("GET", f"{API}/"),
        ("POST", f"{API}/"),
        ("GET", f"{API}/{pid}/"),
        ("PATCH", f"{API}/{pid}/"),
        ("DELETE", f"{API}/{pid}/"),
        ("GET", f"{API}/{pid}/pic"),
        ("GET", f"{API}/{pid}/commands/"),
        ("POST", f"{API}/{pid}/rotate_token/"),
        ("GET", f"{API}/999999/"),
        *(("POST", f"{API}/{pid}/{action}") for action in ACTIONS),
    ]
    for headers in bad_headers:
        for method, path in paths:
            resp = await env.client.request(method, path, headers=headers, json={"name": "hacked"})
            assert_error(resp, 401)
            assert resp.headers.get("www-authenticate", "").startswith("Bearer"), (headers, method, path)
    assert await env.get_printer(pid) == printer  # nothing was changed or deleted


async def test_rotated_user_token_stops_working(env: BridgeEnv) -> None:
    old = env.token
    new = env.client.blocking_portal.call(env.bridge.store.users.rotate_token, "alice")  # on the app's thread
    assert new is not None and new != old
    resp = await env.client.get(f"{API}/", headers=env.auth(old))
    assert_error(resp, 401)
    assert (await env.client.get(f"{API}/", headers=env.auth(new))).status_code == 200


async def test_health_and_openapi_need_no_auth(env: BridgeEnv) -> None:
    assert (await env.client.get("/health")).status_code == 200
    assert (await env.client.get("/schema/openapi.json")).status_code == 200


# -- isolation ------------------------------------------------------------------------------------------------


async def test_other_users_printer_is_404_on_every_endpoint_before_validation(env: BridgeEnv) -> None:
    _, bob_token = env.add_user("bob")
    bobs = await env.create_printer("Bob's", token=bob_token)
    mine = await env.create_printer("Alice's")
    pid = bobs["id"]
    invalid_json = {"detective_sensitivity": 9, "colour": "red"}
    requests: list[tuple[str, str, Any]] = [
        ("GET", f"{API}/{pid}/", None),
        ("GET", f"{API}/{pid}", None),
        ("GET", f"{API}/{pid}/?with_archived=bogus", None),
        ("GET", f"{API}/{pid}/?with_archived=true", None),
        ("PATCH", f"{API}/{pid}/", {"name": "mine now"}),
        ("PATCH", f"{API}/{pid}/", invalid_json),
        ("PATCH", f"{API}/{pid}/?with_archived=bogus", invalid_json),
        ("PATCH", f"{API}/{pid}/", b"{not json"),
        ("PATCH", f"{API}/{pid}/", b"[]"),
        ("DELETE", f"{API}/{pid}/", None),
        ("DELETE", f"{API}/{pid}/?with_archived=bogus", None),
        ("GET", f"{API}/{pid}/pic", None),
        ("GET", f"{API}/{pid}/pic/?with_archived=bogus", None),
        ("GET", f"{API}/{pid}/commands/", None),
        ("GET", f"{API}/{pid}/commands/?limit=bogus", None),
        ("GET", f"{API}/{pid}/commands/?limit=0&with_archived=bogus", None),
        ("POST", f"{API}/{pid}/rotate_token/", None),
        ("POST", f"{API}/{pid}/rotate_token", None),
        ("POST", f"{API}/{pid}/mute_current_print?mute_alert=bogus", None),
        ("POST", f"{API}/{pid}/acknowledge_alert?alert_overwrite=bogus", None),
    ]
    for action in ACTIONS:
        requests += [("POST", f"{API}/{pid}/{action}", None), ("GET", f"{API}/{pid}/{action}/", None)]
    for method, path, body in requests:
        kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
        resp = await env.client.request(method, path, headers=env.auth(), **kwargs)
        assert resp.status_code == 404, f"{method} {path}: {resp.status_code} {resp.text[:200]}"
        assert resp.json() == {"detail": "Not found."}, f"{method} {path}"
    # Alice's list has only her printer; Bob's printer is untouched (same token, name, not deleted).
    listed = (await env.client.get(f"{API}/?with_archived=true", headers=env.auth())).json()
    assert [p["id"] for p in listed] == [mine["id"]]
    assert await env.get_printer(pid, token=bob_token) == bobs
    bob_list = (await env.client.get(f"{API}/", headers=env.auth(bob_token))).json()
    assert [p["id"] for p in bob_list] == [pid]


async def test_ids_that_are_not_integers_are_404_not_found(env: BridgeEnv) -> None:
    for pid in ("abc", "1.0", "1e3", "%00", "ü", "0x1", "one"):
        resp = await env.client.get(f"{API}/{pid}/", headers=env.auth())
        assert resp.status_code == 404, pid
        assert resp.json() == {"detail": "Not found."}, pid


async def test_wrong_method_is_405_with_allow_header(env: BridgeEnv) -> None:
    printer = await env.create_printer()
    for method, path in (("PUT", f"{API}/"), ("PUT", f"{API}/{printer['id']}/"), ("DELETE", "/health")):
        resp = await env.client.request(method, path, headers=env.auth())
        assert_error(resp, 405)
        assert "GET" in resp.headers["allow"]


async def test_unknown_ids_are_404_before_validation(env: BridgeEnv) -> None:
    for pid in (0, 999, 2**31, 2**63 - 1, 2**63, 10**30):
        for method, path, body in [
            ("GET", f"{API}/{pid}/?with_archived=bogus", None),
            ("PATCH", f"{API}/{pid}/", b"{broken"),
            ("DELETE", f"{API}/{pid}/", None),
            ("GET", f"{API}/{pid}/commands?limit=-5", None),
            ("POST", f"{API}/{pid}/acknowledge_alert?alert_overwrite=bogus", None),
        ]:
            resp = await env.client.request(method, path, headers=env.auth(), content=body)
            assert resp.status_code == 404, f"{method} {path}: {resp.text[:200]}"
            assert resp.json() == {"detail": "Not found."}


# -- trailing slash -------------------------------------------------------------------------------------------


async def test_trailing_slash_is_optional_on_every_path(env: BridgeEnv) -> None:
    printer = await env.create_printer()
    pid = printer["id"]
    for slash in ("", "/"):
        assert (await env.client.get(f"{API}{slash}", headers=env.auth())).status_code == 200
        resp = await env.client.post(f"{API}{slash}", json={"name": f"made{slash}"}, headers=env.auth())
        assert resp.status_code == 201, slash
        made = resp.json()["id"]
        assert (await env.client.get(f"{API}/{pid}{slash}", headers=env.auth())).status_code == 200
        resp = await env.client.patch(f"{API}/{pid}{slash}", json={"name": f"n{slash}"}, headers=env.auth())
        assert resp.status_code == 200, slash
        assert (await env.client.get(f"{API}/{pid}/pic{slash}", headers=env.auth())).status_code == 404
        assert (await env.client.get(f"{API}/{pid}/commands{slash}", headers=env.auth())).status_code == 200
        assert (await env.client.post(f"{API}/{pid}/rotate_token{slash}", headers=env.auth())).status_code == 200
        for action in ACTIONS:
            resp = await env.client.post(f"{API}/{pid}/{action}{slash}", headers=env.auth())
            assert resp.status_code == 200, f"{action}{slash}: {resp.text}"
            assert resp.json()["succeeded"] is False
        assert (await env.client.get(f"/health{slash}")).status_code == 200
        assert (await env.client.delete(f"{API}/{made}{slash}", headers=env.auth())).status_code == 200


# -- no request shape gives a 500 ---------------------------------------------------------------------------


async def test_odd_requests_never_give_a_500(env: BridgeEnv) -> None:
    printer = await env.create_printer()
    pid = printer["id"]
    paths = [
        "/",
        "/api",
        "/api/v1",
        "/api/v1/",
        API,
        f"{API}/",
        f"{API}//",
        f"{API}/{pid}",
        f"{API}/{pid}/",
        f"{API}/{pid}//",
        f"{API}/{pid}/pic/extra",
        f"{API}/{pid}/nope",
        f"{API}/-{pid}/",
        f"{API}/{10**40}/",
        f"{API}/{pid}.0/",
        f"{API}/1e3/",
        f"{API}/abc/",
        f"{API}/%00/",
        f"{API}/%ff/",
        f"{API}/ü/",
        f"{API}/{pid}/../../printers/",
        f"{API}/{'9' * 5000}/",
        f"{API}/{pid}/?with_archived=%ff%fe",
        f"{API}/{pid}/?with_archived=1&with_archived=bogus",
        f"{API}/{pid}/commands?limit=%00",
        f"{API}/{pid}/commands?limit=1&limit=2",
        f"{API}/{pid}/commands?limit={'9' * 5000}",
        f"{API}/{pid}/commands?limit=%EF%BC%95",  # a full-width digit
        f"{API}/?{'a=1&' * 2000}",
        "/health?x=y",
        "/schema",
        "/schema/openapi.json?x=1",
        "/schema/openapi.yaml",
    ]
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "PROPFIND", "FOO"]
    bodies: list[bytes | None] = [
        None,
        b'{"name": "\\u0000\\ud83d\\ude00 \xf0\x9f\x96\xa8"}',
        b'{"name": {"nested": [1, {"deeper": [null, true, 1e308]}]}}',
        b'{"name": "x", "archived_at": "2024-01-01T00:00:00Z", "retract_on_pause": 1e308}',
        b"\x00\x01\x02",
    ]
    seen: dict[int, int] = {}
    for method in methods:
        for path in paths:
            for body in bodies:
                headers = {**env.auth(), "Content-Type": "application/json"}
                resp = await env.client.request(method, path, headers=headers, content=body)
                seen[resp.status_code] = seen.get(resp.status_code, 0) + 1
                assert resp.status_code < 500, f"{method} {path[:80]} {body!r:.60}: {resp.status_code} {resp.text}"
                if resp.status_code >= 400 and method != "HEAD":
                    assert_error(resp, resp.status_code)
    assert {200, 400, 404, 405} <= set(seen), seen
    # Odd headers too.
    for headers in (
        {"Authorization": "Bearer \t "},
        {"Authorization": "Bearer a b c"},
        {"Authorization": "Bearer " + "x" * 8000},
        {"X-API-KEY": "x" * 8000},
        {"Content-Type": "application/json; charset=latin-1", **env.auth()},
        {"Content-Type": "multipart/form-data; boundary=x", **env.auth()},
        {"Content-Type": "text/plain", **env.auth()},
        {"Content-Length": "5", **env.auth()},
    ):
        for method, path in (("POST", f"{API}/"), ("PATCH", f"{API}/{pid}/"), ("GET", f"{API}/{pid}/")):
            resp = await env.client.request(method, path, headers=headers, content=b'{"name": "Odd"}')
            assert resp.status_code < 500, f"{headers}: {resp.status_code} {resp.text}"
    # After all that, the API still serves, and the state is consistent.
    resp = await env.client.get(f"{API}/?with_archived=true", headers=env.auth())
    assert resp.status_code == 200
    assert all(isinstance(p["name"], str) for p in resp.json())


# -- the printer's dialect: chosen at creation, read-only afterwards --------------------------------------


async def test_dialect_is_chosen_at_creation_and_cannot_change(env: BridgeEnv) -> None:
    headers = env.auth()
    created = await env.client.post(f"{API}/", json={"name": "P", "dialect": "printbridge"}, headers=headers)
    assert created.status_code == 201 and created.json()["dialect"] == "printbridge"
    default = await env.create_printer("Q")
    assert default["dialect"] == "printbridge"
    for value in ("klingon", "", None, 1, ["printbridge"]):
        resp = await env.client.post(f"{API}/", json={"name": "R", "dialect": value}, headers=headers)
        assert_error(resp, 400, "dialect")
    resp = await env.client.post(f"{API}/", json={"name": "R", "printbridge": {"x": 1}}, headers=headers)
    assert_error(resp, 400, "printbridge")
    pid = default["id"]
    assert_error(await raw_patch(env, pid, b'{"dialect": "klingon"}'), 400, "dialect")
    assert (await raw_patch(env, pid, b'{"dialect": "printbridge", "name": "Q2"}')).status_code == 200
    got = await env.get_printer(pid)
    assert (got["name"], got["dialect"]) == ("Q2", "printbridge")
    names = [p["name"] for p in (await env.client.get(f"{API}/", headers=headers)).json()]
    assert sorted(names) == ["P", "Q2"]
