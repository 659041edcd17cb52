"""
A customer's backend for the REST hook tests: twisted.web on a loopback
port, in the test process (its reactor runs in a thread of its own; the
tests run on asyncio). It records every call and answers by the request:

- login C{deny...}: 403 with a reason; C{slow...}: answers after 30 s;
  C{fail...}: 500 without a body; C{rename...}: 200 renaming the login and
  adding custom fields;
- room C{closed...} (joinRoom), name C{forbidden...} (publishStream),
  C{secret...} (playStream), text C{bad word} (sendMessage), login
  C{norecord...} (recordStream): 403 with a reason;
- anything else: 200 C{{}}.
"""

from __future__ import annotations

import json
import threading

from twisted.web import resource, server

from tests.support.server import freePort


class Hook(resource.Resource):
    isLeaf = True

    def __init__(self, reactor):
        super().__init__()
        self.reactor = reactor
        self.calls: list[tuple[str, dict]] = []

    def render_POST(self, request):
        action = request.postpath[-1].decode()
        body = json.loads(request.content.read())
        self.calls.append((action, body))
        login = body.get("login") or ""
        request.setHeader(b"content-type", b"application/json")
        if login.startswith("slow"):
            self.reactor.callLater(30, self._late, request)
            return server.NOT_DONE_YET
        if login.startswith("fail"):
            request.setResponseCode(500)
            return b""
        reason = self._denied(action, login, body)
        if reason:
            request.setResponseCode(403)
            return json.dumps({"reason": reason}).encode()
        if login.startswith("rename") and action == "connect":
            return json.dumps({"login": "renamed-" + login,
                               "custom": {"plan": "gold"}}).encode()
        return b"{}"

    @staticmethod
    def _denied(action, login, body):
        if login.startswith("deny"):
            return f"{login} is not welcome"
        if action == "joinRoom" and body.get("room", "").startswith("closed"):
            return "room closed"
        if action == "publishStream" and body.get("name", "").startswith("forbidden"):
            return "not that name"
        if action == "playStream" and body.get("name", "").startswith("secret"):
            return "not for you"
        if action == "sendMessage" and body.get("text") == "bad word":
            return "mind your language"
        if action == "recordStream" and login.startswith("norecord"):
            return "no recording on your plan"
        return None

    def _late(self, request):
        if not request.finished and not request._disconnected:
            request.write(b"{}")
            request.finish()

    def callsOf(self, action, login=None):
        return [body for name, body in list(self.calls)
                if name == action and (login is None or body.get("login") == login)]


_started: dict = {}


def startBackend() -> tuple[Hook, int]:
    """The backend (one per test process: a reactor runs once) and its port."""
    if not _started:
        from twisted.internet import reactor

        hook = Hook(reactor)
        port = freePort()
        reactor.listenTCP(port, server.Site(hook), interface="127.0.0.1")
        threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False},
                         daemon=True, name="hook-backend").start()
        _started.update(hook=hook, port=port)
    return _started["hook"], _started["port"]


TIMEOUT_MS = 1000  # the hook timeout of the tests' servers


def hookSettings(port: int, **extra: str) -> dict[str, str]:
    """A media-ready server's settings asking the backend on C{port}."""
    from tests.support.rooms import MEDIA

    return dict(MEDIA, rest_hook_url=f"http://127.0.0.1:{port}/hook",
                rest_hook_timeout=str(TIMEOUT_MS), **extra)


if __name__ == "__main__":
    # A backend on its own (bench/signalling.py --hook): python -m tests.access.backend PORT
    import sys

    from twisted.internet import reactor

    reactor.listenTCP(int(sys.argv[1]), server.Site(Hook(reactor)), interface="127.0.0.1")
    reactor.run()
