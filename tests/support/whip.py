"""
A WHIP/WHEP client for tests: HTTP requests with http.client (run in a
thread, bounded by its timeout), offers and answers with aiortc peers.
"""

from __future__ import annotations

import asyncio
import http.client
import ssl
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
             headers: dict[str, str], secure: bool) -> Response:
    if secure:
        # The server's own self-signed certificate (wcs/tls.py): not verified here.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=TIMEOUT,
                                                 context=context)
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()},
                        answer.read())
    finally:
        connection.close()


async def request(server, method: str, path: str, body: bytes | str | None = None,
                  headers: dict[str, str] | None = None, secure: bool = False) -> Response:
    if isinstance(body, str):
        body = body.encode("utf-8")
    port = server.ports["https" if secure else "http"]
    return await asyncio.to_thread(_request, port, method, path, body, dict(headers or {}),
                                   secure)


async def offer(pc, strip: bool = False) -> str:
    """The peer's offer, with its gathered candidates (as WHIP clients send) or without."""
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    return stripCandidates(sdp) if strip else sdp


async def post(server, path: str, pc, strip: bool = False, token: str | None = None,
               secure: bool = False) -> Response:
    """POST the peer's offer to C{path}; on 201 the answer is applied to the peer."""
    headers = {"Content-Type": "application/sdp"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    response = await request(server, "POST", path, await offer(pc, strip), headers, secure)
    if response.status == 201:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
    return response
