"""A real webhook receiver (http.server in a thread) that checks signatures."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """
    Collects the events POSTed to it, in arrival order, each with whether
    its X-WCS-Signature is the HMAC-SHA256 of its body under C{secret}.
    L{down} and L{up} stop and restart it on the same port.
    """

    def __init__(self, secret: str):
        self.secret = secret
        self.received: list[tuple[dict, bool]] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.port = 0
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                expected = hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                valid = hmac.compare_digest(self.headers.get("X-WCS-Signature", ""), expected)
                with receiver.lock:
                    receiver.received.append((json.loads(body), valid))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict]:
        """Events in arrival order, a redelivered one (same id) once."""
        seen, out = set(), []
        with self.lock:
            for event, valid in self.received:
                assert valid, f"bad signature on {event}"
                if event["id"] not in seen:
                    seen.add(event["id"])
                    out.append(event)
        return out

    async def waitFor(self, name: str, timeout: float = 30, **fields) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events():
                if event["event"] == name and all(event.get(k) == v for k, v in fields.items()):
                    return event
            assert time.monotonic() < deadline, f"no {name} {fields}: {self.events()}"
            await asyncio.sleep(0.1)
