"""
The web server: demo pages and the browser SDK over HTTP and HTTPS.

Pages written for Web Call Server load the SDK from
C{/client2/flashphoner-room-api.js} and their shared files from
C{/client2/examples/demo/dependencies/}; both come from the npm package
C{@flashphoner/websdk}, with our own demo pages laid over it.
"""

from __future__ import annotations

import json
from pathlib import Path

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet import endpoints
from wcs.config import Key, declare
from wcs.interfaces import IWebResource
from wcs.logs import Logger
from wcs.web.guard import GuardedSite
from wcs.web.site import makeRoot

log = Logger()

declare(Key("websdk_dir", "str", "",
            "folder of the npm package @flashphoner/websdk; empty: the copy built "
            "into the package (wcs/web/websdk), else node_modules/ in the working "
            "directory or beside the wcs package"))

STATIC = Path(__file__).with_name("static")
# Where a wheel or sdist carries the SDK (setup.py copies it at build time).
BUNDLED = Path(__file__).with_name("websdk")
NPM_PATH = Path("node_modules", "@flashphoner", "websdk")


def sdkCandidates(configured: str) -> list[Path]:
    if configured:
        return [Path(configured)]
    return [BUNDLED, Path.cwd() / NPM_PATH, Path(__file__).resolve().parents[2] / NPM_PATH]


def findWebSDK(configured: str) -> Path | None:
    for candidate in sdkCandidates(configured):
        if (candidate / "flashphoner-room-api.js").is_file():
            return candidate
    return None


def sdkVersion(folder: Path) -> str:
    try:
        return str(json.loads((folder / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown"


def findWebResources() -> list[IWebResource]:
    """
    The L{IWebResource} drop-ins installed, where
    L{wcs.server.findTransports} finds transports.
    """
    from wcs.server import findPlugins

    return findPlugins(IWebResource)


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
        log.warn("the browser SDK (npm package @flashphoner/websdk) is missing: no "
                 "flashphoner-room-api.js in {places}; /client2/flashphoner*.js and the "
                 "SDK's examples answer 404 and the demo pages cannot start. Install a "
                 "package built with it (`make dist`), run `npm ci` in the working "
                 "directory, or set websdk_dir",
                 places=", ".join(str(p) for p in sdkCandidates(settings.websdk_dir)))
    else:
        log.info("browser SDK {version} from {folder}", version=sdkVersion(sdk), folder=sdk)
    recorder = getattr(server, "recorder", None)
    busy = recorder.writing if recorder is not None and hasattr(recorder, "writing") else None
    root = makeRoot(STATIC, sdk, settings, busy)
    bodyLimits = mountDropIns(root, server, settings)
    site = GuardedSite(root, settings, server.badInputLog, bodyLimits)
    site.displayTracebacks = False
    services = MultiService()
    if settings.http_port:
        endpoint = endpoints.TCP4ServerEndpoint(reactor, settings.http_port,
                                                settings.listen_backlog,
                                                interface=settings.listen_address)
        StreamServerEndpointService(endpoint, site).setServiceParent(services)
    if settings.https_port:
        from wcs import tls

        endpoint = endpoints.SSL4ServerEndpoint(reactor, settings.https_port,
                                                tls.serverContext(settings),
                                                settings.listen_backlog,
                                                interface=settings.listen_address)
        StreamServerEndpointService(endpoint, site).setServiceParent(services)
    return services
