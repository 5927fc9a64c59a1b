"""A test certificate authority: a CA and leaf certificates for test host names (with `cryptography`).

    ca = TestCA()
    ca_path = ca.write_cert(tmp_path / "ca.pem")               # give to CharmDriver(trusted_ca=...)
    cert, key = ca.write_leaf(tmp_path / "proxy", "matrix.a.test", "a.test")   # for nginx, an SMTP server...

Keys are EC P-256 (fast to generate). A leaf has the names as DNS subjectAltNames (an IP
address as an IP SAN), serverAuth, and is valid from an hour ago for a day. Nothing here is
trusted anywhere unless a test puts the CA into a trust store: see harness.SystemView.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=1)
BACKDATE = datetime.timedelta(hours=1)


def _key() -> ec.EllipticCurvePrivateKey:
    """A new P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM."""
    pkcs8 = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption())


def _san(name: str) -> x509.GeneralName:
    """A subjectAltName entry: an IP address as such, anything else as a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class TestCA:
    """A self-signed CA that issues server certificates."""

    __test__ = False  # not a pytest test class

    def __init__(self, common_name: str = "Synapse charm test CA"):
        self._key = _key()
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate as PEM (what a trust store needs)."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, *names: str) -> tuple[bytes, bytes]:
        """A server certificate for `names` (the first is the subject CN): (certificate PEM, key PEM)."""
        if not names:
            raise ValueError("a certificate needs at least one name")
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.SubjectAlternativeName([_san(name) for name in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)

    def write_cert(self, path: Path) -> Path:
        """Write the CA certificate (PEM) to `path`; return it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.cert_pem)
        return path

    def write_leaf(self, directory: Path, *names: str) -> tuple[Path, Path]:
        """Issue a certificate for `names` into `directory`: (cert path, key path; the key 0600)."""
        cert, key = self.issue(*names)
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / f"{names[0]}.crt", directory / f"{names[0]}.key"
        cert_path.write_bytes(cert)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key)
        return cert_path, key_path
