"""
C{twistd wcs}: options and the service tree.

aiortc runs on asyncio, so the server needs Twisted's asyncio reactor. twistd
imports this module only when the C{wcs} subcommand is chosen and before it
installs a reactor, so installing it here affects nobody else.
"""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.application.service import MultiService, Service
from twisted.python import usage


def _installAsyncioReactor() -> None:
    if "twisted.internet.reactor" not in sys.modules:
        from wcs import reactor

        reactor.install()


def _requireAsyncioReactor() -> None:
    """
    Refuse another reactor (twistd --reactor=epoll) in one line: aiortc's
    tasks would never run on it.
    """
    from twisted.internet import reactor
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        sys.exit(
            f"wcs needs the asyncio reactor, but {type(reactor).__name__} is installed: "
            "run `twistd --reactor=asyncio wcs` (or leave --reactor out)"
        )


_installAsyncioReactor()

from wcs.config import ConfigError, Settings, loadProperties  # noqa: E402
from wcs.errors import IncompatibleLibrary  # noqa: E402
from wcs.logs import Logger, jsonLinesObserver, setLevel  # noqa: E402

DEFAULT_CONFIG = Path("conf") / "flashphoner.properties"

log = Logger()


class TokenOptions(usage.Options):
    """
    C{twistd wcs token ...}: print an access token and exit, before any
    service starts; the arguments are those of C{python -m wcs.token}.
    """

    synopsis = "--login LOGIN [--room ROOM] [--grant G,...] [--ttl S] [--secret S|--key PEM]"

    def parseOptions(self, options=None) -> None:
        from wcs.token import main

        parent = getattr(self, "parent", None)
        config = parent["config"] if parent is not None else None
        if config is None and DEFAULT_CONFIG.exists():
            config = str(DEFAULT_CONFIG)
        raise SystemExit(main(list(sys.argv[1:] if options is None else options),
                              prog="twistd wcs token", defaultConfig=config))


class Options(usage.Options):
    synopsis = "[options] [token ...]"
    subCommands = [["token", None, TokenOptions,
                    "print a signed access token (--help: its options) and exit"]]
    longdesc = (
        "Run the wcs room server. Settings come from a flashphoner.properties file "
        "(--config, by default conf/flashphoner.properties when it exists); the "
        "options below override it."
    )

    optParameters = [
        ["config", "c", None, "path of flashphoner.properties"],
        ["listen", None, None, "address to listen on (listen_address)"],
        ["ws-port", None, None, "WebSocket port (ws_port), 0 disables", int],
        ["wss-port", None, None, "secure WebSocket port (wss_port), 0 disables", int],
        ["http-port", None, None, "HTTP port (http_port), 0 disables", int],
        ["https-port", None, None, "HTTPS port (https_port), 0 disables", int],
        ["rtmp-port", None, None, "RTMP port (rtmp_port), 0 disables", int],
        ["rest-port", None, None, "REST API port (rest_api_port), 0 disables", int],
        ["rest-https-port", None, None,
         "REST API HTTPS port (rest_api_https_port), 0 disables", int],
        ["state-dir", None, None, "directory for generated state (state_dir)"],
        ["records", None, None, "directory for recordings (record_dir)"],
        ["log-format", None, None, "text or json: one JSON object per line (log_format)"],
        ["workers", None, 1, "processes sharing the ports, each a cluster node "
         "(docs/cluster.md)", int],
        ["worker", None, None, "(set by --workers for the processes it starts)", int],
    ]

    OVERRIDES = {
        "listen": "listen_address",
        "ws-port": "ws_port",
        "wss-port": "wss_port",
        "http-port": "http_port",
        "https-port": "https_port",
        "rtmp-port": "rtmp_port",
        "rest-port": "rest_api_port",
        "rest-https-port": "rest_api_https_port",
        "state-dir": "state_dir",
        "records": "record_dir",
        "log-format": "log_format",
    }

    def __init__(self) -> None:
        super().__init__()
        self["set"] = []

    def opt_set(self, assignment: str) -> None:
        """Override any setting: --set key=value (repeatable)."""
        key, sep, value = assignment.partition("=")
        if not sep:
            raise usage.UsageError(f"--set takes key=value, got {assignment!r}")
        self["set"].append((key.strip(), value))

    def postOptions(self) -> None:
        _loadTransportSettings()
        path = self["config"]
        try:
            if path is not None:
                settings = loadProperties(path)
            elif DEFAULT_CONFIG.exists():
                settings = loadProperties(DEFAULT_CONFIG)
            else:
                settings = Settings()
            for option, key in self.OVERRIDES.items():
                if self[option] is not None:
                    settings.set(key, self[option])
            for key, value in self["set"]:
                settings.set(key, value)
            from wcs.access.policy import checkSettings

            checkSettings(settings)  # auth_required with nothing to check: say so
            if settings.wss_port or settings.https_port or settings.rest_api_https_port:
                from wcs import tls

                tls.serverContext(settings)  # fail now, with the file named
            from wcs.webhooks import parseUrls

            parseUrls(settings)
            from wcs import turn

            turn.parseUrls(settings)  # TURN URLs without a secret: say so at start
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        if self["workers"] < 1:
            raise usage.UsageError("--workers must be at least 1")
        if self["workers"] > 1 and self["worker"] is None \
                and not settings.cluster_redis_url:
            from wcs.cluster.workers import privateRedisUrl

            try:
                self.privateRedis = privateRedisUrl(settings.state_dir)
            except ConfigError as e:
                raise usage.UsageError(str(e)) from None
        if settings.log_format == "json" and twistdOptions(self).get("syslog"):
            raise usage.UsageError("log_format json writes to stdout or --logfile, "
                                   "not to --syslog")
        self.settings = settings


