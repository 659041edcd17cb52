"""
The network lab: a private network namespace whose UDP traffic goes through
the impairer (tests/netlab/impairer.py), and the means to run a server and
clients inside it.

    with NetLab() as lab:
        lab.setLinks(profile.links(clients))
        with lab.entered():          # sockets and children made here live in the lab
            server = startServer(...)
            ...
        lab.stats()                  # bytes and drops per link

The namespace is made by the impairer's own `unshare --net`, so it lives as
long as the impairer and what was started inside; the impairer ends when
the lab closes or its parent dies (EOF on its stdin). Needs root.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import aioice.ice

ROOT = Path(__file__).resolve().parents[2]
CLONE_NEWNET = 0x40000000
START_TIMEOUT = 10.0
ANSWER_TIMEOUT = 10.0
SERVER = "127.0.0.1"
# The impairer and the probe run at real-time priority (SCHED_RR; the
# kernel keeps 5% of each second for the rest): they stand for the network,
# whose delays must not grow when the test machine is busy.
REALTIME = ["chrt", "--rr", "10"]

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


def netemAvailable() -> bool:
    """Whether this kernel has netem (checked in a throwaway namespace)."""
    probe = subprocess.run(
        ["unshare", "--net", "sh", "-c",
         "ip link set lo up && tc qdisc add dev lo root netem delay 1ms"],
        capture_output=True, timeout=10)
    return probe.returncode == 0


@contextlib.contextmanager
def enteredNamespace(path: str, value=None):
    """
    Run the block with this thread in the network namespace at C{path}
    (/proc/PID/ns/net): the sockets it makes and the processes it starts
    live there. Yields C{value}.
    """
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(path, os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield value
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


class NetLab:
    def __init__(self, seed: int | None = None):
        self.seed = seed
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def __enter__(self) -> "NetLab":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), NETLAB_SEED=str(self.seed or 0))
        self.proc = subprocess.Popen(
            REALTIME + ["unshare", "--net", sys.executable, "-m", "tests.netlab.impairer"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, env=env)
        try:
            line = self._readLine(START_TIMEOUT)
            if line != "ready":
                raise RuntimeError(f"impairer did not start: {line!r}")
        except BaseException:
            self.close()
            raise

    @property
    def nsPath(self) -> str:
        return f"/proc/{self.proc.pid}/ns/net"

    def _readLine(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        buffer = b""
        fd = self.proc.stdout.fileno()
        while not buffer.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise RuntimeError(f"impairer silent for {timeout}s")
            chunk = os.read(fd, 1)
            if not chunk:
                raise RuntimeError(f"impairer exited with {self.proc.wait(5)}")
            buffer += chunk
        return buffer.decode().strip()

    def command(self, request: dict) -> dict:
        with self.lock:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
            answer = json.loads(self._readLine(ANSWER_TIMEOUT))
        if "error" in answer:
            raise ValueError(answer["error"])
        return answer

    def setLinks(self, links: list[dict]) -> dict:
        return self.command({"cmd": "links", "links": links})

    def stats(self) -> dict:
        return self.command({"cmd": "stats"})

    def reset(self) -> dict:
        return self.command({"cmd": "reset"})

    def entered(self):
        """Run the block in the lab's namespace: its new sockets and children live there."""
        return enteredNamespace(self.nsPath, self)

    def close(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()


# aiortc clients of the lab each get their own 127.x address (publishers
# 127.0.1.N, players 127.0.2.N), so that the impairer tells their links apart
# by address. aioice asks get_host_addresses() while gathering, in a task
# made during setLocalDescription: a context variable carries the address.
_host = contextvars.ContextVar("netlabHost", default=None)
_original = aioice.ice.get_host_addresses


def _hostAddresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    address = _host.get()
    return [address] if address else _original(use_ipv4, use_ipv6)


def publisherAddress(index: int) -> str:
    return f"127.0.1.{index + 1}"


def playerAddress(index: int) -> str:
    return f"127.0.2.{index + 1}"


@contextlib.contextmanager
def hostAddress(address: str):
    """aiortc peers that gather in this block offer only C{address}."""
    aioice.ice.get_host_addresses = _hostAddresses  # unchanged outside such blocks
    token = _host.set(address)
    try:
        yield address
    finally:
        _host.reset(token)
