"""
The REST API's HTTP side: who may call it, bodies of bounded size, JSON in
and out, and errors as JSON with a status that fits.

Web Call Server's REST methods are C{POST /rest-api/AREA/METHOD} with a JSON
body; the SDK's REST client sends C{find_all} as a C{GET} without one. An
L{Area} maps method names to handlers; a handler takes the parsed body and
returns what to answer (None: an empty C{200}) or raises L{ApiError}.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from http import HTTPStatus
from typing import Any, Callable

from twisted.internet.defer import maybeDeferred
from twisted.web import resource, server

from wcs.logs import Logger, clip
from wcs.web.guard import GuardedChannel, GuardedSite

log = Logger()

JSON_TYPE = b"application/json; charset=UTF-8"


class ApiError(Exception):
    """A request the API refuses: C{status} and a message for the caller."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def errorBody(status: int, message: str) -> bytes:
    return json.dumps({"status": status, "error": HTTPStatus(status).phrase,
                       "message": message}).encode("utf-8")


def writeJSON(request, status: int, value: Any) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", JSON_TYPE)
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(value).encode("utf-8")


class ErrorPage(resource.Resource):
    """Any request answered with one JSON error."""

    isLeaf = True

    def __init__(self, status: int, message: str, headers: dict[bytes, bytes] | None = None):
        super().__init__()
        self.status = status
        self.message = message
        self.headers = headers or {}

    def render(self, request):
        for name, value in self.headers.items():
            request.setHeader(name, value)
        request.setResponseCode(self.status)
        request.setHeader(b"content-type", JSON_TYPE)
        return errorBody(self.status, self.message)


def pathOf(request) -> str:
    return request.path.decode("utf-8", "replace")


# Body fields

def field(body: dict, name: str, kind: type = str, required: bool = True):
    """C{body[name]}, of type C{kind}: 400 when missing (if required) or of another type."""
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(400, f"{name} is required")
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ApiError(400, f"{name} must be a {_typeName(kind)}")
    return value


def _typeName(kind: type) -> str:
    return {str: "string", bool: "boolean", int: "number", list: "list"}.get(kind, kind.__name__)


class Call(resource.Resource):
    """One REST method: C{POST} with a JSON object (or nothing), maybe C{GET}."""

    isLeaf = True

    def __init__(self, handler: Callable[[dict], Any], allowGet: bool):
        super().__init__()
        self.handler = handler
        self.allowGet = allowGet

    def render(self, request):
        allowed = [b"POST", b"GET"] if self.allowGet else [b"POST"]
        if request.method not in allowed:
            request.setHeader(b"allow", b", ".join(allowed))
            return ErrorPage(405, f"use {' or '.join(m.decode() for m in allowed)}").render(
                request)
        try:
            body = self._body(request)
        except ApiError as e:
            return ErrorPage(e.status, e.message).render(request)
        answer = maybeDeferred(self.handler, body)
        answer.addCallbacks(lambda value: self._answer(request, value),
                            lambda failure: self._failed(request, failure))
        return server.NOT_DONE_YET

    @staticmethod
    def _body(request) -> dict:
        raw = request.content.read() if request.content is not None else b""
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError) as e:
            raise ApiError(400, f"the body is not JSON: {clip(str(e), 80)}") from None
        if not isinstance(value, dict):
            raise ApiError(400, "the body must be a JSON object")
        return value

    def _answer(self, request, value: Any) -> None:
        if request._disconnected:
            return
        if value is None:
            request.setHeader(b"content-length", b"0")
            request.finish()
            return
        request.write(writeJSON(request, 200, value))
        request.finish()

    def _failed(self, request, failure) -> None:
        if failure.check(ApiError):
            status, message = failure.value.status, failure.value.message
        else:
            log.failure("REST {path} failed", failure, path=clip(pathOf(request), 80))
            status, message = 500, "internal error (logged)"
        if request._disconnected:
            return
        request.write(ErrorPage(status, message).render(request))
        request.finish()


class Area(resource.Resource):
    """
    C{/rest-api/AREA/}: its methods by name. Subclasses fill C{methods} with
    C{name: (handler, allowGet)}.
    """

    def __init__(self):
        super().__init__()
        self.methods: dict[str, tuple[Callable[[dict], Any], bool]] = {}

    def method(self, name: str, handler: Callable[[dict], Any], allowGet: bool = False) -> None:
        self.methods[name] = (handler, allowGet)

    def getChild(self, name: bytes, request):
        found = self.methods.get(name.decode("utf-8", "replace"))
        if found is None or request.postpath:
            return ErrorPage(404, f"no REST method {clip(pathOf(request), 80)}")
        return Call(*found)


class Directory(resource.Resource):
    """A folder of children; anything else is a JSON 404."""

    def getChild(self, name: bytes, request):
        return ErrorPage(404, f"no such path {clip(pathOf(request), 80)}")


# Who may call

def isLoopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


class Authority:
    """
    With a key (C{admin_api_key}): every request carries C{Authorization:
    Bearer KEY}. Without: only loopback clients are served.
    """

    def __init__(self, key: str):
        self.key = key.encode("utf-8")

    def refusal(self, request) -> resource.Resource | None:
        host = request.getClientAddress().host
        if not self.key:
            if isLoopback(host):
                return None
            return ErrorPage(403, "no admin_api_key is set: the REST API serves loopback only")
        scheme, _, token = (request.getHeader(b"authorization") or b"").partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key):
            return None
        return ErrorPage(401, "Authorization: Bearer <admin_api_key> is required",
                         {b"www-authenticate": b'Bearer realm="wcs"'})


class RestChannel(GuardedChannel):
    """The web guard's limits (a body at any path, L{RestSite.bodyLimit}); refusals in JSON."""

    def refusalBody(self, code: int, reason: str) -> tuple[bytes, bytes]:
        return JSON_TYPE, errorBody(code, reason)


class RestSite(GuardedSite):
    """
    The REST port's site. C{resource} takes more children with C{putChild}
    (C{/metrics}, say): every path needs the authority's consent, but for
    the C{public} ones (the admin page's files) when a key is set.
    """

    protocol = RestChannel
    timeOut = 60  # idle seconds before a connection is closed

    def __init__(self, root, settings, badInputLog, authority: Authority,
                 public: tuple[bytes, ...] = ()):
        super().__init__(root, settings, badInputLog)
        self.maxBody = settings.rest_api_max_body
        self.authority = authority
        self.public = public
        self.displayTracebacks = False

    def bodyLimit(self, path: bytes) -> int:
        """Every REST path takes a JSON body of at most C{rest_api_max_body} bytes."""
        return self.maxBody

    def getResourceFor(self, request):
        first = request.postpath[0] if request.postpath else b""
        # The admin page's files hold no data: they load to ask for the key.
        if not (self.authority.key and first in self.public):
            refusal = self.authority.refusal(request)
            if refusal is not None:
                self.badInputLog.warn((request.getClientAddress().host, "rest auth"),
                                      "{peer}: REST request refused: {why}",
                                      peer=f"rest:{request.getClientAddress().host}",
                                      why=refusal.message)
                return refusal
        return super().getResourceFor(request)

