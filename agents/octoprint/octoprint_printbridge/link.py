"""The plugin's MQTT connection (paho-mqtt 2), the only module that imports paho.

paho's own network thread connects, reconnects with exponential backoff (RECONNECT_MIN_S doubling up to
RECONNECT_MAX_S, the first attempt included) and calls back. On every connection the link subscribes to the
printer's `command` and `remote_status` topics and publishes a retained `online`; its Will is a retained
`offline`, and `stop()` publishes `offline` itself (a clean disconnect does not fire the Will).
"""

from __future__ import annotations

import logging
import secrets
import socket
import ssl
import sys
import threading
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from octoprint_printbridge.settings import AgentSettings

log = logging.getLogger("octoprint.plugins.printbridge.mqtt")

RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 10
KEEPALIVE_S = 30


class Topics:
    def __init__(self, base: str, printer_id: int) -> None:
        prefix = f"{base}/printers/{printer_id}"
        self.status = f"{prefix}/status"
        self.availability = f"{prefix}/availability"
        self.snapshot = f"{prefix}/snapshot"
        self.ack = f"{prefix}/ack"
        self.command = f"{prefix}/command"
        self.remote_status = f"{prefix}/remote_status"


def set_nodelay(sock: Any) -> None:
    """printbridge docs/mqtt.md: without TCP_NODELAY every MQTT round trip costs 40-90 ms."""
    if isinstance(sock, socket.socket):  # ssl.SSLSocket is one too
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _explain_refusal(reason: Any, settings: AgentSettings) -> str:
    text = str(reason)
    if "authori" in text.lower() or "password" in text.lower() or "identifier" in text.lower():
        return (
            f"the broker at {settings.broker} refused {settings.username}: {text}. Check printer_id and password "
            "(printbridge's agent_config for this printer gives them; a rotated token needs the new password)"
        )
    return f"the broker at {settings.broker} refused {settings.username}: {text}"


# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH: the certificate is valid but for
# another host than broker_url's.
_NAME_MISMATCH_CODES = (62, 64)


def _explain_connect_fail(exc: BaseException | None, settings: AgentSettings) -> tuple[str, bool]:
    """Why connecting failed, naming the setting to check; and whether retrying can help on its own (an
    unreachable broker may come back, a certificate that fails verification will not change by itself)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = f"certificate verify failed: {str(exc.verify_message or exc).rstrip('.')}"
        if exc.verify_code in _NAME_MISMATCH_CODES:
            hint = "Check broker_url: its host must be one the broker's certificate names"
        else:
            hint = (
                "Check ca_file: it must be the PEM file of the CA that signed the broker's certificate "
                "(empty: the system's CAs)"
            )
        return f"the broker at {settings.broker}: its TLS certificate was refused ({detail}). {hint}", False
    if isinstance(exc, ssl.SSLError):
        return f"TLS with the broker at {settings.broker} failed: {exc}. Is it a TLS (mqtts://) listener?", False
    if exc is not None:
        return f"cannot reach the broker at {settings.broker}: {exc}", True
    return f"cannot reach the broker at {settings.broker}", True


class MqttLink:
    def __init__(
        self,
        settings: AgentSettings,
        on_connected: Callable[[], None],
        on_message: Callable[[str, bytes], None],
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.base_topic, settings.printer_id)
        self._on_connected = on_connected
        self._on_message = on_message
        self._stopping = threading.Event()
        self.connected = threading.Event()
        self.last_error: str | None = None
        self._client = self._build_client()

    def _build_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"printer-{s.printer_id}-octoprint-{secrets.token_hex(3)}",
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        client.username_pw_set(s.username, s.password)
        client.will_set(self.topics.availability, b"offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)  # type: ignore[arg-type]
        if s.tls:
            client.tls_set(ca_certs=s.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        client.on_socket_open = lambda _client, _userdata, sock: set_nodelay(sock)
        client.on_connect = self._handle_connect
        client.on_connect_fail = self._handle_connect_fail
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        return client

    # -- lifecycle (any thread but paho's) ------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background: paho's thread retries with backoff until the broker accepts."""
        log.info("connecting to %s as %s", self.settings.broker, self.settings.username)
        self._client.connect_async(self.settings.host, self.settings.port, keepalive=KEEPALIVE_S)
        self._client.loop_start()

    def stop(self, timeout: float = 2.0) -> None:
        """Publish `offline` (when connected), disconnect, and stop paho's thread."""
        self._stopping.set()
        if self.connected.is_set():
            info = self._client.publish(self.topics.availability, b"offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=timeout)
            except (RuntimeError, ValueError) as exc:
                log.info("offline not confirmed by the broker: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        """Queue a message for paho's thread; False (nothing queued) while disconnected: what is current is
        published again on reconnection, and a stale status must not be replayed."""
        if not self.connected.is_set():
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    # -- paho callbacks (paho's network thread) ------------------------------------------------------
    def _handle_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self.last_error = _explain_refusal(reason, self.settings)
            log.error("%s; retrying with backoff (up to %d s)", self.last_error, RECONNECT_MAX_S)
            return
        self.last_error = None
        client.subscribe([(self.topics.command, 1), (self.topics.remote_status, 1)])
        client.publish(self.topics.availability, b"online", qos=1, retain=True)
        self.connected.set()
        log.info("connected to %s as %s", self.settings.broker, self.settings.username)
        self._on_connected()

    def _handle_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        # paho calls this inside its `except OSError:` around the connection attempt (TLS handshake
        # included) and passes no exception: the one being handled is the reason.
        self.last_error, transient = _explain_connect_fail(sys.exc_info()[1], self.settings)
        log.log(
            logging.WARNING if transient else logging.ERROR,
            "%s; retrying with backoff (up to %d s)",
            self.last_error,
            RECONNECT_MAX_S,
        )

    def _handle_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        if was_connected and not self._stopping.is_set():
            log.warning("disconnected from %s (%s); reconnecting", self.settings.broker, reason)

    def _handle_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._on_message(message.topic, bytes(message.payload))
        except Exception:  # one bad message never stops the link
            log.exception("could not handle a message on %s", message.topic)
