"""Which certificate a Bambu printer may present: one that chains to the CA the user gave, or exactly the
one pinned at first contact; in both cases issued to the printer's serial (its subject CN), since the
address the bridge dials says nothing about which printer answers (OpenBambuAPI tls.md).

Each check is a TLS handshake of the bridge's own, before the MQTT session and so before the access code is
sent: it tells a changed certificate from any other failure and gives the owner a message to act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field

from bridge.mqtt.tls import der_to_pem, fetch_certificate, fingerprint, pem_to_der, printer_context


class CertificateRefused(Exception):
    """The printer's certificate is not the one to trust; the message says what to do."""


@dataclass(frozen=True, slots=True)
class BambuTarget:
    """What the bridge needs to reach one printer. `pinned_pem` is the certificate pinned at first contact
    (None until then, and unused when `ca_pem` is given)."""

    printer_id: int
    host: str
    port: int
    serial: str
    access_code: str = field(repr=False)
    ca_pem: str | None = field(default=None, repr=False)
    pinned_pem: str | None = field(default=None, repr=False)

    def same_session(self, other: BambuTarget) -> bool:
        """Whether a running session for `other` may stay as it is for `self`: recording the pin is no reason
        to reconnect, clearing it is (the next certificate seen is pinned)."""
        return (self.host, self.port, self.serial, self.access_code, self.ca_pem, self.pinned_pem is None) == (
            other.host,
            other.port,
            other.serial,
            other.access_code,
            other.ca_pem,
            other.pinned_pem is None,
        )


async def trusted_context(target: BambuTarget, timeout: float) -> tuple[ssl.SSLContext, str | None]:
    """The TLS context that accepts only the right certificate for `target`, checked by a handshake, and the
    PEM of the certificate pinned now (None unless this was the first contact)."""
    if target.ca_pem is not None:
        context = printer_context(target.serial, target.ca_pem, pinned=False)
        await _check(target, context, timeout)
        return context, None
    if target.pinned_pem is None:
        pem = der_to_pem(await fetch_certificate(target.host, target.port, target.serial, timeout))
        context = printer_context(target.serial, pem, pinned=True)
        await _check(target, context, timeout)  # it must name the serial before it is pinned
        return context, pem
    context = printer_context(target.serial, target.pinned_pem, pinned=True)
    await _check(target, context, timeout)
    return context, None


async def _check(target: BambuTarget, context: ssl.SSLContext, timeout: float) -> None:
    address = f"{target.host}:{target.port}"
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(target.host, target.port, ssl=context, server_hostname=target.serial), timeout
        )
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message or str(exc)
        if target.ca_pem is None and target.pinned_pem is not None:
            presented = fingerprint(await fetch_certificate(target.host, target.port, target.serial, timeout))
            expected = fingerprint(pem_to_der(target.pinned_pem))
            if presented != expected:
                raise CertificateRefused(
                    f"the printer at {address} presents another certificate (sha256 {presented}) than the one "
                    f"pinned at first contact (sha256 {expected}); refusing it. If the printer really changed, "
                    f"PATCH bambu.ca (null pins the next certificate seen)"
                ) from None
        if "mismatch" in reason.lower():
            reason = f"the certificate is not for serial {target.serial}"
        raise CertificateRefused(f"the printer's certificate at {address} is refused: {reason}") from None
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 1.0)
