"""A session with another party's MQTT broker (a printer's own broker). Besides `link.py`, the only module
that imports aiomqtt.

It is not `MqttLink` because that is the bridge's own broker connection, with what only it needs: a Will
and a retained `online`, a persistent session, dynamic-security traffic, a port probe. A printer's broker
gets a plain session: a clean start, no Will (the printer's account may publish nothing of the bridge's),
the TLS context its owner built, and one session per call. Reconnecting is left to the owner, which knows
why a printer is unreachable and how long to wait. Messages are handed over inline, as in `link.py`.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode

from bridge.mqtt.link import MessageHandler, inline_queue

# CONNACK codes that mean "these credentials are not accepted" (3.1.1: 4 bad user name or password,
# 5 not authorised; as paho 2 reports them: 134, 135).
_REFUSED = {4, 5, 134, 135}


class PeerError(Exception):
    """The session could not be set up or was lost (network, TLS, protocol); the message says why."""


class PeerRefused(PeerError):
    """The broker refused the credentials."""


@dataclass(frozen=True, slots=True)
class PeerParams:
    host: str
    port: int
    username: str
    password: str
    tls: ssl.SSLContext
    client_id: str
    keepalive_s: int = 30
    timeout_s: float = 10.0

    def __repr__(self) -> str:  # never the password
        return f"PeerParams({self.username}@{self.host}:{self.port})"


class PeerSession:
    def __init__(self, client: aiomqtt.Client, timeout_s: float) -> None:
        self._client = client
        self._timeout_s = timeout_s

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1) -> None:
        """Publish; at QoS 1 wait for the broker's PUBACK."""
        try:
            await self._client.publish(topic, payload, qos=qos, timeout=self._timeout_s)
        except aiomqtt.MqttError as exc:
            raise PeerError(str(exc)) from exc


def _refused(exc: aiomqtt.MqttError) -> bool:
    if not isinstance(exc, aiomqtt.MqttCodeError):
        return False
    rc = exc.rc
    value = rc.value if isinstance(rc, ReasonCode) else rc
    return value in _REFUSED


async def run_session(
    params: PeerParams,
    subscriptions: list[str],
    on_message: MessageHandler,
    on_ready: Callable[[PeerSession], Awaitable[None]],
) -> None:
    """Connect, subscribe, await `on_ready(session)`, then hand every message to `on_message` until the
    connection is lost (PeerError) or the calling task is cancelled (a clean disconnect)."""
    client = aiomqtt.Client(
        params.host,
        params.port,
        username=params.username,
        password=params.password,
        identifier=params.client_id,
        protocol=aiomqtt.ProtocolVersion.V311,
        tls_context=params.tls,
        keepalive=params.keepalive_s,
        timeout=params.timeout_s,
        queue_type=inline_queue(on_message),
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        clean_session=True,
    )
    try:
        async with client:
            await client.subscribe([(topic, 1) for topic in subscriptions])
            await on_ready(PeerSession(client, params.timeout_s))
            async for _ in client.messages:
                pass  # pragma: no cover - the inline queue never yields
    except aiomqtt.MqttError as exc:
        if _refused(exc):
            raise PeerRefused(str(exc)) from None
        raise PeerError(str(exc)) from None
