"""OPTIONS answers `Allow` with every method its path serves, for every path of the OpenAPI document.

No broker: the app is built and started against a port where nothing listens (the bridge keeps retrying in
the background, which HTTP does not need)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from bridge.app import create_app
from bridge.config import MqttUrl, Settings
from bridge.http.fastpath import ReadFastPath
from tests.support.broker import free_port

OPERATIONS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient[ReadFastPath]]:
    settings = Settings(db_path=tmp_path / "pb.db", mqtt_url=MqttUrl.parse(f"mqtt://127.0.0.1:{free_port()}"))
    with TestClient(app=create_app(settings)) as c:
        yield c


def test_options_allows_every_method_of_every_documented_path(client: TestClient[ReadFastPath]) -> None:
    paths = client.get("/schema/openapi.json").json()["paths"]
    assert "/api/v1/printers/{printer_id}" in paths
    for template, item in paths.items():
        served = {m.upper() for m in item if m in OPERATIONS} | {"OPTIONS"}
        path = re.sub(r"\{[^}]+\}", "1", template)
        for variant in (path, path.rstrip("/") + "/"):
            resp = client.options(variant)
            assert resp.status_code == 204, (variant, resp.text)
            assert set(resp.headers["allow"].split(", ")) == served, variant
            # a method the path does not serve is 405 with the same list
            wrong = client.put(variant) if "PUT" not in served else client.request("TRACE", variant)
            assert wrong.status_code == 405
            assert set(wrong.headers["allow"].split(", ")) == served, variant


def test_options_on_an_unknown_path_is_404(client: TestClient[ReadFastPath]) -> None:
    resp = client.options("/api/v1/nothing-here/")
    assert resp.status_code == 404 and "allow" not in resp.headers
