"""
The server's TLS certificate, for WSS and HTTPS.

With C{ssl_cert_file}/C{ssl_key_file} set, that certificate is used. Without,
a self-signed one is made on first start under C{state_dir}/tls and reused
afterwards; its SHA-256 fingerprint is logged so that a user can check what
a browser shows.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet import ssl

from wcs.config import ConfigError, Key, Settings, declare
from wcs.logs import Logger

log = Logger()

declare(
    Key("ssl_cert_file", "str", "", "PEM certificate (chain) for WSS/HTTPS; empty: self-signed"),
    Key("ssl_key_file", "str", "", "PEM private key of ssl_cert_file"),
)

VALIDITY = datetime.timedelta(days=365)


def _selfSigned(certPath: Path, keyPath: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    host = socket.gethostname()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"wcs on {host}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    alternatives = [x509.DNSName("localhost"), x509.DNSName(host),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    _privateDirectory(keyPath.parent)
    _writePrivate(keyPath, key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    certPath.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    log.info("made a self-signed certificate in {path}", path=str(certPath))


def _privateDirectory(directory: Path) -> None:
    """C{directory} made (or kept) readable by this user only."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    directory.mkdir(mode=0o700, exist_ok=True)
    directory.chmod(0o700)


def _writePrivate(path: Path, data: bytes) -> None:
    """
    Write a secret: the file is 0600 from its creation (whatever the umask),
    under a new name, then moved over the old one.
    """
    temporary = path.with_name(path.name + ".new")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.replace(temporary, path)


def certificatePaths(settings: Settings) -> tuple[Path, Path]:
    """The certificate and key to use, made first if none is configured."""
    if settings.ssl_cert_file or settings.ssl_key_file:
        if not (settings.ssl_cert_file and settings.ssl_key_file):
            raise ConfigError("ssl_cert_file and ssl_key_file go together: set both")
        paths = Path(settings.ssl_cert_file), Path(settings.ssl_key_file)
        for path in paths:
            if not path.is_file():
                raise ConfigError(f"TLS file {path} does not exist")
        return paths
    directory = Path(settings.state_dir) / "tls"
    certPath, keyPath = directory / "server.crt", directory / "server.key"
    if not (certPath.is_file() and keyPath.is_file()) or _expiresSoon(certPath):
        _selfSigned(certPath, keyPath)
    return certPath, keyPath


def _expiresSoon(certPath: Path) -> bool:
    certificate = x509.load_pem_x509_certificate(certPath.read_bytes())
    remaining = certificate.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    return remaining < datetime.timedelta(days=7)


def fingerprint(certPath: Path) -> str:
    certificate = x509.load_pem_x509_certificate(certPath.read_bytes())
    digest = certificate.fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


class ServerContextFactory(ssl.ContextFactory):
    """
    A TLS 1.2+ server context loaded straight from PEM files (certificate
    chain and key), the way OpenSSL reads them.
    """

    def __init__(self, certPath: Path, keyPath: Path):
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.use_certificate_chain_file(str(certPath))
        context.use_privatekey_file(str(keyPath))
        context.check_privatekey()
        self._context = context

    def getContext(self) -> SSL.Context:
        return self._context


_contexts: dict[tuple[str, str], ServerContextFactory] = {}


def serverContext(settings: Settings) -> ServerContextFactory:
    """
    TLS for a listener; one per certificate, shared by WSS and HTTPS.

    @raise ConfigError: the configured files are missing or do not match.
    """
    certPath, keyPath = certificatePaths(settings)
    cacheKey = (str(certPath.resolve()), str(keyPath.resolve()))
    if cacheKey in _contexts:
        return _contexts[cacheKey]
    try:
        factory = ServerContextFactory(certPath, keyPath)
    except SSL.Error as e:
        problem = "the certificate and the key do not match" if "check_private_key" in str(e) \
            or "values mismatch" in str(e) else str(e)
        raise ConfigError(f"cannot use TLS certificate {certPath} with key {keyPath}: "
                          f"{problem}") from None
    log.info("TLS certificate {path}, SHA-256 fingerprint {fingerprint}",
             path=str(certPath), fingerprint=fingerprint(certPath))
    _contexts[cacheKey] = factory
    return factory
