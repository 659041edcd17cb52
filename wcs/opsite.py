"""
The operators' port (C{rest_api_port}): C{/metrics} and
C{POST /rest-api/server/drain}, behind the admin key.

The REST API proper (C{/rest-api/...} of Web Call Server) mounts on the
same root: L{makeRoot} returns a plain L{Resource} tree, and
L{AdminGuard} checks every request before any child sees it.
"""

from __future__ import annotations

import hmac
import json
from ipaddress import ip_address

from twisted.application.internet import StreamServerEndpointService
from twisted.internet import endpoints
from twisted.web.resource import Resource
from twisted.web.server import Site

from wcs.config import Key, declare
from wcs.logs import LogLimiter, Logger

log = Logger()
refusals = LogLimiter(log)

declare(
    Key("rest_api_port", "port", 8081,
        "port of the REST API, /metrics and the admin page (0 disables)"),
    Key("rest_api_listen", "str", "127.0.0.1", "address the REST API port binds to"),
    Key("admin_api_key", "str", "",
        "key of the REST API (Authorization: Bearer KEY); empty: loopback clients only"),
)


def jsonError(request, status: int, message: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps({"status": status, "error": message}).encode()


def isLoopback(host: str) -> bool:
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


class AdminGuard(Resource):
    """
    Lets a request through to its children only with C{Authorization:
    Bearer <admin_api_key>}, or, when no key is set, from a loopback
    address. Others get 401 (a wrong or missing key) or 403 (not loopback).
    """

    def __init__(self, settings):
        super().__init__()
        self.settings = settings

    def getChildWithDefault(self, path, request):
        refusal = self.refusal(request)
        if refusal is not None:
            return _Refused(*refusal)
        return super().getChildWithDefault(path, request)

    def render(self, request):
        refusal = self.refusal(request)
        if refusal is not None:
            return _Refused(*refusal).render(request)
        return jsonError(request, 404, "not found")

    def refusal(self, request) -> tuple[int, str] | None:
        key = self.settings.admin_api_key
        host = getattr(request.getClientAddress(), "host", "")
        if not key:
            if isLoopback(host):
                return None
            refusals.warn(("not loopback", host), "{host}: admin request refused: "
                          "no admin_api_key set, loopback only", host=host)
            return 403, "no admin_api_key is set: only loopback clients are served"
        given = request.getHeader(b"authorization") or b""
        scheme, _, token = given.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), key.encode()):
            return None
        refusals.warn(("bad key", host), "{host}: admin request refused: wrong or no key",
                      host=host)
        return 401, "Authorization: Bearer <admin_api_key> required"


class _Refused(Resource):
    isLeaf = True

    def __init__(self, status: int, message: str):
        super().__init__()
        self.status = status
        self.message = message

    def render(self, request):
        if self.status == 401:
            request.setHeader(b"www-authenticate", b'Bearer realm="wcs"')
        return jsonError(request, self.status, self.message)


class DrainResource(Resource):
    """C{POST /rest-api/server/drain}: start draining (see L{wcs.drain})."""

    isLeaf = True

    def __init__(self, drainer):
        super().__init__()
        self.drainer = drainer

    def render_POST(self, request):
        started = self.drainer.drain("REST request")
        request.setResponseCode(202)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"draining": True, "started": started,
                           "rooms": len(self.drainer.server.rooms.rooms),
                           "timeout": self.drainer.timeout}).encode()


def makeRoot(server, settings) -> AdminGuard:
    """The tree of the operators' port: mount more under it with putChild."""
    from wcs.metrics import MetricsResource

    root = AdminGuard(settings)
    root.putChild(b"metrics", MetricsResource(server.metrics))
    restApi = Resource()
    serverApi = Resource()
    restApi.putChild(b"server", serverApi)
    serverApi.putChild(b"drain", DrainResource(server.drainer))
    root.putChild(b"rest-api", restApi)
    return root


def makeService(server, settings):
    from twisted.internet import reactor

    if not settings.rest_api_port:
        return None
    site = Site(makeRoot(server, settings))
    site.displayTracebacks = False
    endpoint = endpoints.TCP4ServerEndpoint(reactor, settings.rest_api_port,
                                            interface=settings.rest_api_listen)
    return StreamServerEndpointService(endpoint, site)
