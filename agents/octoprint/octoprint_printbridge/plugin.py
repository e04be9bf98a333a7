"""The OctoPrint side: settings, the settings page, events, the pause/resume script hook, and the printer
calls the agent makes. Everything else lives in modules that do not import OctoPrint."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

import octoprint.plugin
from octoprint.events import Events

from octoprint_printbridge import __version__
from octoprint_printbridge.agent import Agent
from octoprint_printbridge.commands import StateWatch
from octoprint_printbridge.pause import PauseSequence
from octoprint_printbridge.settings import DEFAULTS, SettingsError, parse_settings
from octoprint_printbridge.status import PrintTracker

_TAGS = {"source:plugin", "plugin:printbridge"}
_MODE_CODES = frozenset({"G90", "G91", "M82", "M83"})
_SCRIPT_RESET_EVENTS = frozenset({Events.PRINT_STARTED, Events.PRINT_DONE, Events.PRINT_FAILED, Events.PRINT_CANCELLED})


class PrintBridgePlugin(
    octoprint.plugin.StartupPlugin,
    octoprint.plugin.ShutdownPlugin,
    octoprint.plugin.EventHandlerPlugin,
    octoprint.plugin.SettingsPlugin,
    octoprint.plugin.TemplatePlugin,
    octoprint.plugin.SimpleApiPlugin,
):
    def __init__(self) -> None:
        super().__init__()
        self._agent: Agent | None = None
        self._agent_lock = threading.Lock()
        self._tracker = PrintTracker()
        self._pause_sequence = PauseSequence()
        self._watch = StateWatch()
        self._settings_error: str | None = None

    # -- settings -----------------------------------------------------------------------------------
    def get_settings_defaults(self) -> dict[str, Any]:
        return dict(DEFAULTS)

    def get_settings_restricted_paths(self) -> dict[str, Any]:
        return {"admin": [["password"]]}

    def get_template_folder(self) -> str:
        # OctoPrint's default is relative to the loaded module's location, which is plugin.py itself here
        return os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")

    def is_template_autoescaped(self) -> bool:
        return True

    def get_template_configs(self) -> list[dict[str, Any]]:
        return [{"type": "settings", "custom_bindings": False}]

    def on_settings_save(self, data: dict[str, Any]) -> Any:
        result = super().on_settings_save(data)
        # reconnecting publishes `offline` and waits for the broker: not on the request's thread
        threading.Thread(target=self._restart_agent, name="printbridge-restart", daemon=True).start()
        return result

    # -- lifecycle ----------------------------------------------------------------------------------
    def on_after_startup(self) -> None:
        self._restart_agent()

    def on_shutdown(self) -> None:
        with self._agent_lock:
            agent, self._agent = self._agent, None
        if agent is not None:
            agent.stop()
            self._logger.info("published offline and disconnected")

    def _restart_agent(self) -> None:
        with self._agent_lock:
            if self._agent is not None:
                self._agent.stop()
                self._agent = None
            values = {key: self._settings.get([key]) for key in DEFAULTS}
            try:
                settings = parse_settings(values)
            except SettingsError as exc:
                self._settings_error = str(exc)
                self._logger.warning("not connecting to printbridge: %s", exc)
                return
            self._settings_error = None
            self._agent = Agent(settings, self, self, self._watch, self._tracker, __version__)
            self._agent.start()

    # -- GET /api/plugin/printbridge: the connection's state, for people and scripts ---------------------
    def on_api_get(self, request: Any) -> Any:
        import flask

        agent = self._agent
        if agent is None:
            return flask.jsonify({"configured": False, "connected": False, "error": self._settings_error})
        return flask.jsonify({"configured": True, **agent.describe()})

    # -- OctoPrint's events (its event thread: hand over, never block) --------------------------------
    def on_event(self, event: str, payload: Mapping[str, Any] | None) -> None:
        if event == Events.PRINTER_STATE_CHANGED:
            self._watch.changed()
        if event in _SCRIPT_RESET_EVENTS:
            self._pause_sequence.reset()
        agent = self._agent
        if agent is not None:
            agent.on_event(event, payload)

    # -- hooks (OctoPrint's communication thread) -------------------------------------------------------
    def script_hook(self, comm: Any, script_type: str, script_name: str, *args: Any, **kwargs: Any) -> Any:
        return self._pause_sequence.script_hook(script_type, script_name)

    def gcode_sent_hook(
        self, comm: Any, phase: str, cmd: str, cmd_type: Any, gcode: Any, *args: Any, **kwargs: Any
    ) -> None:
        if gcode in _MODE_CODES:
            self._pause_sequence.track_sent(cmd)

    # -- PrinterControl (the command thread) -----------------------------------------------------------
    def state_id(self) -> str:
        return str(self._printer.get_state_id())

    def state_text(self) -> str:
        return str(self._printer.get_state_string())

    def pause(self, args: Mapping[str, Any]) -> None:
        profile = self._printer_profile_manager.get_current_or_default()
        extruder = profile.get("extruder") or {}
        tools = 1 if extruder.get("sharedNozzle") else int(extruder.get("count") or 1)
        self._pause_sequence.prepare(args, self._printer.get_current_temperatures(), tools)
        self._printer.pause_print(tags=_TAGS)

    def resume(self) -> None:
        self._printer.resume_print(tags=_TAGS)

    def cancel(self) -> None:
        self._printer.cancel_print(tags=_TAGS)

    # -- Host (the agent's threads) ------------------------------------------------------------------
    def current_data(self) -> Mapping[str, Any]:
        return self._printer.get_current_data()

    def temperatures(self) -> Mapping[str, Any]:
        return self._printer.get_current_temperatures()

    def webcams(self) -> list[dict[str, Any]]:
        from octoprint.webcams import get_webcams

        return [
            {"name": webcam.config.name, "can_snapshot": bool(webcam.config.canSnapshot)}
            for webcam in get_webcams(plugin_manager=self._plugin_manager).values()
        ]

    def snapshot(self) -> bytes | None:
        """A JPEG from OctoPrint's snapshot webcam, or None when it has none that can take one."""
        from octoprint.webcams import get_snapshot_webcam

        webcam = get_snapshot_webcam(plugin_manager=self._plugin_manager)
        if webcam is None or not webcam.config.canSnapshot:
            return None
        provider = self._plugin_manager.get_plugin_info(webcam.providerIdentifier)
        if provider is None or provider.implementation is None:
            return None
        return b"".join(provider.implementation.take_webcam_snapshot(webcam.config.name))


__plugin_name__ = "PrintBridge"
__plugin_version__ = __version__
__plugin_description__ = "Makes OctoPrint a printbridge printer agent: status, pause/resume/cancel, snapshots over MQTT"
__plugin_pythoncompat__ = ">=3.9,<4"
__plugin_implementation__ = PrintBridgePlugin()
__plugin_hooks__ = {
    "octoprint.comm.protocol.scripts": __plugin_implementation__.script_hook,
    "octoprint.comm.protocol.gcode.sent": __plugin_implementation__.gcode_sent_hook,
}

logging.getLogger("octoprint.plugins.printbridge").debug("loaded")
