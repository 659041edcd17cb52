"""
Run the real server (`twistd -n wcs`) on free loopback ports for a test.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from wcs.memwatch import residentKiB

TWISTD = [str(Path(sys.executable).with_name("twistd"))]
START_TIMEOUT = 20.0


def freePort() -> int:
    """
    A port free now. Another process may bind it before whoever asked does:
    L{startServer} retries on other ports when that happens.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def waitForPort(port: int, proc: subprocess.Popen, logPath: Path,
                timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{logPath.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} in {timeout}s:\n{logPath.read_text()}")


def residentBytes(pid: int) -> int | None:
    """
    C{pid}'s resident memory now, in bytes (Linux /proc: VmRSS); None for
    a process that has none (a zombie). OSError when it is gone.
    """
    kib = residentKiB(f"/proc/{pid}/status")
    return None if kib is None else kib * 1024


@dataclass
class RunningServer:
    proc: subprocess.Popen
    ports: dict[str, int]
    workdir: Path
    logPath: Path
    args: list[str] = field(default_factory=list)

    @property
    def wsURL(self) -> str:
        return f"ws://127.0.0.1:{self.ports['ws']}/"

    def log(self) -> str:
        return self.logPath.read_text(errors="replace")

    def rss(self) -> int:
        """The server's resident memory now, in bytes (Linux /proc)."""
        resident = residentBytes(self.proc.pid)
        if resident is None:
            raise RuntimeError("no VmRSS in /proc status")
        return resident

    @property
    def restURL(self) -> str:
        return f"http://127.0.0.1:{self.ports['rest']}"

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGINT) -> int:
        """
        Stop at once (SIGINT; SIGTERM would drain: rooms run on for
        C{drain_timeout}).
        """
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode


# A port found free may be taken before the server binds it (another test's
# server or client): then the server logs CannotListenError, and the start
# is retried on other ports.
START_ATTEMPTS = 5
_IN_USE = "Address already in use"


class PortTaken(Exception):
    pass


def waitForListening(ports: list[int], proc: subprocess.Popen, logPath: Path,
                     timeout: float = START_TIMEOUT) -> None:
    """
    Wait until the server logs that it listens on every one of C{ports}
    (Twisted's "... starting on PORT" after each bind). Its own word, not a
    connect: a connect could reach whoever else took the port. Raise
    L{PortTaken} when one was taken first.
    """
    deadline = time.monotonic() + timeout
    while True:
        log = logPath.read_text(errors="replace")
        if _IN_USE in log:
            raise PortTaken(log)
        if all(re.search(rf" starting on {port}$", log, re.M) for port in ports):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"server did not listen on {ports} in {timeout}s:\n{log}")
        time.sleep(0.05)


def startServer(workdir: Path, settings: dict[str, str] | None = None,
                enable: tuple[str, ...] = ("ws",), extraArgs: list[str] = (),
                env: dict[str, str] | None = None,
                twistd: list[str] = TWISTD) -> RunningServer:
    """
    Start `twistd -n wcs` in C{workdir}. Ports named in C{enable} (ws, wss,
    http, https, rtmp, rest, rest-https) get free loopback ports, the others
    are disabled. C{twistd} is the command, by default this venv's.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    for attempt in range(START_ATTEMPTS):
        server = _start(workdir, settings, enable, extraArgs, env, twistd)
        try:
            waitForListening([server.ports[name] for name in enable], server.proc,
                             server.logPath)
            return server
        except PortTaken:
            server.stop()
            server.logPath.rename(workdir / f"server.{attempt}.log")
        except BaseException:
            server.stop()
            raise
    raise RuntimeError(f"no free ports after {START_ATTEMPTS} attempts: see {workdir}")


def _start(workdir: Path, settings, enable, extraArgs, env, twistd) -> RunningServer:
    ports = {name: freePort() if name in enable else 0
             for name in ("ws", "wss", "http", "https", "rtmp", "rest", "rest-https")}
    args = list(twistd) + ["-n", "--pidfile=", "wcs", "--listen", "127.0.0.1",
                     "--state-dir", str(workdir / "state")]
    for name, port in ports.items():
        args += [f"--{name}-port", str(port)]
    for key, value in (settings or {}).items():
        args += ["--set", f"{key}={value}"]
    args += list(extraArgs)
    logPath = workdir / "server.log"
    env = dict(env or os.environ, PYTHONUNBUFFERED="1")
    with open(logPath, "wb") as logFile:
        proc = subprocess.Popen(args, cwd=workdir, stdout=logFile, stderr=subprocess.STDOUT,
                                env=env)
    return RunningServer(proc, ports, workdir, logPath, args)
