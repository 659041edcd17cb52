"""
wcs.tls without a reactor: the self-signed certificate, configured files and
their errors, and a TLS handshake through memory buffers.
"""

import datetime
import ipaddress
import socket
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import SSL
from twisted.logger import globalLogPublisher

from tests.support.server import freePort
from tests.test_plugin import WCS_OFF, runTwistd
from wcs import tls
from wcs.config import ConfigError, Settings


def selfSigned(tmp_path, name="state"):
    return tls.certificatePaths(Settings({"state_dir": str(tmp_path / name)}))


def handshake(options, cafile, hostname):
    """
    Handshake a Python TLS client with C{options}' server context over
    memory BIOs; return the DER certificate the server presented.
    """
    client = ssl.create_default_context(cafile=str(cafile))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    clientEnd = client.wrap_bio(incoming, outgoing, server_hostname=hostname)
    serverEnd = SSL.Connection(options.getContext(), None)
    serverEnd.set_accept_state()
    clientDone = serverDone = False
    for _ in range(20):  # a TLS 1.3 handshake needs about three flights
        if not clientDone:
            try:
                clientEnd.do_handshake()
                clientDone = True
            except ssl.SSLWantReadError:
                pass
        if outgoing.pending:
            serverEnd.bio_write(outgoing.read())
        if not serverDone:
            try:
                serverEnd.do_handshake()
                serverDone = True
            except SSL.WantReadError:
                pass
        try:
            incoming.write(serverEnd.bio_read(65536))
        except SSL.WantReadError:
            pass
        if clientDone and serverDone:
            return clientEnd.getpeercert(binary_form=True)
    raise AssertionError("TLS handshake did not finish")


def test_self_signed_certificate_is_made_once_and_reused(tmp_path):
    certPath, keyPath = selfSigned(tmp_path)
    assert certPath.parent == tmp_path / "state" / "tls"
    first = certPath.read_bytes(), keyPath.read_bytes()
    assert selfSigned(tmp_path) == (certPath, keyPath)
    assert (certPath.read_bytes(), keyPath.read_bytes()) == first
    # The private key is readable by its owner only.
    assert keyPath.stat().st_mode & 0o077 == 0


def test_self_signed_certificate_names_key_and_validity(tmp_path):
    certPath, keyPath = selfSigned(tmp_path)
    certificate = x509.load_pem_x509_certificate(certPath.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", socket.gethostname()} <= set(names.get_values_for_type(x509.DNSName))
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert datetime.timedelta(days=360) < lifetime < datetime.timedelta(days=367)
    key = load_pem_private_key(keyPath.read_bytes(), password=None)
    assert (isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1") or (
        isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048)


def test_certificate_about_to_expire_is_replaced(tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(tls, "VALIDITY", datetime.timedelta(days=2))
        certPath, _ = selfSigned(tmp_path)
    old = certPath.read_bytes()
    selfSigned(tmp_path)
    assert certPath.read_bytes() != old


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
def test_handshake_presents_the_logged_fingerprint(tmp_path, hostname):
    settings = Settings({"state_dir": str(tmp_path / "state")})
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        options = tls.serverContext(settings)
    finally:
        globalLogPublisher.removeObserver(events.append)
    logged = [e["fingerprint"] for e in events if "fingerprint" in e]
    certPath, _ = tls.certificatePaths(settings)
    der = handshake(options, certPath, hostname)
    digest = x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256())
    assert logged == [":".join(f"{b:02X}" for b in digest)]


def test_configured_certificate_is_used(tmp_path):
    certPath, keyPath = selfSigned(tmp_path, "elsewhere")
    settings = Settings({"state_dir": str(tmp_path / "state"),
                         "ssl_cert_file": str(certPath), "ssl_key_file": str(keyPath)})
    der = handshake(tls.serverContext(settings), certPath, "localhost")
    assert der == ssl.PEM_cert_to_DER_cert(certPath.read_text())
    assert not (tmp_path / "state" / "tls").exists()


def test_configured_but_missing_certificate_is_named(tmp_path):
    _, keyPath = selfSigned(tmp_path)
    missing = tmp_path / "nowhere.crt"
    settings = Settings({"ssl_cert_file": str(missing), "ssl_key_file": str(keyPath)})
    with pytest.raises(ConfigError, match=f"TLS file {missing} does not exist"):
        tls.serverContext(settings)


def test_certificate_without_key_is_refused(tmp_path):
    certPath, _ = selfSigned(tmp_path)
    with pytest.raises(ConfigError, match="set both"):
        tls.serverContext(Settings({"ssl_cert_file": str(certPath)}))


def test_key_of_another_certificate_is_refused(tmp_path):
    certPath, _ = selfSigned(tmp_path, "a")
    _, otherKey = selfSigned(tmp_path, "b")
    settings = Settings({"ssl_cert_file": str(certPath), "ssl_key_file": str(otherKey)})
    with pytest.raises(ConfigError, match="do not match") as error:
        tls.serverContext(settings)
    assert str(certPath) in str(error.value) and str(otherKey) in str(error.value)


def test_file_that_is_not_pem_is_refused(tmp_path):
    _, keyPath = selfSigned(tmp_path)
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate\n")
    settings = Settings({"ssl_cert_file": str(garbage), "ssl_key_file": str(keyPath)})
    with pytest.raises(ConfigError, match=f"cannot use TLS certificate {garbage}"):
        tls.serverContext(settings)


def test_https_with_missing_certificate_stops_start_up(tmp_path):
    args = ["-n", "--pidfile=", "wcs", "--listen", "127.0.0.1"] + WCS_OFF + [
        "--https-port", str(freePort()), "--state-dir", str(tmp_path / "state"),
        "--set", f"ssl_cert_file={tmp_path}/missing.crt",
        "--set", f"ssl_key_file={tmp_path}/missing.key"]
    result = runTwistd(args, tmp_path)
    assert result.returncode != 0
    assert f"TLS file {tmp_path}/missing.crt does not exist" in result.stdout + result.stderr


def test_private_key_is_0600_in_a_0700_directory_whatever_the_umask(tmp_path):
    import os
    import stat

    from wcs import tls

    tlsDir = tmp_path / "state" / "tls"
    tlsDir.mkdir(parents=True, mode=0o755)
    (tlsDir / "server.key").write_bytes(b"old")
    (tlsDir / "server.key").chmod(0o644)  # an older, too open key is replaced
    old = os.umask(0)
    try:
        tls._selfSigned(tlsDir / "server.crt", tlsDir / "server.key")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tlsDir / "server.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(tlsDir.stat().st_mode) == 0o700
    assert (tlsDir / "server.key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY")
    assert sorted(p.name for p in tlsDir.iterdir()) == ["server.crt", "server.key"]
