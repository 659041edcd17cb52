"""The web server without a browser: pages, SDK files, ranges, traversal, HTTPS."""

import hashlib
import http.client
import re
import socket
import ssl

import pytest

DEMOS = "/client2/examples/demo/streaming"


def get(server, path, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=10)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def rawGet(server, path: str) -> bytes:
    """A request line sent as written: no client-side path clean-up."""
    with socket.create_connection(("127.0.0.1", server.ports["http"]), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_index_lists_the_demos(webServer):
    status, headers, body = get(webServer, "/")
    assert status == 200
    for path in ("conference", "video-chat", "video-chat-and-screen-sharing"):
        assert f'href="{DEMOS}/{path}/"'.encode() in body


@pytest.mark.parametrize("demo, title", [
    ("conference", b"<title>Conference"),
    ("video-chat", b"<title>Two Way Video Chat"),
    ("video-chat-and-screen-sharing", b"<title>Video Chat and Screen Sharing"),
])
def test_our_demo_pages(webServer, demo, title):
    status, headers, body = get(webServer, f"{DEMOS}/{demo}/")
    assert status == 200 and title in body
    assert b'src="../../../../flashphoner-room-api.js"' in body
    assert headers["content-type"].startswith("text/html")


def test_sdk_and_its_examples_at_their_original_paths(webServer):
    status, _, body = get(webServer, "/client2/flashphoner-room-api.js")
    assert status == 200 and len(body) > 100000
    status, _, body = get(webServer, f"{DEMOS}/conference/conference.html")
    assert status == 200 and b"conference.js" in body
    status, _, _ = get(webServer, "/client2/examples/demo/dependencies/js/utils.js")
    assert status == 200


def test_folder_without_slash_redirects(webServer):
    status, headers, _ = get(webServer, f"{DEMOS}/conference")
    assert status == 302 and headers["location"].endswith(f"{DEMOS}/conference/")


def test_range_request(webServer):
    status, headers, body = get(webServer, "/client2/flashphoner-room-api.js",
                                {"Range": "bytes=0-99"})
    assert status == 206 and len(body) == 100
    assert headers["content-range"].startswith("bytes 0-99/")


@pytest.mark.parametrize("path", [
    "/client2/../../../etc/passwd",
    "/client2/examples/../../../../../etc/passwd",
    "/client2/%2e%2e/%2e%2e/etc/passwd",
    "/client2/..%2f..%2fetc%2fpasswd",
])
def test_no_path_traversal(webServer, path):
    response = rawGet(webServer, path)
    status = int(response.split(b" ", 2)[1])
    assert status in (403, 404), response[:200]
    assert b"root:" not in response


def test_no_directory_listing(webServer):
    status, _, body = get(webServer, "/client2/examples/")
    assert status == 404 and b"<a href" not in body


def test_https_with_the_self_signed_certificate(webServer):
    certPath = webServer.workdir / "state" / "tls" / "server.crt"
    context = ssl.create_default_context(cafile=str(certPath))
    connection = http.client.HTTPSConnection("localhost", webServer.ports["https"],
                                             context=context, timeout=10)
    connection.request("GET", f"{DEMOS}/conference/")
    response = connection.getresponse()
    assert response.status == 200 and b"<title>Conference" in response.read()
    der = connection.sock.getpeercert(binary_form=True)
    logged = re.search(r"SHA-256 fingerprint ([0-9A-F:]+)", webServer.log()).group(1)
    assert logged == ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def test_redirect_keeps_the_query(webServer):
    status, headers, _ = get(webServer, f"{DEMOS}/conference?roomName=r1&login=me")
    assert status == 302
    assert headers["location"].endswith(f"{DEMOS}/conference/?roomName=r1&login=me")


@pytest.mark.parametrize("path", [
    f"{DEMOS}/wcs/room.html",  # the template, unfilled
    "/client2/package.json",
    "/client2/src/room-module.js",
    "/client2/Gruntfile.js",
])
def test_only_what_pages_need_is_served(webServer, path):
    assert get(webServer, path)[0] == 404


def test_index_html_of_a_demo(webServer):
    status, _, body = get(webServer, f"{DEMOS}/video-chat/index.html")
    assert status == 200 and b"<title>Two Way Video Chat" in body


def test_accessLogDateWithoutTimer(tmp_path):
    """
    The access log's date is made when a request is logged: no timer every
    second (Twisted's own) wakes an idle server.
    """
    from twisted.internet.task import Clock
    from twisted.web.resource import Resource
    from twisted.web.test.requesthelper import DummyRequest

    from wcs.config import Settings
    from wcs.web.guard import GuardedSite

    clock = Clock()
    clock.advance(86400 * 365 * 30 + 3)  # a date well after the epoch
    site = GuardedSite(Resource(), Settings({}), None)
    site.reactor = clock
    site.logPath = str(tmp_path / "access.log")
    site.startFactory()
    try:
        assert clock.getDelayedCalls() == []
        clock.advance(3600)
        request = DummyRequest([b""])
        request.method, request.uri, request.clientproto = b"GET", b"/", b"HTTP/1.1"
        request.code, request.sentLength = 200, 5
        site.log(request)
    finally:
        site.stopFactory()
    assert site._logDateTime == http_datetime(clock.seconds())
    assert site._logDateTime in (tmp_path / "access.log").read_text()


def http_datetime(seconds):
    from twisted.web.http import datetimeToLogString
    return datetimeToLogString(seconds)
