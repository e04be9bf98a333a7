"""Certificates made by the tests (a private CA and the servers it signs), and Mosquitto TLS listeners.

`make_ca` and `CertificateAuthority.issue` use the `cryptography` package (a test extra). A Bambu printer's
certificate names its serial in the subject CN and has no subject alternative name, as the vendor's do.
`tls_broker` starts a Mosquitto with a TLS listener whose certificate a private CA signs for 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import ipaddress
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.broker import Broker, start_broker


@dataclass(frozen=True)
class Issued:
    cert_pem: str
    key_pem: str

    def write(self, folder: Path, name: str) -> tuple[Path, Path]:
        """`name.crt` and `name.key` in `folder`; their paths."""
        folder.mkdir(parents=True, exist_ok=True)
        cert, key = folder / f"{name}.crt", folder / f"{name}.key"
        cert.write_text(self.cert_pem)
        key.write_text(self.key_pem)
        key.chmod(0o600)
        return cert, key


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))


@dataclass(frozen=True)
class CertificateAuthority:
    name: str
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}-ca.crt"
        path.write_text(self.cert_pem)
        return path

    def issue(self, common_name: str, *, dns: list[str] | None = None, ips: list[str] | None = None) -> Issued:
        """A server certificate for `common_name`, with subject alternative names only when given."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns or []]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips or []]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = _validity(builder).sign(self.key, hashes.SHA256())
        return Issued(cert.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key))


def make_ca(name: str) -> CertificateAuthority:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    cert = _validity(builder).sign(key, hashes.SHA256())
    return CertificateAuthority(name, cert, key)


def password_file_line(username: str, password: str) -> str:
    """A Mosquitto 2 `password_file` line (`$7$`: PBKDF2-SHA512), as `mosquitto_passwd` writes it."""
    salt = secrets.token_bytes(12)
    iterations = 101
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"{username}:$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}\n"


class TlsBroker(NamedTuple):
    broker: Broker  # `tls_port` is the TLS listener; its certificate names the IP address 127.0.0.1 only
    private_ca: Path  # the CA file that signed the listener's certificate
    other_ca: Path  # an unrelated CA's file


@contextlib.contextmanager
def tls_broker(folder: Path) -> Iterator[TlsBroker]:
    """A Mosquitto (dynamic security) with a TLS listener besides its plain one, stopped afterwards."""
    private = make_ca("private")
    cert, key = private.issue("printbridge broker", ips=["127.0.0.1"]).write(folder, "server")
    broker = start_broker(folder / "mosquitto", tls=(cert, key))
    try:
        yield TlsBroker(broker, private.write(folder), make_ca("other").write(folder))
    finally:
        broker.stop()
