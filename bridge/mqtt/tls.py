"""TLS contexts for the bridge's MQTT connections: the bridge's own broker with a private CA
(`PRINTBRIDGE_MQTT_CA`), and printers' own brokers whose certificate names a serial number, not a host.

Verification is never switched off. A printer's certificate is checked either against a CA the user gives
or against the one certificate pinned at first contact; in both cases the name checked is the printer's
serial (the certificate's subject CN), because the address the bridge dials says nothing about which
printer answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from pathlib import Path
from typing import Any


class CertificateProblem(ValueError):
    """A CA file or PEM text that cannot be used as trust anchors."""


def load_ca_file(path: Path) -> Path:
    """Check that `path` is a readable PEM file with at least one certificate; return it."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise CertificateProblem(f"cannot read it: {exc.strerror or exc}") from None
    check_ca_pem(text)
    return path


def check_ca_pem(text: str) -> str:
    """Check that `text` is PEM with at least one certificate OpenSSL accepts as a trust anchor."""
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise CertificateProblem("expected PEM text with a certificate (-----BEGIN CERTIFICATE-----)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=text)
    except (ssl.SSLError, ValueError) as exc:
        raise CertificateProblem(f"not a usable PEM certificate: {exc}") from None
    return text


def broker_context(ca_file: Path | None) -> ssl.SSLContext:
    """For `mqtts://` brokers: the system's authorities, or only `ca_file`; the host name is verified."""
    if ca_file is None:
        return ssl.create_default_context()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    context.load_verify_locations(cafile=str(ca_file))
    return context


class _ServerNameContext(ssl.SSLContext):
    """An SSLContext that verifies (and sends as SNI) a fixed server name, whatever host the MQTT library
    dialled. paho passes the host it connected to as `server_hostname`; a printer's certificate names its
    serial instead (OpenBambuAPI tls.md)."""

    server_name: str

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        kwargs["server_hostname"] = self.server_name
        return super().wrap_socket(sock, *args, **kwargs)


def printer_context(serial: str, trusted_pem: str, *, pinned: bool) -> ssl.SSLContext:
    """A context that accepts only a certificate for `serial` that chains to `trusted_pem` (the user's CA),
    or, with `pinned`, that is exactly the pinned certificate (a trust anchor of its own)."""
    context = _ServerNameContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    context.server_name = serial
    context.load_verify_locations(cadata=trusted_pem)
    # Vendor CAs lack the key usage extension that strict mode demands (ha-bambulab, OpenBambuAPI tls.md).
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    if pinned:
        # The pinned certificate is the anchor itself, even when a vendor CA the bridge does not hold issued it.
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate, as colon-separated hex (how browsers and openssl show it)."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def der_to_pem(der: bytes) -> str:
    return ssl.DER_cert_to_PEM_cert(der)


def pem_to_der(pem: str) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem)


async def fetch_certificate(host: str, port: int, server_name: str, timeout: float) -> bytes:
    """The DER certificate a TLS server presents, without trusting it and without sending anything else:
    used to pin a printer's certificate at first contact and to tell a changed one from other errors."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only to read the certificate; nothing is sent over this connection
    _, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=context, server_hostname=server_name), timeout
    )
    try:
        sslobj = writer.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), timeout)
    if not der:
        raise ssl.SSLError("the server presented no certificate")
    return bytes(der)
