"""`printbridge serve` as a real subprocess, for the crash and shutdown tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.broker import Broker, free_port


class Served:
    """A `printbridge serve` process with its own database, port and base topic."""

    def __init__(self, broker: Broker, workdir: Path, base_topic: str, **env: str) -> None:
        self.broker = broker
        self.workdir = workdir
        self.db = workdir / "printbridge.db"
        self.base_topic = base_topic
        self.port = free_port()
        self.extra_env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.runs = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        self.runs += 1
        env = {
            **os.environ,
            "PRINTBRIDGE_DB": str(self.db),
            "PRINTBRIDGE_MQTT_URL": self.broker.url(),
            "PRINTBRIDGE_HTTP_PORT": str(self.port),
            "PRINTBRIDGE_BASE_TOPIC": self.base_topic,
            "PRINTBRIDGE_HA_PREFIX": f"{self.base_topic}-ha",
            **self.extra_env,
        }
        self.stdout_path = self.workdir / f"serve-{self.runs}.out"
        self.stderr_path = self.workdir / f"serve-{self.runs}.err"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bridge", "serve"], env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.stderr()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        else:
            raise AssertionError(f"serve not healthy within {timeout} s:\n{self.stderr()}")
        if not self.token:
            first = self.stdout_path.read_text().strip().splitlines()
            self.token = json.loads(first[0])["token"]

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def request(self, method: str, path: str, timeout: float = 10.0, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}", headers=self.headers(), timeout=timeout, **kwargs)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
