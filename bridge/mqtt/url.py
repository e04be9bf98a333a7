"""The broker's address as a setting gives it: `mqtt[s]://[user:password@]host[:port]`."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True, slots=True)
class MqttUrl:
    tls: bool
    host: str
    port: int
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, text: str) -> MqttUrl:
        parts = urlsplit(text)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError("expected mqtt://host[:port] or mqtts://host[:port]")
        if not parts.hostname:
            raise ValueError("missing host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("expected no path or query")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise ValueError("invalid port") from None
        return cls(
            tls=tls,
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def redacted(self) -> str:
        user = f"{self.username}:***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self._netloc()}"

    def without_credentials(self) -> str:
        """`mqtt://host:port`: the address alone, as it is given to printer agents."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self._netloc()}"

    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"