def twistdOptions(options: usage.Options) -> usage.Options | dict:
    """twistd's own options (--logfile, -n...), around the wcs subcommand's."""
    return getattr(options, "parent", None) or {"nodaemon": True}


def _loadTransportSettings() -> None:
    """
    Import the transports before reading the settings: each declares its own
    keys when imported, and an unknown key is only unknown after that.
    """
    from wcs.server import findTransports

    findTransports()
    for module in ("wcs.media.engine", "wcs.web", "wcs.tls", "wcs.recording",
                   "wcs.rest.service", "wcs.lag", "wcs.access.policy", "wcs.access.records",
                   "wcs.drain", "wcs.webhooks", "wcs.turn", "wcs.cluster", "wcs.gctune",
                   "wcs.memwatch"):
        try:
            __import__(module)
        except ImportError:
            pass
        except IncompatibleLibrary as e:
            # An aiortc/aioice piece is gone (wcs.media.internals): media
            # would silently stop, so refuse to start, in one line.
            sys.exit(str(e))
    try:
        from wcs.web import findWebResources
    except ImportError:
        return
    findWebResources()  # drop-ins serving web paths declare keys too


class _Top(MultiService):
    """
    The service twistd runs. With log_format json it gives twistd's
    application the log observer to start with (twistd asks the application
    for an ILogObserver component before making its own text one; its
    --logger option still comes first).
    """

    logObserver = None

    def setServiceParent(self, parent):
        from twisted.logger import ILogObserver
        from twisted.python.components import Componentized

        if self.logObserver is not None and isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, self.logObserver)
        return super().setServiceParent(parent)


class _ShutdownService(Service):
    """
    Closes every client connection before the listeners stop, then waits for
    the media engines to free their sockets.
    """

    def __init__(self, server):
        self.server = server

    def stopService(self):
        import asyncio

        from twisted.internet.defer import Deferred, DeferredList

        super().stopService()
        self.server.closeAll("server shutting down")
        # Engines are asyncio code (aiortc): run their close() on the loop.
        closing = [Deferred.fromFuture(asyncio.ensure_future(engine.close()))
                   for engine in set(self.server.engines.values()) if hasattr(engine, "close")]
        recorder = getattr(self.server, "recorder", None)
        if recorder is not None:
            closing.append(recorder.close())
        return DeferredList(closing, consumeErrors=True)


def _stopOnSigint() -> None:
    """
    SIGINT stops at once (SIGTERM drains). A shell that starts a program in
    the background without job control leaves SIGINT ignored, and Twisted
    then installs no handler for it: give it back its default first.
    """
    import signal

    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def makeService(options: Options) -> MultiService:
    _requireAsyncioReactor()
    _stopOnSigint()
    from twisted.internet import reactor

    from wcs.server import RoomServer, findTransports

    settings = options.settings
    setLevel(settings.log_level)
    workers = _workers(options, settings, reactor)
    server = RoomServer(settings, reactor)
    top = _Top()
    if workers is not None:
        workers.setServiceParent(top)
    if settings.log_format == "json":
        top.logObserver = jsonLinesObserver(twistdOptions(options))
    # Before the shutdown service: it stops after the clients are closed;
    # under worker 0's service, which stops Redis after it.
    _addCluster(server, settings, workers if isinstance(workers, MultiService) else top)
    _ShutdownService(server).setServiceParent(top)
    _addMediaEngines(server, settings)
    _addRecorder(server, settings)
    for transport in findTransports():
        service = transport.makeService(server, settings)
        if service is not None:
            log.info("transport {name} enabled", name=transport.name)
            service.setServiceParent(top)
    _addWeb(server, settings, top)
    top.rest = _addRest(server, settings, top)
    _addOperations(server, settings, top, top.rest)
    top.server = server
    from wcs.gctune import GCTuning

    GCTuning(reactor, settings).setServiceParent(top)
    if settings.debug_memory_file:
        from wcs.memwatch import MemoryWatch

        MemoryWatch(reactor, settings.debug_memory_file,
                    settings.debug_memory_interval).setServiceParent(top)
    return top


