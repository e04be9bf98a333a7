"""Real Moonraker (from PyPI, in `.venv-moonraker`, made by `make install-moonraker`) for tests and benchmarks.

`start_moonraker` writes a fresh data folder with a moonraker.conf made of the minimal `[server]` and
`[machine]` sections plus the `[mqtt]` section it is given (in the tests: exactly the snippet printbridge
returned), starts a Klippy stand-in on a unix socket in that folder unless one is given, and starts
`moonraker -d DATA` on a free port. `stop()` ends both (Moonraker publishes its retained `offline` first).
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.support.broker import Probe, Received, free_port
from tests.support.klippy import KlippyStandIn
from tests.support.processes import end_process, wait_listening

ROOT = Path(__file__).resolve().parents[2]
ENV_BINARY = "PRINTBRIDGE_TEST_MOONRAKER"
START_TIMEOUT_S = 20.0


class MoonrakerError(RuntimeError):
    """Moonraker could not be started (the message carries the end of its log)."""


def moonraker_binary() -> Path | None:
    """`$PRINTBRIDGE_TEST_MOONRAKER`, else the `moonraker` of `.venv-moonraker`."""
    configured = os.environ.get(ENV_BINARY)
    path = Path(configured) if configured else ROOT / ".venv-moonraker" / "bin" / "moonraker"
    return path if path.exists() else None


def build_moonraker_conf(http_port: int, klippy_socket: Path, mqtt_section: str) -> str:
    return "\n".join(
        [
            "[server]",
            "host: 127.0.0.1",
            f"port: {http_port}",
            f"klippy_uds_address: {klippy_socket}",
            "",
            "[machine]",
            "provider: none",
            "validate_service: False",
            "validate_config: False",
            "",
            mqtt_section.strip(),
            "",
        ]
    )


@dataclass
class Moonraker:
    data_dir: Path
    http_port: int
    klippy: KlippyStandIn
    socket_dir: Path  # short-named (unix socket paths are limited to 108 bytes): Moonraker's socket, and ours
    owns_klippy: bool = True
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.data_dir / "moonraker.out"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def launch(self) -> None:
        """Start the Moonraker process and wait until its HTTP port answers."""
        binary = moonraker_binary()
        if binary is None:
            raise MoonrakerError(f"no moonraker binary: run `make install-moonraker` or set {ENV_BINARY}")
        self._log_file = self.log_path.open("ab")
        self._process = subprocess.Popen(
            # -n: no log file (the output goes to ours); -u: its own API socket, at a path short enough
            [str(binary), "-d", str(self.data_dir), "-n", "-u", str(self.socket_dir / "moonraker.sock")],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=self._log_file,
            cwd=self.data_dir,
        )
        failure = wait_listening(self._process, "127.0.0.1", self.http_port, START_TIMEOUT_S)
        if failure is not None:
            self.stop()
            raise MoonrakerError(f"moonraker {failure}:\n{self.log_tail()}")

    def stop_moonraker(self, kill: bool = False) -> None:
        """Stop only Moonraker (SIGTERM: it publishes `offline`; `kill`: SIGKILL, only its Will tells)."""
        process, self._process = self._process, None
        end_process(process, signal.SIGKILL if kill else signal.SIGTERM, timeout=15)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def stop(self) -> None:
        """Stop Moonraker and, if this owns it, the Klippy stand-in. Idempotent."""
        self.stop_moonraker()
        if self.owns_klippy:
            self.klippy.stop()
        shutil.rmtree(self.socket_dir, ignore_errors=True)


def start_moonraker(workdir: Path, mqtt_section: str, klippy: KlippyStandIn | None = None) -> Moonraker:
    """A Moonraker configured with `mqtt_section`, its data in `workdir`, and a Klippy stand-in (a new one
    unless `klippy` is given: then the caller starts and stops it)."""
    data_dir = workdir.resolve()
    (data_dir / "config").mkdir(parents=True, exist_ok=True)
    (data_dir / "gcodes").mkdir(exist_ok=True)
    socket_dir = Path(tempfile.mkdtemp(prefix="mr-"))
    owns_klippy = klippy is None
    if klippy is None:
        klippy = KlippyStandIn(socket_dir / "klippy.sock", sdcard_path=data_dir / "gcodes")
        klippy.start()
    port = free_port()
    (data_dir / "config" / "moonraker.conf").write_text(build_moonraker_conf(port, klippy.socket_path, mqtt_section))
    moonraker = Moonraker(data_dir, port, klippy, socket_dir, owns_klippy)
    try:
        moonraker.launch()
    except BaseException:
        moonraker.stop()
        raise
    return moonraker


class MessageLog:
    """Everything the probe received, searchable in order without losing messages that arrive out of the
    order a test waits for them (Moonraker's reply and the status delta race)."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.seen: list[Received] = []
        self.pos = 0  # `after()` moves it: searches start here

    def find(self, predicate: Any, timeout: float = 10.0) -> Received:
        deadline = time.monotonic() + timeout
        index = self.pos
        while True:
            while index < len(self.seen):
                if predicate(self.seen[index]):
                    return self.seen[index]
                index += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching message within {timeout} s")
            with contextlib.suppress(queue.Empty):
                self.seen.append(self.probe.messages.get(timeout=remaining))

    def mark(self) -> None:
        """Later searches look only at what arrives from now on."""
        while not self.probe.messages.empty():
            self.seen.append(self.probe.messages.get_nowait())
        self.pos = len(self.seen)
