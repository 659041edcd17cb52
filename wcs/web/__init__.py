"""
The web server: demo pages and the browser SDK over HTTP and HTTPS.

Pages written for Web Call Server load the SDK from
C{/client2/flashphoner-room-api.js} and their shared files from
C{/client2/examples/demo/dependencies/}; both come from the npm package
C{@flashphoner/websdk}, with our own demo pages laid over it.
"""

from __future__ import annotations

from pathlib import Path

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet import endpoints
from twisted.plugin import getPlugins
from wcs.config import Key, declare
from wcs.interfaces import IWebResource
from wcs.logs import Logger
from wcs.web.guard import GuardedSite
from wcs.web.site import makeRoot

log = Logger()

declare(Key("websdk_dir", "str", "",
            "folder of the npm package @flashphoner/websdk; empty: node_modules/ "
            "in the working directory or beside the wcs package"))

STATIC = Path(__file__).with_name("static")


def findWebSDK(configured: str) -> Path | None:
    candidates = [Path(configured)] if configured else [
        Path.cwd() / "node_modules" / "@flashphoner" / "websdk",
        Path(__file__).resolve().parents[2] / "node_modules" / "@flashphoner" / "websdk",
    ]
    for candidate in candidates:
        if (candidate / "flashphoner-room-api.js").is_file():
            return candidate
    return None


def findWebResources() -> list[IWebResource]:
    """
    The L{IWebResource} drop-ins installed, in C{wcs.transports} and in the
    top-level C{plugins} package (as L{wcs.server.findTransports}).
    """
    import plugins
    import wcs.transports

    found: dict[str, IWebResource] = {}
    for package in (wcs.transports, plugins):
        for provider in getPlugins(IWebResource, package):
            found.setdefault(provider.name, provider)
    return list(found.values())


def mountDropIns(root, server, settings) -> dict[bytes, int]:
    """
    Put each drop-in's resource at its path of C{root}; returns the request
    body limit of each path mounted, for the guard.
    """
    bodyLimits: dict[bytes, int] = {}
    for provider in findWebResources():
        segment = provider.path.encode("utf-8")
        if segment in root.children or not segment or b"/" in segment:
            log.warn("web resource {name}: path /{path}/ is taken or invalid; left out",
                     name=provider.name, path=provider.path)
            continue
        resource = provider.makeResource(server, settings)
        if resource is None:
            continue
        root.putChild(segment, resource)
        bodyLimits[segment] = max(0, int(provider.maxBodySize))
        log.info("web resource {name} enabled at /{path}/", name=provider.name,
                 path=provider.path)
    return bodyLimits


def makeService(server, settings) -> MultiService | None:
    from twisted.internet import reactor

    if not (settings.http_port or settings.https_port):
        return None
    sdk = findWebSDK(settings.websdk_dir)
    if sdk is None:
        log.warn("the browser SDK is not installed (run `npm ci`, or set websdk_dir): "
                 "demo pages will not load it")
    recorder = getattr(server, "recorder", None)
    busy = recorder.writing if recorder is not None and hasattr(recorder, "writing") else None
    root = makeRoot(STATIC, sdk, settings, busy)
    bodyLimits = mountDropIns(root, server, settings)
    site = GuardedSite(root, settings, server.badInputLog, bodyLimits)
    site.displayTracebacks = False
    services = MultiService()
    if settings.http_port:
        endpoint = endpoints.TCP4ServerEndpoint(reactor, settings.http_port,
                                                interface=settings.listen_address)
        StreamServerEndpointService(endpoint, site).setServiceParent(services)
    if settings.https_port:
        from wcs import tls

        endpoint = endpoints.SSL4ServerEndpoint(reactor, settings.https_port,
                                                tls.serverContext(settings),
                                                interface=settings.listen_address)
        StreamServerEndpointService(endpoint, site).setServiceParent(services)
    return services
