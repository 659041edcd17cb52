"""
C{twistd wcs --workers N}: one machine, all cores (docs/cluster.md,
"Workers").

The process started (worker 0) starts N-1 more of itself, each a node of a
cluster: the same command with C{--worker I}. Every worker listens on the
same public TCP ports with C{SO_REUSEPORT}, so the kernel spreads new
connections over them; each gets its own slice of the media port range and
the node id C{NODE:I}. Without C{cluster_redis_url} worker 0 starts a private
C{redis-server} on a Unix socket in C{state_dir} (and says so), stopped with
it. A worker whose parent is gone stops too.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from twisted.application.service import MultiService, Service
from twisted.internet import protocol
from twisted.internet.task import LoopingCall

from wcs.config import ConfigError
from wcs.logs import Logger

log = Logger()

REDIS_START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


def sharePorts() -> None:
    """
    Every TCP port this process listens on is bound with C{SO_REUSEPORT}
    (Twisted's own option, set for every listener: the transports and
    drop-ins build their endpoints themselves).
    """
    from twisted.internet import tcp

    original = tcp.Port.createInternetSocket
    if getattr(original, "sharesPort", False):
        return

    def createInternetSocket(self):
        s = original(self)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        return s
    createInternetSocket.sharesPort = True
    tcp.Port.createInternetSocket = createInternetSocket


def mediaSlice(low: int, high: int, count: int, index: int) -> tuple[int, int]:
    """Worker C{index}'s share of the media port range (any port: unchanged)."""
    if low == 0 and high == 0:
        return 0, 0
    width = (high - low + 1) // count
    if width < 2:
        raise ConfigError(f"media_port_from..media_port_to ({low}..{high}) is too small "
                          f"for {count} workers")
    start = low + index * width
    return start, start + width - 1


def configureWorker(settings, count: int, index: int) -> None:
    """This process's settings as worker C{index} of C{count}."""
    from wcs.cluster.service import nodeIdOf

    base = settings.node_id or nodeIdOf(settings)
    settings.set("node_id", f"{base}:{index}")
    low, high = mediaSlice(settings.media_port_from, settings.media_port_to, count, index)
    settings.set("media_port_from", low)
    settings.set("media_port_to", high)
    if settings.cluster_relay_port:  # each worker its own relay port (not shared)
        settings.set("cluster_relay_port", settings.cluster_relay_port + index)
    sharePorts()


def privateRedisUrl(stateDir: str) -> str:
    """
    Where the private redis-server listens.

    @raise ConfigError: redis-server is not installed.
    """
    if shutil.which("redis-server") is None:
        raise ConfigError("--workers needs cluster_redis_url, or redis-server installed "
                          "to start a private one")
    return f"unix://{(Path(stateDir) / 'redis.sock').resolve()}"


def startPrivateRedis(url: str) -> subprocess.Popen:
    """A redis-server on the Unix socket of C{url} only, keeping nothing on disk."""
    path = Path(url[len("unix://"):])
    stateDir = path.parent
    stateDir.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    proc = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", "0", "--unixsocket", str(path), "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", str(stateDir.resolve())],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + REDIS_START_TIMEOUT
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the private redis-server for --workers did not start")
        time.sleep(0.02)
    return proc


def workerArgs(argv: list[str], index: int, redisUrl: str) -> list[str]:
    """
    The command of worker C{index}: twistd in the foreground, the same wcs
    options (later ones win), its index and the cluster's Redis.
    """
    subcommand = argv.index("wcs")
    return [sys.executable, argv[0], "-n", "--pidfile=", *argv[subcommand:],
            "--worker", str(index), "--set", f"cluster_redis_url={redisUrl}"]


class _Worker(protocol.ProcessProtocol):
    def __init__(self, index: int):
        self.index = index
        self.ended = None

    def processEnded(self, reason) -> None:
        log.info("worker {index} ended: {reason}", index=self.index,
                 reason=reason.value)
        if self.ended is not None:
            self.ended.callback(None)


class Workers(MultiService):
    """
    Worker 0's service: starts Redis and the other workers, then its
    children (this node's cluster service); stops them in the reverse order.
    """

    def __init__(self, reactor, argv: list[str], count: int, redisUrl: str,
                 privateRedis: bool):
        super().__init__()
        self.reactor = reactor
        self.argv = argv
        self.count = count
        self.redisUrl = redisUrl
        self.privateRedis = privateRedis
        self.redis: subprocess.Popen | None = None
        self.workers: list[tuple[_Worker, object]] = []

    def startService(self):
        # Here, not when the service is made: twistd may daemonize between.
        if self.privateRedis:
            self.redis = startPrivateRedis(self.redisUrl)
            log.info("--workers {count}: started a private redis-server at {url}",
                     count=self.count, url=self.redisUrl)
        for index in range(1, self.count):
            worker = _Worker(index)
            process = self.reactor.spawnProcess(
                worker, sys.executable, workerArgs(self.argv, index, self.redisUrl),
                env=os.environ.copy(), childFDs={0: "w", 1: 1, 2: 2})
            self.workers.append((worker, process))
        log.info("started {count} more workers", count=self.count - 1)
        super().startService()

    def stopService(self):
        # This node leaves the cluster before Redis goes.
        return super().stopService().addBoth(lambda _: self._stopWorkers())

    def _stopWorkers(self):
        from twisted.internet.defer import Deferred, DeferredList

        waiting = []
        for worker, process in self.workers:
            if worker.ended is None and process.pid is not None:
                worker.ended = Deferred()
                waiting.append(worker.ended.addTimeout(STOP_TIMEOUT, self.reactor))
                process.signalProcess("INT")
        done = DeferredList(waiting, consumeErrors=True)
        done.addBoth(lambda _: self._stopRedis())
        return done

    def _stopRedis(self) -> None:
        if self.redis is not None and self.redis.poll() is None:
            self.redis.terminate()
            try:
                self.redis.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.redis.kill()


class ParentWatch(Service):
    """A worker stops when the process that started it is gone."""

    def __init__(self, reactor):
        self.reactor = reactor
        self.parentPid = os.getppid()
        self.check = LoopingCall(self._check)
        self.check.clock = reactor

    def startService(self):
        super().startService()
        self.check.start(1.0, now=False)

    def stopService(self):
        super().stopService()
        if self.check.running:
            self.check.stop()

    def _check(self) -> None:
        if os.getppid() != self.parentPid:
            log.warn("worker: the first worker is gone, stopping")
            os.kill(os.getpid(), signal.SIGINT)
