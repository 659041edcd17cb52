"""
The HTTP side: C{/whip/ROOM/LOGIN} and C{/whep/STREAM}, their session
resources (the C{Location} of a 201), CORS, and the plugin objects that
L{wcs.interfaces.IWebResource} describes.
"""

from __future__ import annotations

from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from wcs.interfaces import IWebResource
from wcs.logs import Logger, clip
from whipwhep.session import HTTPMediaSession, Refused
from whipwhep.statuses import statusOf

log = Logger()

SDP = b"application/sdp"
CORS = {
    b"Access-Control-Allow-Origin": b"*",
    b"Access-Control-Allow-Methods": b"OPTIONS, POST, DELETE, PATCH",
    b"Access-Control-Allow-Headers": b"Content-Type, Authorization, If-Match",
    b"Access-Control-Expose-Headers": b"Location, Accept-Patch, Link, ETag",
    b"Access-Control-Max-Age": b"86400",
}


class BadRequest(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def header(request, name: bytes) -> str:
    return (request.getHeader(name) or b"").decode("latin-1")


def readOffer(request) -> str:
    """The SDP offer of a POST, or L{BadRequest} naming what is wrong."""
    contentType = header(request, b"content-type").partition(";")[0].strip()
    if contentType.lower() != SDP.decode():
        raise BadRequest(415, f"the offer must be sent as {SDP.decode()}, "
                              f"not {clip(contentType or 'nothing', 60)}")
    try:
        offer = request.content.read().decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(400, "the offer is not UTF-8 text") from None
    if not offer.startswith("v=0") or "\nm=" not in offer:
        raise BadRequest(400, "the body is not an SDP offer (v=0 and an m= line)")
    return offer


def bearerToken(request) -> str | None:
    value = header(request, b"authorization")
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class Endpoint(Resource):
    """
    C{/whip/...} or C{/whep/...}: POST makes a session at C{PATH/ID}, DELETE
    on that ends it, PATCH (trickle ICE, ICE restart) is not supported (405,
    as RFC 9725 allows: our answers carry all our candidates), OPTIONS
    answers CORS preflights.

    @ivar segments: the path segments a POST names (2 for WHIP, 1 for WHEP).
    """

    isLeaf = True
    segments = 1
    kind = ""

    def __init__(self, server, settings):
        super().__init__()
        self.roomServer = server
        self.sessions: dict[str, HTTPMediaSession] = {}
        self.badInput = server.badInputLog  # one a while per (address, kind)

    def render(self, request):
        for name, value in CORS.items():
            request.setHeader(name, value)
        return super().render(request)

    def render_OPTIONS(self, request):
        request.setHeader(b"Accept-Post", SDP)
        request.setResponseCode(http.NO_CONTENT)
        return b""

    def render_POST(self, request):
        names = [s.decode("utf-8", "replace") for s in request.postpath]
        if len(names) != self.segments or not all(names):
            return self._error(request, 404, f"POST to /{self.kind}/"
                               f"{'ROOM/LOGIN' if self.segments == 2 else 'STREAM'}")
        try:
            offer = readOffer(request)
        except BadRequest as e:
            return self._error(request, e.status, e.reason)
        peer = request.getClientAddress()
        session = HTTPMediaSession(self.roomServer, f"{self.kind}:{peer.host}:{peer.port}",
                                   request.path, bearerToken(request), self._ended)
        self.sessions[session.id] = session
        request.notifyFinish().addErrback(lambda _: session.stop("HTTP client went away"))
        self.start(session, names, offer).addCallbacks(
            lambda answer: self._created(request, session, answer),
            lambda failure: self._refused(request, failure)
        ).addErrback(self._crashed, request, session)
        return NOT_DONE_YET

    def start(self, session: HTTPMediaSession, names: list[str], offer: str):
        raise NotImplementedError

    def render_DELETE(self, request):
        session = self._sessionOf(request)
        if session is None:
            return self._error(request, 404, "no such session (ended already?)")
        session.stop(f"{self.kind.upper()} DELETE")
        return b""

    def render_PATCH(self, request):
        if self._sessionOf(request) is None:
            return self._error(request, 404, "no such session (ended already?)")
        request.setHeader(b"Allow", b"OPTIONS, DELETE")
        return self._error(request, 405, "trickle ICE and ICE restarts are not supported: "
                                         "the answer carries all the server's candidates")

    def _sessionOf(self, request) -> HTTPMediaSession | None:
        if len(request.postpath) != self.segments + 1:
            return None
        session = self.sessions.get(request.postpath[-1].decode("ascii", "replace"))
        # The whole path must match: the ID alone is not enough to name it.
        if session is None or request.path != session.path + b"/" + session.id.encode():
            return None
        return session

    def _ended(self, session: HTTPMediaSession) -> None:
        self.sessions.pop(session.id, None)

    def _created(self, request, session: HTTPMediaSession, answer: str) -> None:
        if session.ended:
            return  # the client went away first (notifyFinish's errback)
        request.setResponseCode(http.CREATED)
        request.setHeader(b"Content-Type", SDP)
        request.setHeader(b"Location", session.path + b"/" + session.id.encode())
        request.write(answer.encode("utf-8"))
        request.finish()

    def _refused(self, request, failure) -> None:
        failure.trap(Refused)
        request.write(self._error(request, statusOf(failure.value.code), failure.value.info))
        request.finish()

    def _crashed(self, failure, request, session: HTTPMediaSession) -> None:
        log.failure("{kind}: {session} failed", failure, kind=self.kind, session=session)
        session.stop("server error")
        if not request.finished:
            try:
                request.setResponseCode(http.INTERNAL_SERVER_ERROR)
                request.finish()
            except RuntimeError:  # the client is gone already
                pass

    def _error(self, request, status: int, reason: str) -> bytes:
        host = request.getClientAddress().host
        self.badInput.warn((host, status), "{kind}:{host}: {method} {status}: {reason}",
                           kind=self.kind, host=host, method=clip(request.method, 10),
                           status=status, reason=clip(reason, 200))
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return reason.encode("utf-8") + b"\n"


class WHIPEndpoint(Endpoint):
    """C{POST /whip/ROOM/LOGIN}: join ROOM as LOGIN and publish ROOM-LOGIN."""

    segments = 2
    kind = "whip"

    def start(self, session, names, offer):
        return session.publish(names[0], names[1], offer)


class WHEPEndpoint(Endpoint):
    """C{POST /whep/STREAM}: play the live stream STREAM."""

    kind = "whep"

    def start(self, session, names, offer):
        return session.play(names[0], offer)


@implementer(IWebResource)
class Plugin:
    """A WHIP or WHEP endpoint as the web server finds it (wcs_plugins/whip.py)."""

    maxBodySize = 65536

    def __init__(self, name: str, endpoint: type[Endpoint]):
        self.name = self.path = name
        self.endpoint = endpoint

    def makeResource(self, server, settings):
        # An offer is bounded like any signalling message.
        self.maxBodySize = settings.ws_max_message_size
        return self.endpoint(server, settings)
