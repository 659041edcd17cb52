"""
A plain HTTP client of the REST API for tests: each answer is checked
against docs/rest-api.yaml (tests/rest/openapi.py) before it is returned.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
from dataclasses import dataclass

from tests.rest import openapi

TIMEOUT = 10.0


@dataclass
class Answer:
    status: int
    body: object
    headers: dict


class RestClient:
    def __init__(self, port: int, key: str | None = None, https: bool = False):
        self.port = port
        self.key = key
        self.https = https

    def request(self, method: str, path: str, body=None, *, raw: bytes | None = None,
                headers: dict | None = None, key: str | None = None,
                validate: bool = True) -> Answer:
        if self.https:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # the server's self-signed certificate
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=TIMEOUT,
                                               context=context)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        sent = dict(headers or {})
        key = key if key is not None else self.key
        if key:
            sent["Authorization"] = f"Bearer {key}"
        if raw is None and body is not None:
            raw = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=raw, headers=sent)
            response = conn.getresponse()
            data = response.read()
            answerHeaders = {k.lower(): v for k, v in response.getheaders()}
        finally:
            conn.close()
        parsed = json.loads(data) if data and "json" in answerHeaders.get(
            "content-type", "") else (data or None)
        if validate and path.startswith("/rest-api/"):
            openapi.check(method, path, response.status, parsed)
        return Answer(response.status, parsed, answerHeaders)

    def post(self, path: str, body=None, **kwargs) -> Answer:
        return self.request("POST", path, body if body is not None else {}, **kwargs)

    async def call(self, path: str, body=None, **kwargs) -> Answer:
        """POST from async code, off the event loop (aiortc peers run on it)."""
        return await asyncio.to_thread(self.post, path, body, **kwargs)

    async def ok(self, path: str, body=None, **kwargs):
        answer = await self.call(path, body, **kwargs)
        assert answer.status == 200, (path, answer)
        return answer.body


async def closeAll(*clients) -> None:
    """Close test clients and peers, each even if another fails."""
    for client in clients:
        try:
            await client.close()
        except Exception:
            pass
