"""
The REST API and the admin page, on their own port.

C{/rest-api/...}: Web Call Server's REST methods for streams and
connections (what its SDK's REST client calls), and our own for rooms,
recordings and the server; C{/records/FILE}: recordings to download;
C{/admin/}: a page that shows and acts through the API. Other services add
their own resources with C{service.site.resource.putChild} (C{/metrics}).

Requests are authorised by C{admin_api_key} (C{Authorization: Bearer KEY});
without a key, only loopback clients are served. docs/rest-api.md.
"""

from __future__ import annotations

from pathlib import Path

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet import endpoints
from twisted.web import static

from wcs.admin import Admin
from wcs.config import Key, declare
from wcs.logs import Logger
from wcs.rest import api
from wcs.rest.site import Authority, Directory, ErrorPage, RestSite

log = Logger()

declare(
    Key("rest_api_port", "int", 8081, "REST API and admin page over HTTP; 0 disables"),
    Key("rest_api_https_port", "int", 8444,
        "REST API and admin page over HTTPS (the WSS/HTTPS certificate); 0 disables"),
    Key("rest_api_listen", "str", "127.0.0.1", "address the REST API ports bind to"),
    Key("admin_api_key", "str", "",
        "the REST API's key (Authorization: Bearer KEY); empty: loopback clients only"),
    Key("rest_api_max_body", "int", 65536,
        "bytes of a REST request's body; larger gets 413"),
)

STATIC = Path(__file__).with_name("static")


class Downloads(static.File):
    """Recordings, with ranges; no directory listing."""

    def directoryListing(self):
        return ErrorPage(404, "no such recording")

    def createSimilarFile(self, path):
        return Downloads(path, self.defaultType, self.ignoredExts, self.registry)


class RestService(MultiService):
    """
    The REST port(s). C{site.resource} is the root (C{putChild} adds
    paths); C{serverArea.drain} is the hook of C{/rest-api/server/drain}.
    """

    def __init__(self, server, settings):
        super().__init__()
        self.admin = Admin(server)
        records = api.Records(self.admin)
        self.serverArea = api.ServerArea()
        restApi = Directory()
        restApi.putChild(b"stream", api.Streams(self.admin, records))
        restApi.putChild(b"connection", api.Connections(self.admin, records))
        restApi.putChild(b"room", api.Rooms(self.admin, records))
        restApi.putChild(b"record", api.Recordings(self.admin, records))
        restApi.putChild(b"server", self.serverArea)
        root = Directory()
        root.putChild(b"rest-api", restApi)
        root.putChild(b"admin", static.File(str(STATIC / "admin")))
        directory = settings.recordDirectory()
        directory.mkdir(parents=True, exist_ok=True)
        root.putChild(b"records", Downloads(str(directory)))
        self.site = RestSite(root, settings, server.badInputLog,
                             Authority(settings.admin_api_key), public=(b"admin",))


def makeService(server, settings) -> RestService | None:
    from twisted.internet import reactor

    if not (settings.rest_api_port or settings.rest_api_https_port):
        return None
    service = RestService(server, settings)
    listen = settings.rest_api_listen
    if settings.rest_api_port:
        endpoint = endpoints.TCP4ServerEndpoint(reactor, settings.rest_api_port,
                                                interface=listen)
        StreamServerEndpointService(endpoint, service.site).setServiceParent(service)
    if settings.rest_api_https_port:
        from wcs import tls

        endpoint = endpoints.SSL4ServerEndpoint(reactor, settings.rest_api_https_port,
                                                tls.serverContext(settings), interface=listen)
        StreamServerEndpointService(endpoint, service.site).setServiceParent(service)
    if not settings.admin_api_key:
        log.info("REST API without admin_api_key: loopback clients only")
    return service
