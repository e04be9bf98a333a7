"""`GET /api/v1/printers/{id}/agent_config/` (docs/rest.md): what the printer's agent needs, to its owner only."""

from __future__ import annotations

from pathlib import Path

import yaml

from bridge.config import MqttUrl
from tests.support.broker import Broker
from tests.support.env import BridgeEnv, running_bridge

API = "/api/v1/printers"


async def test_owner_gets_the_broker_login_and_a_settings_snippet(env: BridgeEnv) -> None:
    printer = await env.create_printer("Ender")
    pid = printer["id"]
    resp = await env.client.get(f"{API}/{pid}/agent_config/", headers=env.auth())
    assert resp.status_code == 200, resp.text
    body = resp.json()
    broker_url = f"mqtt://{env.broker.host}:{env.broker.port}"  # the bridge's own URL, credentials removed
    assert body == {
        "dialect": "printbridge",
        "broker": {"url": broker_url, "username": f"printer-{pid}", "password": printer["auth_token"]},
        "base_topic": env.settings.base_topic,
        "printer_id": pid,
        "snippet": body["snippet"],
    }
    assert yaml.safe_load(body["snippet"]) == {
        "printbridge": {
            "broker_url": broker_url,
            "printer_id": pid,
            "password": printer["auth_token"],
            "base_topic": env.settings.base_topic,
        }
    }
    no_slash = await env.client.get(f"{API}/{pid}/agent_config", headers=env.auth())
    assert no_slash.json() == body

    # A rotated token is what the agent must use from now on.
    rotated = (await env.client.post(f"{API}/{pid}/rotate_token/", headers=env.auth())).json()
    after = (await env.client.get(f"{API}/{pid}/agent_config/", headers=env.auth())).json()
    assert after["broker"]["password"] == rotated["auth_token"] != printer["auth_token"]


async def test_someone_elses_unknown_or_archived_printer_is_404(env: BridgeEnv) -> None:
    printer = await env.create_printer("Mine")
    pid = printer["id"]
    _, other_token = env.add_user("mallory")
    for path, token in [
        (f"{API}/{pid}/agent_config/", other_token),
        (f"{API}/999999/agent_config/", None),
    ]:
        resp = await env.client.get(path, headers=env.auth(token))
        assert (resp.status_code, resp.json()) == (404, {"detail": "Not found."}), path
    resp = await env.client.patch(f"{API}/{pid}/", headers=env.auth(), json={"archived_at": "2026-01-01T00:00:00Z"})
    assert resp.status_code == 200
    resp = await env.client.get(f"{API}/{pid}/agent_config/", headers=env.auth())
    assert resp.status_code == 404
    resp = await env.client.get(f"{API}/{pid}/agent_config/?with_archived=true", headers=env.auth())
    assert resp.status_code == 200 and resp.json()["printer_id"] == pid
    resp = await env.client.get(f"{API}/{pid}/agent_config/", headers={})
    assert resp.status_code == 401


async def test_public_mqtt_url_is_what_agents_are_given(broker: Broker, tmp_path: Path) -> None:
    public = MqttUrl.parse("mqtts://printers.example.org:8883")
    async with running_bridge(broker, tmp_path / "pb.db", public_mqtt_url=public) as env:
        printer = await env.create_printer("On the LAN")
        body = (await env.client.get(f"{API}/{printer['id']}/agent_config/", headers=env.auth())).json()
        assert body["broker"]["url"] == "mqtts://printers.example.org:8883"
        assert yaml.safe_load(body["snippet"])["printbridge"]["broker_url"] == "mqtts://printers.example.org:8883"


async def test_openapi_documents_agent_config(env: BridgeEnv) -> None:
    doc = (await env.client.get("/schema/openapi.json")).json()
    operation = doc["paths"]["/api/v1/printers/{printer_id}/agent_config"]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    ref = schema["$ref"].rsplit("/", 1)[-1]
    component = doc["components"]["schemas"][ref]
    assert set(component["properties"]) == {"dialect", "broker", "base_topic", "printer_id", "snippet"}
    assert "404" in operation["responses"]
