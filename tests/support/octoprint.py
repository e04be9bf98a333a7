"""A real OctoPrint (from the separate venv `make octoprint-venv` builds) with its virtual printer, for the
OctoPrint plugin's end-to-end tests: a fresh basedir, free port, an application key, and its REST API."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
ENV_BINARY = "PRINTBRIDGE_TEST_OCTOPRINT"  # the `octoprint` executable; default: .venv-octoprint/bin/octoprint
START_TIMEOUT_S = 60.0

# Bundled plugins that fetch from the internet at start-up (OCTOPRINT.md's list).
OFFLINE_DISABLED = [
    "softwareupdate",
    "announcements",
    "tracking",
    "errortracking",
    "pluginmanager",
    "discovery",
    "achievements",
    "pi_support",
    "firmware_check",
    "health_check",
]


def octoprint_binary() -> Path:
    binary = Path(os.environ.get(ENV_BINARY) or ROOT / ".venv-octoprint" / "bin" / "octoprint")
    if not binary.exists():
        pytest.fail(
            f"no OctoPrint at {binary}: `make test` builds .venv-octoprint (octoprint==1.11.8 and the plugin); "
            f"or set {ENV_BINARY}",
            pytrace=False,
        )
    return binary


def zigzag_gcode(lines: int, tool_c: int = 60, bed_c: int = 40) -> str:
    """A print for the virtual printer: heaters set (low targets: it heats 10 degC/s), then X 0<->50 moves
    at F3000, about 0.05 s per line."""
    moves = [f"G1 X{50 if i % 2 == 0 else 0} F3000" for i in range(lines)]
    return "\n".join(["G90", "M82", f"M104 S{tool_c}", f"M140 S{bed_c}", "G28", *moves, "M104 S0", "M140 S0", ""])


class OctoPrint:
    """One OctoPrint in `basedir`, listening on 127.0.0.1 on a free port."""

    def __init__(self, basedir: Path, plugin_settings: dict[str, Any], extra_config: dict[str, Any] | None = None):
        self.basedir = basedir
        self.port = free_port()
        self.api_key = secrets.token_hex(16)
        self.process: subprocess.Popen[bytes] | None = None
        self.binary = octoprint_binary()
        basedir.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "server": {
                "firstRun": False,
                "onlineCheck": {"enabled": False},
                "pluginBlacklist": {"enabled": False},
                "pythonEolCheck": {"enabled": False},
            },
            "plugins": {
                "_disabled": OFFLINE_DISABLED,
                "virtual_printer": {"enabled": True, "sendWait": False, "simulated_errors": []},
                **plugin_settings,
            },
            "gcodeAnalysis": {"runAt": "never"},
            "serial": {"port": "VIRTUAL", "baudrate": 115200, "autoconnect": False, "log": True},
        }
        for key, value in (extra_config or {}).items():
            config[key] = {**config.get(key, {}), **value}
        (basedir / "config.yaml").write_text(yaml.safe_dump(config))
        subprocess.run(
            [str(self.binary), "--basedir", str(basedir), "user", "add", "admin", "--password", "admin", "--admin"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        keys = basedir / "data" / "appkeys" / "keys.yaml"
        keys.parent.mkdir(parents=True, exist_ok=True)
        keys.write_text(yaml.safe_dump({"admin": [{"app_id": "printbridge-tests", "api_key": self.api_key}]}))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path = self.basedir / "serve.out"
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    str(self.binary),
                    "serve",
                    "--basedir",
                    str(self.basedir),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--iknowwhatimdoing",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"OctoPrint exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if self.api("GET", "/api/version", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"OctoPrint did not answer within {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM (OctoPrint shuts down cleanly, plugins' on_shutdown included), then wait."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    # -- logs -------------------------------------------------------------------------------------------
    def octoprint_log(self) -> str:
        path = self.basedir / "logs" / "octoprint.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def serial_log(self) -> str:
        path = self.basedir / "logs" / "serial.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.octoprint_log().splitlines()[-lines:])

    # -- REST -------------------------------------------------------------------------------------------
    def api(self, method: str, path: str, timeout: float = 10.0, **kwargs: Any) -> httpx.Response:
        headers = {"X-Api-Key": self.api_key, **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=timeout, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        resp = self.api(method, path, **kwargs)
        assert resp.status_code < 300, f"{method} {path}: {resp.status_code} {resp.text}"
        return resp

    def connect_printer(self) -> None:
        self.ok("POST", "/api/connection", json={"command": "connect", "port": "VIRTUAL", "baudrate": 115200})

    def state(self) -> str:
        return str(self.ok("GET", "/api/job").json()["state"])

    def upload_and_print(self, name: str, gcode: str) -> None:
        files = {"file": (name, gcode.encode(), "application/octet-stream")}
        self.ok("POST", "/api/files/local", files=files, data={"select": "true", "print": "true"})

    def save_plugin_settings(self, identifier: str, values: dict[str, Any]) -> None:
        self.ok("POST", "/api/settings", json={"plugins": {identifier: values}})
