"""A stand-in for Klippy (Klipper's host process) that real Moonraker connects to, for tests and benchmarks.

It speaks Klippy's API socket protocol: JSON objects each terminated by byte 0x03 on a unix socket. A request
is `{"id", "method", "params"}`; a reply `{"id", "result": {...}}` (an empty result is "ok" for Moonraker) or
`{"id", "error": {"error": "WebRequestError", "message"}}`. Status subscriptions (`objects/subscribe`) are
answered with the current values, then pushed as `{"method": <response_template.method>, "params":
{"eventtime", "status"}}` holding only the fields that changed, as Klippy does every 250 ms.

It simulates a printer with `virtual_sdcard`, `pause_resume`, an extruder and a heated bed, a print that
advances with time, and Klipper's quirks: "ok" to PAUSE when already paused (or in standby), "ok" to RESUME
when not paused, replies that wait behind G-code already running, shutdown and not-ready states whose
requests fail, and a silent disconnect (the socket closes and stops listening; Moonraker says nothing on MQTT).

The stand-in runs its own event loop in a thread, so that the code under test cannot stall it; every control
method is thread-safe and returns once the change is applied (and pushed to subscribers).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
ETX = b"\x03"
STATUS_INTERVAL_S = 0.25  # Klippy pushes subscribed status changes at this period
SOFTWARE_VERSION = "v0.12.0-standin"

ENDPOINTS = [
    "info",
    "emergency_stop",
    "objects/list",
    "objects/query",
    "objects/subscribe",
    "gcode/script",
    "gcode/help",
    "gcode/restart",
    "gcode/firmware_restart",
    "gcode/subscribe_output",
    "pause_resume/pause",
    "pause_resume/resume",
    "pause_resume/cancel",
    "register_remote_method",
    "list_endpoints",
]


class KlippyError(Exception):
    """A request Klippy answers with an error (the message is what Moonraker passes on)."""


def initial_objects(sdcard_path: str) -> dict[str, dict[str, Any]]:
    """Klipper's printer objects as a freshly started printer reports them."""
    return {
        "webhooks": {"state": "ready", "state_message": "Printer is ready"},
        "print_stats": {
            "filename": "",
            "total_duration": 0.0,
            "print_duration": 0.0,
            "filament_used": 0.0,
            "state": "standby",
            "message": "",
            "info": {"total_layer": None, "current_layer": None},
        },
        "virtual_sdcard": {"file_path": None, "progress": 0.0, "is_active": False, "file_position": 0, "file_size": 0},
        "pause_resume": {"is_paused": False},
        "display_status": {"progress": 0.0, "message": None},
        "idle_timeout": {"state": "Idle", "printing_time": 0.0},
        "extruder": {"temperature": 21.0, "target": 0.0, "power": 0.0},
        "heater_bed": {"temperature": 21.0, "target": 0.0, "power": 0.0},
        "configfile": {"config": {"virtual_sdcard": {"path": sdcard_path}}, "settings": {}},
        "toolhead": {"homed_axes": "", "position": [0.0, 0.0, 0.0, 0.0]},
    }


class _Subscription:
    def __init__(self, writer: asyncio.StreamWriter, objects: dict[str, list[str] | None], method: str) -> None:
        self.writer = writer
        self.objects = objects
        self.method = method


