"""Hostile HTTP input (issue 8): schemathesis against the live OpenAPI document of a running `printbridge serve`,
with every check, positive and negative cases, at a bounded example count: no 5xx, every response as documented."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from bridge.dialects.registry import DIALECTS
from bridge.mqtt.topics import Topics
from tests.reliability.serve import Served
from tests.support.agent import agent_message
from tests.support.broker import Broker, connected_probe
from tests.support.env import BridgeEnv

EXAMPLES_PER_OPERATION = 12


def _names_dialect_settings(body: Any) -> bool:
    """A printer body that carries a dialect's settings object or chooses a dialect that takes one."""
    with_settings = {name for name, cls in DIALECTS.items() if cls.takes_config}
    return isinstance(body, dict) and (bool(with_settings & set(body)) or body.get("dialect") in with_settings)


def _fuzz(label: str, strategies: list[Any], served: Served, failures: list[str]) -> int:
    """Run the cases of one operation in one generation mode; failures are collected, not raised, so that
    one run reports every broken operation. Returns the number of cases run."""
    cases = 0

    @settings(
        max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=st.one_of(strategies))
    def check(case: Any) -> None:
        nonlocal cases
        cases += 1
        # A dialect's settings object is checked by the dialect beyond what a schema can say (a PEM
        # certificate, a host that must be there): a schema-valid one may be refused, with a 400 naming it.
        excluded = [positive_data_acceptance] if _names_dialect_settings(case.body) else []
        try:
            case.call_and_validate(base_url=served.url, timeout=10, excluded_checks=excluded)
        except httpx.HTTPError:
            raise
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{label}: {exc}"[:1500])

    try:
        check()
    except Unsatisfiable:
        # No negative case exists for an operation without parameters or body (GET /health).
        assert "(negative)" in label, f"{label}: no case could be generated"
    return cases


def test_openapi_document_holds_under_fuzzing(broker: Broker, tmp_path: Path) -> None:
    served = Served(broker, tmp_path, "pbfuzz", PRINTBRIDGE_COMMAND_TIMEOUT_S="0.2")
    served.start()
    try:
        printer = served.request("POST", "/api/v1/printers/", json={"name": "Target"}).json()
        pid = printer["id"]
        topics = Topics("pbfuzz")
        with connected_probe(broker) as agent:  # a printing printer, so that actions get past "not printing"
            agent.publish(topics.status(pid), msgspec.json.encode(agent_message(ts=time.time(), event="PrintStarted")))
            agent.publish(topics.snapshot(pid), b"\xff\xd8\xff\xe0 a jpeg")
        schema = schemathesis.openapi.from_url(f"{served.url}/schema/openapi.json")
        failures: list[str] = []
        cases = 0
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.path == "/api/v1/printers/stream":
                continue  # an endless event stream: tests/integration/test_stream.py checks it
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                strategies = [operation.as_strategy(mode, headers=served.headers())]
                if "{printer_id}" in operation.path:
                    strategies.append(
                        operation.as_strategy(mode, headers=served.headers(), path_parameters={"printer_id": pid})
                    )

                cases += _fuzz(
                    f"{operation.method.upper()} {operation.path} ({mode.value})", strategies, served, failures
                )
        print(f"\nschemathesis: {cases} cases, {len(failures)} failures")
        assert served.process is not None and served.process.poll() is None, served.stderr()
        assert not failures, "\n\n".join(failures)
    finally:
        served.stop()


async def test_body_over_1_mib_is_413_and_changes_nothing(env: BridgeEnv) -> None:
    printer = await env.create_printer("Small")
    big = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
    created = await env.client.post("/api/v1/printers/", content=big, headers=env.auth())
    assert created.status_code == 413
    assert "detail" in created.json()
    patched = await env.client.patch(f"/api/v1/printers/{printer['id']}/", content=big, headers=env.auth())
    assert patched.status_code == 413
    listing = (await env.client.get("/api/v1/printers/", headers=env.auth())).json()
    assert [p["name"] for p in listing] == ["Small"]
