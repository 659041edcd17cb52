"""
A WHIP/WHEP client for tests: HTTP requests with http.client (run in a
thread, bounded by its timeout), offers and answers with aiortc peers.
"""

from __future__ import annotations

import asyncio
import http.client
from dataclasses import dataclass

from aiortc import RTCSessionDescription

from tests.media.peers import stripCandidates

TIMEOUT = 15.0


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def _request(port: int, method: str, path: str, body: bytes | None,
             headers: dict[str, str]) -> Response:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()},
                        answer.read())
    finally:
        connection.close()


async def request(server, method: str, path: str, body: bytes | str | None = None,
                  headers: dict[str, str] | None = None) -> Response:
    if isinstance(body, str):
        body = body.encode("utf-8")
    return await asyncio.to_thread(_request, server.ports["http"], method, path, body,
                                   dict(headers or {}))


async def offer(pc, strip: bool = False) -> str:
    """The peer's offer, with its gathered candidates (as WHIP clients send) or without."""
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    return stripCandidates(sdp) if strip else sdp


async def post(server, path: str, pc, strip: bool = False, token: str | None = None) -> Response:
    """POST the peer's offer to C{path}; on 201 the answer is applied to the peer."""
    headers = {"Content-Type": "application/sdp"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    response = await request(server, "POST", path, await offer(pc, strip), headers)
    if response.status == 201:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
    return response