class KlippyStandIn:
    """`start()` listens on `socket_path`; `stop()` closes everything. See the module docstring."""

    def __init__(
        self,
        socket_path: Path,
        *,
        sdcard_path: Path | None = None,
        print_seconds: float = 600.0,
        heat_rate: float = 40.0,
    ) -> None:
        self.socket_path = socket_path
        self.print_seconds = print_seconds  # how long a simulated print takes from 0 to 100 %
        self.heat_rate = heat_rate  # degrees per second towards the target
        self.objects = initial_objects(str(sdcard_path or socket_path.parent / "gcodes"))
        self.gcode_busy_s = 0.0  # a G-code "running" now: replies wait this long (set by tests)
        self.pause_macro_noop = False  # a PAUSE macro that does nothing (yet Klipper answers "ok")
        self.periodic = True  # push time-driven changes (clocks, progress, heaters) every 250 ms; False: quiet
        self.requests: list[str] = []  # methods received, in order (what Moonraker asked)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._subs: dict[asyncio.StreamWriter, _Subscription] = {}
        self._sent: dict[asyncio.StreamWriter, dict[str, dict[str, Any]]] = {}
        self._gcode_lock: asyncio.Lock | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._answering: set[asyncio.Task[None]] = set()
        self._last_tick = time.monotonic()
        self._print_started = 0.0
        self.connected = threading.Event()  # set while Moonraker is connected

    # -- life cycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="klippy-standin", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the Klippy stand-in did not start")

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._gcode_lock = asyncio.Lock()
        loop.run_until_complete(self._listen())
        self._ticker = loop.create_task(self._tick_forever())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(self._close_all())
        loop.close()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._thread = None
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run `fn` on the stand-in's loop and return its result (thread-safe)."""
        loop = self._loop
        assert loop is not None, "the stand-in is not running"

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout)

    async def _listen(self) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.socket_path), limit=1 << 22)

    async def _close_all(self) -> None:
        for task in [self._ticker, *self._answering]:
            if task is not None:
                task.cancel()
        await self._drop_connections()

    async def _drop_connections(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        for writer in list(self._writers):
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        self._writers.clear()
        self._subs.clear()
        self._sent.clear()
        self.connected.clear()

    # -- the protocol -------------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self.connected.set()
        try:
            while True:
                try:
                    data = await reader.readuntil(ETX)
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                request = json.loads(data[:-1])
                task = asyncio.get_running_loop().create_task(self._answer(writer, request))
                self._answering.add(task)
                task.add_done_callback(self._answering.discard)
        finally:
            self._writers.discard(writer)
            self._subs.pop(writer, None)
            self._sent.pop(writer, None)
            if not self._writers:
                self.connected.clear()

    def _write(self, writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
        if not writer.is_closing():
            writer.write(json.dumps(message).encode() + ETX)

    async def _answer(self, writer: asyncio.StreamWriter, request: dict[str, Any]) -> None:
        method = request.get("method", "")
        params = request.get("params") or {}
        self.requests.append(method)
        try:
            result = await self._dispatch(writer, method, params)
            reply: dict[str, Any] = {"id": request.get("id"), "result": result}
        except KlippyError as exc:
            reply = {"id": request.get("id"), "error": {"error": "WebRequestError", "message": str(exc)}}
        self._write(writer, reply)
        self._push()  # what the request changed goes out right after its reply, as Klippy's next tick would

    async def _dispatch(self, writer: asyncio.StreamWriter, method: str, params: dict[str, Any]) -> Any:
        webhooks = self.objects["webhooks"]
        if method == "info":
            return {
                "state": webhooks["state"],
                "state_message": webhooks["state_message"],
                "hostname": "standin",
                "klipper_path": str(self.socket_path.parent),
                "python_path": "/usr/bin/python3",
                "process_id": None,
                "user_id": 0,
                "group_id": 0,
                "log_file": str(self.socket_path.parent / "klippy.log"),
                "config_file": str(self.socket_path.parent / "printer.cfg"),
                "software_version": SOFTWARE_VERSION,
                "cpu_info": "stand-in",
            }
        if method == "list_endpoints":
            return {"endpoints": ENDPOINTS}
        if method in ("gcode/subscribe_output", "register_remote_method"):
            return {}
        if method == "objects/list":
            return {"objects": sorted(self.objects)}
        if method == "objects/query":
            return {"eventtime": self._eventtime(), "status": self._select(params.get("objects") or {})}
        if method == "objects/subscribe":
            objects = params.get("objects") or {}
            template = params.get("response_template") or {}
            self._subs[writer] = _Subscription(writer, objects, template.get("method", "process_status_update"))
            status = self._select(objects)
            self._sent[writer] = copy.deepcopy(status)
            return {"eventtime": self._eventtime(), "status": status}
        if webhooks["state"] != "ready":
            if webhooks["state"] == "shutdown":
                raise KlippyError(f"{webhooks['state_message']}\nPrinter is shutdown")
            raise KlippyError("Printer is not ready\n" + webhooks["state_message"])
        if method == "gcode/script":
            return await self._gcode(str(params.get("script", "")))
        if method == "pause_resume/pause":
            return await self._gcode("PAUSE")
        if method == "pause_resume/resume":
            return await self._gcode("RESUME")
        if method == "pause_resume/cancel":
            return await self._gcode("CANCEL_PRINT")
        if method in ("emergency_stop", "gcode/firmware_restart", "gcode/restart"):
            self._shutdown("Shutdown due to webhooks request" if method == "emergency_stop" else "Restarting")
            return {}
        raise KlippyError(f"No such endpoint '{method}'")

    async def _gcode(self, script: str) -> dict[str, Any]:
        """Run a G-code script after any G-code already running (replies wait behind it, as in Klipper)."""
        assert self._gcode_lock is not None
        async with self._gcode_lock:
            if self.gcode_busy_s > 0:
                await asyncio.sleep(self.gcode_busy_s)
            for line in script.splitlines():
                self._run_gcode_line(line.strip())
        return {}

    def _run_gcode_line(self, line: str) -> None:
        stats, pause = self.objects["print_stats"], self.objects["pause_resume"]
        words = line.split()
        cmd = words[0].upper() if words else ""
        if cmd == "PAUSE":
            if self.pause_macro_noop or pause["is_paused"] or stats["state"] != "printing":
                return  # Klipper answers "ok" all the same
            self._advance()
            pause["is_paused"] = True
            stats["state"] = "paused"
            self.objects["idle_timeout"]["state"] = "Ready"
        elif cmd == "RESUME":
            if not pause["is_paused"]:
                return
            self._advance()
            pause["is_paused"] = False
            stats["state"] = "printing"
            self.objects["idle_timeout"]["state"] = "Printing"
        elif cmd == "CANCEL_PRINT":
            if stats["state"] not in ("printing", "paused"):
                return
            self._advance()
            self._end_print("cancelled")
        elif cmd in ("M104", "M140"):
            target = next((float(w[1:]) for w in words[1:] if w.upper().startswith("S")), 0.0)
            self.objects["extruder" if cmd == "M104" else "heater_bed"]["target"] = target
        # any other G-code: real Klipper answers "ok" too (with an error line on its console)

    # -- status -------------------------------------------------------------------------------------------

    def _eventtime(self) -> float:
        return time.monotonic()

    def _select(self, objects: dict[str, list[str] | None]) -> dict[str, dict[str, Any]]:
        status: dict[str, dict[str, Any]] = {}
        for name, fields in objects.items():
            obj = self.objects.get(name)
            if obj is None:
                continue
            keys = list(obj) if fields is None else [f for f in fields if f in obj]
            status[name] = {k: copy.deepcopy(obj[k]) for k in keys}
        return status

    def _push(self) -> None:
        """Send each subscriber the fields that changed since it last heard of them."""
        eventtime = self._eventtime()
        for writer, sub in list(self._subs.items()):
            sent = self._sent.setdefault(writer, {})
            delta: dict[str, dict[str, Any]] = {}
            for name, values in self._select(sub.objects).items():
                before = sent.setdefault(name, {})
                changed = {k: v for k, v in values.items() if before.get(k, object()) != v}
                if changed:
                    delta[name] = changed
                    before.update(copy.deepcopy(changed))
            if delta:
                self._write(writer, {"method": sub.method, "params": {"eventtime": eventtime, "status": delta}})

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL_S)
            if self.periodic:
                self._advance()
                self._push()

    def _advance(self) -> None:
        """Move the simulation forward to now: heaters, and the print's clocks and progress."""
        now = time.monotonic()
        dt, self._last_tick = now - self._last_tick, now
        for heater in ("extruder", "heater_bed"):
            obj = self.objects[heater]
            diff = obj["target"] - obj["temperature"] if obj["target"] else 21.0 - obj["temperature"]
            step = max(-self.heat_rate * dt, min(self.heat_rate * dt, diff))
            obj["temperature"] = round(obj["temperature"] + step, 2)
            obj["power"] = 1.0 if step > 0 else 0.0
        stats, sd = self.objects["print_stats"], self.objects["virtual_sdcard"]
        if stats["state"] in ("printing", "paused"):
            stats["total_duration"] = round(now - self._print_started, 3)
        if stats["state"] == "printing":
            stats["print_duration"] = round(stats["print_duration"] + dt, 3)
            stats["filament_used"] = round(stats["filament_used"] + dt * 0.5, 3)
            sd["progress"] = round(min(1.0, sd["progress"] + dt / self.print_seconds), 4)
            sd["file_position"] = int(sd["progress"] * sd["file_size"])
            self.objects["display_status"]["progress"] = sd["progress"]
            if sd["progress"] >= 1.0:
                self._end_print("complete")

    def _end_print(self, state: str, message: str = "") -> None:
        stats = self.objects["print_stats"]
        stats["state"] = state
        stats["message"] = message
        self.objects["pause_resume"]["is_paused"] = False
        self.objects["virtual_sdcard"]["is_active"] = False
        self.objects["idle_timeout"]["state"] = "Ready"
        for heater in ("extruder", "heater_bed"):
            self.objects[heater]["target"] = 0.0

    def _shutdown(self, message: str) -> None:
        self._advance()
        self.objects["webhooks"].update(state="shutdown", state_message=message)
        if self.objects["print_stats"]["state"] in ("printing", "paused"):
            self._end_print("error", message)

    # -- controls for tests (thread-safe; each returns once applied and pushed) ----------------------------

    def _apply(self, change: Callable[[], None]) -> None:
        def run() -> None:
            self._advance()
            change()
            self._push()

        self.call(run)

    def start_print(self, filename: str = "benchy.gcode", *, extruder: float = 215.0, bed: float = 60.0) -> None:
        """As SDCARD_PRINT_FILE: a print starts from 0 % with the heaters set."""

        def change() -> None:
            stats = self.objects["print_stats"]
            self._print_started = time.monotonic()
            stats.update(filename=filename, state="printing", total_duration=0.0, print_duration=0.0, filament_used=0.0)
            stats["message"] = ""
            self.objects["virtual_sdcard"].update(
                file_path=f"/gcodes/{filename}", progress=0.0, is_active=True, file_position=0, file_size=1_000_000
            )
            self.objects["pause_resume"]["is_paused"] = False
            self.objects["idle_timeout"]["state"] = "Printing"
            self.objects["extruder"]["target"] = extruder
            self.objects["heater_bed"]["target"] = bed

        self._apply(change)

    def set_progress(self, fraction: float, print_duration: float) -> None:
        """Jump the print to `fraction` done after `print_duration` seconds of printing (the wall clock of the
        print, total_duration, goes on as it was)."""

        def change() -> None:
            self.objects["virtual_sdcard"]["progress"] = fraction
            self.objects["display_status"]["progress"] = fraction
            self.objects["print_stats"]["print_duration"] = print_duration

        self._apply(change)

    def finish_print(self) -> None:
        self._apply(lambda: self._end_print("complete"))

    def fail_print(self, message: str) -> None:
        """The print stops on an error (print_stats `error`), Klipper itself staying ready."""
        self._apply(lambda: self._end_print("error", message))

    def pause_locally(self) -> None:
        """PAUSE from the printer's own screen."""
        self._apply(lambda: self._run_gcode_line("PAUSE"))

    def standby(self) -> None:
        """SDCARD_RESET_FILE: back to standby after a print ended."""

        def change() -> None:
            self.objects["print_stats"].update(state="standby", filename="", message="")
            self.objects["virtual_sdcard"].update(file_path=None, progress=0.0, is_active=False)

        self._apply(change)

    def shutdown(self, message: str = "MCU 'mcu' shutdown: Timer too close") -> None:
        self._apply(lambda: self._shutdown(message))

    def set_startup(self, message: str = "Printer is not ready") -> None:
        """Klippy (re)starting: it answers, but its state is `startup` and requests fail as not ready."""
        self._apply(lambda: self.objects["webhooks"].update(state="startup", state_message=message))

    def ready(self) -> None:
        self._apply(lambda: self.objects["webhooks"].update(state="ready", state_message="Printer is ready"))

    def disconnect(self) -> None:
        """Klippy goes away silently: its socket closes and nothing listens until `reconnect()`."""
        loop = self._loop
        assert loop is not None
        asyncio.run_coroutine_threadsafe(self._drop_connections(), loop).result(10)

    def reconnect(self) -> None:
        """Klippy is back (as after a restart): Moonraker connects again and re-subscribes."""
        loop = self._loop
        assert loop is not None
        asyncio.run_coroutine_threadsafe(self._listen(), loop).result(10)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return self.call(lambda: copy.deepcopy(self.objects))
