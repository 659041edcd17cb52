import aioice.ice
import pytest

from tests.rest.client import RestClient
from tests.support.rooms import MEDIA
from tests.support.server import startServer
from tests.web.conftest import browser  # noqa: F401  (headless Chromium, shared)

KEY = "test-admin-key-Zq3"


@pytest.fixture(autouse=True)
def loopbackOnly(monkeypatch):
    """aiortc peers gather 127.0.0.1 only (as in tests/media)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses",
                        lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture(scope="module")
def restServer(tmp_path_factory):
    """WebSocket, media and the REST API over HTTP and HTTPS; no key: loopback only."""
    running = startServer(tmp_path_factory.mktemp("rest"), settings=MEDIA,
                          enable=("ws", "rest", "rest-https"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def rest(restServer):
    return RestClient(restServer.ports["rest"])


@pytest.fixture(scope="module")
def keyServer(tmp_path_factory):
    """The REST API with admin_api_key set."""
    running = startServer(tmp_path_factory.mktemp("restkey"),
                          settings={**MEDIA, "admin_api_key": KEY}, enable=("ws", "rest"))
    yield running
    running.stop()

