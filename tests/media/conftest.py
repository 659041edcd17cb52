import aioice.ice
import pytest


@pytest.fixture(autouse=True)
def loopbackOnly(monkeypatch):
    """
    Everything on 127.0.0.1: aioice leaves loopback out of the host
    candidates it gathers, so the aiortc clients of the tests are told that
    loopback is the machine's only address (the engine binds where its
    settings say and ignores this list).
    """
    monkeypatch.setattr(aioice.ice, "get_host_addresses",
                        lambda use_ipv4, use_ipv6: ["127.0.0.1"])
