"""Helpers of the access tests: a client that connects with a token."""

import asyncio

import websockets

from tests.support.wsclient import TIMEOUT, Client
from wcs.access.tokens import mint

SECRET = "a-test-secret-of-at-least-32-bytes!!"
ALL = ["join", "publish", "play", "chat", "record"]


def token(login, room="*", grants=ALL, ttl=3600, **kwargs):
    return mint(SECRET, login, room, grants, ttl, **kwargs)


async def connect(url, login=None, token=None, **custom):
    """Send `connection` with custom.login/token; return (client, first answer)."""
    client = await Client.open(url, connect=False)
    if login is not None:
        custom["login"] = login
    if token is not None:
        custom["token"] = token
    await client.send("connection", {"appKey": "roomApp", "mediaProviders": ["WebRTC"],
                                     "clientVersion": "2.0", "custom": custom})
    return client, await _first(client)


async def _first(client):
    while True:
        frame = await client.next(TIMEOUT)
        if frame["message"] != "ping":
            return frame


async def refusedAndClosed(client, frame, reason):
    """A `fail` naming `reason` for `connection`, then the socket closes."""
    assert frame["message"] == "fail", frame
    assert frame["data"][0] == {"apiMethod": "connection", "info": reason}
    try:
        extra = await asyncio.wait_for(_first(client), TIMEOUT)
    except websockets.ConnectionClosed:
        return
    raise AssertionError(f"expected the connection to close, got {extra}")
