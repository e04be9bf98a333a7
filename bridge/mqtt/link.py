"""The bridge's one MQTT connection. The only module that imports aiomqtt (and the paho under it).

`MqttLink.run()` connects, subscribes, publishes the retained `online`, calls the owner's `on_connect`, and
hands every message to `on_message` inline, in paho's read callback: no task and no unbounded queue per
message, so a burst is absorbed at the rate the handler runs and backpressure reaches the broker. When the
connection drops it calls `on_disconnect` and reconnects with exponential backoff capped at 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.mqtt.tls import broker_context
from bridge.mqtt.topics import check_publishable
from bridge.mqtt.url import MqttUrl

log = logging.getLogger("printbridge.mqtt")

BACKOFF_START_S = 0.1
BACKOFF_CAP_S = 5.0
PORT_PROBE_S = 0.2
SESSION_EXPIRY_S = 24 * 3600


class NotConnected(RuntimeError):
    """The broker connection is down; nothing was published."""


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    retain: bool


MessageHandler = Callable[[Incoming], None]


def inline_queue(handler: MessageHandler) -> type[asyncio.Queue[aiomqtt.Message]]:
    """An aiomqtt queue type that hands each message to `handler` instead of queueing it."""

    class _Inline(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:
            payload = item.payload
            if isinstance(payload, str):
                payload = payload.encode()
            elif payload is None:
                payload = b""
            elif not isinstance(payload, bytes | bytearray):
                payload = str(payload).encode()
            try:
                handler(Incoming(item.topic.value, bytes(payload), bool(item.retain)))
            except Exception:  # a handler bug must not kill the connection
                log.exception("message handler failed on %s", item.topic.value)

    return _Inline


class MqttLink:
    def __init__(
        self,
        url: MqttUrl,
        *,
        protocol: str,
        will_topic: str,
        subscriptions: list[str],
        on_message: MessageHandler,
        on_connect: Callable[[], Awaitable[None]],
        on_disconnect: Callable[[str], None],
        client_id: str | None = None,
        ca_file: Path | None = None,
    ) -> None:
        self.url = url
        self.ca_file = ca_file
        self.protocol = protocol
        self.will_topic = will_topic
        self.subscriptions = subscriptions
        self.on_message = on_message
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.client_id = client_id or f"printbridge-{uuid.uuid4().hex[:8]}"
        self._client: aiomqtt.Client | None = None
        self._stopping = False
        self.connected = asyncio.Event()
        self.last_error: str | None = None
        self.connect_count = 0

    @property
    def is_v5(self) -> bool:
        return self.protocol == "5"

    def _make_client(self) -> aiomqtt.Client:
        # mqtts: the broker's certificate and host name verified, against PRINTBRIDGE_MQTT_CA when given.
        tls = broker_context(self.ca_file) if self.url.tls else None
        # A persistent session (never clean): the broker keeps the subscriptions and queues what agents
        # publish while the bridge is away (a broker restart, a bridge restart), so nothing is lost.
        session: Properties | None = None
        if self.is_v5:
            session = Properties(PacketTypes.CONNECT)
            session.SessionExpiryInterval = SESSION_EXPIRY_S
        client = aiomqtt.Client(
            self.url.host,
            self.url.port,
            username=self.url.username,
            password=self.url.password,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if self.is_v5 else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(self.will_topic, b"offline", qos=1, retain=True),
            tls_context=tls,
            keepalive=30,
            timeout=10,
            queue_type=inline_queue(self.on_message),
            # paho scans its in-flight window on every PUBACK: 1000 made a start-up with 10,000 printers
            # (30,000 retained publishes) spend seconds in that scan (bench/memory.py); 100 is plenty at
            # sub-millisecond round trips.
            max_inflight_messages=100,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            clean_session=None if self.is_v5 else False,
            clean_start=False if self.is_v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=session,
        )
        # aiomqtt logs a warning for every publish beyond 10 awaiting their PUBACK; with 100 actions in
        # flight that logging cost more than the publishes (bench/actions.py).
        client.pending_calls_threshold = 100_000
        return client

    async def run(self) -> None:
        """Connect, serve, reconnect; returns only when `stop()` is called."""
        delay = BACKOFF_START_S
        while not self._stopping:
            client = self._make_client()
            try:
                async with client:
                    self._client = client
                    subs = [(t, 1) for t in self.subscriptions]
                    await client.subscribe(subs)
                    await client.publish(self.will_topic, b"online", qos=1, retain=True)
                    self.connected.set()
                    self.connect_count += 1
                    self.last_error = None
                    delay = BACKOFF_START_S
                    log.info("connected to %s", self.url.redacted())
                    await self.on_connect()
                    # Messages are handled inline by the queue; this only waits for the disconnect.
                    async for _ in client.messages:
                        pass  # pragma: no cover - the inline queue never yields
            except aiomqtt.MqttError as exc:
                self.last_error = str(exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let the connection task die: log it and reconnect
                log.exception("MQTT connection failed unexpectedly")
                self.last_error = f"{type(exc).__name__}: {exc}"
            finally:
                was_connected = self.connected.is_set()
                self.connected.clear()
                self._client = None
                if was_connected:
                    self.on_disconnect(self.last_error or "disconnected")
            if self._stopping:
                break
            refused = any(m in (self.last_error or "") for m in ("Not authorized", "Bad user name", "not authori"))
            if refused:
                log.error("broker refused the bridge's credentials: %s; retrying in %.1f s", self.last_error, delay)
            else:
                log.warning("broker connection lost (%s); retrying in %.1f s", self.last_error, delay)
            await self._backoff(delay, watch_port=not refused)
            delay = min(delay * 2, BACKOFF_CAP_S)

    async def _backoff(self, delay: float, *, watch_port: bool) -> None:
        """Wait `delay` before the next attempt. While the broker is unreachable, a cheap TCP probe every
        0.2 s ends the wait as soon as its port opens again, so a broker restart costs well under the
        backoff; a broker that is up but refuses or drops us waits the full backoff."""
        deadline = asyncio.get_running_loop().time() + delay
        seen_closed = False
        while not self._stopping:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            await asyncio.sleep(min(PORT_PROBE_S, remaining))
            if watch_port:
                if await self._port_open():
                    if seen_closed:
                        return
                else:
                    seen_closed = True

    async def _port_open(self) -> bool:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(self.url.host, self.url.port), 0.5)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def stop(self) -> None:
        """Publish `offline` and disconnect cleanly."""
        self._stopping = True
        client = self._client
        if client is not None and self.connected.is_set():
            with contextlib.suppress(aiomqtt.MqttError, asyncio.TimeoutError):
                await client.publish(self.will_topic, b"offline", qos=1, retain=True, timeout=2)

    def _properties(self, response_topic: str | None, correlation: bytes | None) -> Properties | None:
        if not self.is_v5 or (response_topic is None and correlation is None):
            return None
        props = Properties(PacketTypes.PUBLISH)
        if response_topic is not None:
            props.ResponseTopic = response_topic
        if correlation is not None:
            props.CorrelationData = correlation
        return props

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        timeout: float = 10.0,
    ) -> None:
        """Publish and, for QoS 1, wait for the broker's PUBACK."""
        check_publishable(topic)
        client = self._client
        if client is None or not self.connected.is_set():
            raise NotConnected("broker connection is down")
        try:
            await client.publish(
                topic,
                payload,
                qos=qos,
                retain=retain,
                properties=self._properties(response_topic, correlation),
                timeout=timeout,
            )
        except aiomqtt.MqttError as exc:
            raise NotConnected(str(exc)) from exc

    @property
    def send_backlog(self) -> int:
        """Publishes handed to paho that the broker has not acknowledged yet (queued or in flight)."""
        client = self._client
        if client is None:
            return 0
        return len(client._client._out_messages)

    def publish_nowait(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Queue a publish without waiting for the broker (for derived state published from the receive
        path, where waiting would stall ingest). False when the connection is down."""
        check_publishable(topic)
        client = self._client
        if client is None or not self.connected.is_set():
            return False
        paho_client: paho.Client = client._client  # aiomqtt offers no fire-and-forget publish
        info = paho_client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == paho.MQTT_ERR_SUCCESS