def _addOperations(server, settings, parent, rest) -> None:
    """
    Metrics, webhooks and drain (docs/operations.md); C{/metrics} and the
    drain hook go on the REST service C{rest} when its ports are enabled.
    """
    import asyncio

    from twisted.internet import reactor

    from wcs import drain
    from wcs.lag import PERIOD, QUIET_PERIOD, LagProbe, LoopClock
    from wcs.metrics import Metrics, MetricsResource
    from wcs.webhooks import Webhooks

    server.metrics = metrics = Metrics(server)
    report = settings.loop_lag_report
    # the reactor's loop (asyncioreactor.install set it as the current one)
    LagProbe(LoopClock(asyncio.get_event_loop()), report,
             PERIOD if report else QUIET_PERIOD, metrics.loopLag.observe,
             settings.loop_lag_idle_period / 1000).setServiceParent(parent)
    server.recorder.observers.append(metrics)
    webhooks = Webhooks.fromSettings(settings, reactor, metrics)
    if webhooks is not None:
        # After the recorder: a stream's recordName is known when it is told.
        server.rooms.observers.append(webhooks)
        server.streamObservers.append(webhooks)
        server.recorder.observers.append(webhooks)
    server.webhooks = webhooks
    server.drainer = drainer = drain.Drainer(server, reactor, reactor.stop,
                                             settings.drain_timeout,
                                             settings.drain_finish_timeout)
    drainer.waitFor.append(drain.recorderWork(server.recorder))
    if webhooks is not None:
        drainer.waitFor.append(webhooks.flush)
    reactor.callWhenRunning(drain.installSignals, drainer, reactor)
    if rest is not None:
        rest.site.resource.putChild(b"metrics", MetricsResource(metrics))
        rest.serverArea.drain = drainer.restDrain


def _addRecorder(server, settings) -> None:
    from wcs.recording import Recorder

    from twisted.internet import reactor

    server.recorder = Recorder(settings.recordDirectory(), reactor, settings)
    server.streamObservers.append(server.recorder)
    server.rooms.observers.append(server.recorder)
    server.recorder.recover()
    # After the recorder: a recording's name is known, its signed link follows.
    from wcs.access.records import RecordLinks, loadSecret

    server.streamObservers.append(RecordLinks(loadSecret(settings), settings.records_url_ttl))


def _addMediaEngines(server, settings) -> None:
    try:
        from wcs.media.engine import WebRTCEngine
    except ImportError:
        log.warn("no media engine installed: publishStream/playStream will fail")
        return
    server.registerMediaEngine(WebRTCEngine(settings, server.clock))


def _addRest(server, settings, parent):
    """
    The REST API and admin page: the service, whose C{site.resource} takes
    more paths (C{putChild}) and C{serverArea.drain} the drain hook; None
    when its ports are disabled.
    """
    from wcs.rest.service import makeService as makeRestService

    service = makeRestService(server, settings)
    if service is not None:
        service.setServiceParent(parent)
    return service


def _addWeb(server, settings, parent) -> None:
    try:
        from wcs.web import makeService as makeWebService
    except ImportError:
        return
    service = makeWebService(server, settings)
    if service is not None:
        service.setServiceParent(parent)


def _addCluster(server, settings, parent) -> None:
    """With C{cluster_redis_url}, this node joins the cluster (docs/cluster.md)."""
    if not settings.cluster_redis_url:
        return
    from twisted.internet import reactor

    from wcs.cluster.service import ClusterService

    ClusterService(server, settings, reactor).setServiceParent(parent)


def _workers(options, settings, reactor) -> Service | None:
    """
    C{--workers N}: this process is worker 0 of N, or (C{--worker I}) one
    that worker 0 started (docs/cluster.md, "Workers"). Its settings become
    a node's: its node id, its slice of the media ports, shared TCP ports.
    """
    count, index = options["workers"], options["worker"]
    if index is None and count <= 1:
        return None
    from wcs.cluster.workers import ParentWatch, Workers, configureWorker

    if index is not None:
        configureWorker(settings, count, index)
        return ParentWatch(reactor)
    private = getattr(options, "privateRedis", None)
    if private is not None:
        settings.set("cluster_redis_url", private)
    configureWorker(settings, count, 0)
    return Workers(reactor, sys.argv, count, settings.cluster_redis_url, private is not None)
