"""Peer processes the tests start (Mosquitto, Moonraker): waiting for them to listen, and stopping them."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time


def wait_listening(process: subprocess.Popen[bytes], host: str, port: int, timeout: float) -> str | None:
    """Wait until `process` accepts TCP connections on `port`; None then, else why not (for the error)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited at start-up (status {process.returncode})"
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return None
        time.sleep(0.01)
    return f"did not accept connections within {timeout} s"


def end_process(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Send `sig` and wait for the process to exit, killing it if it does not in time."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
