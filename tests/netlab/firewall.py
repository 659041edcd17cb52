"""
A firewall between a client and the server: two private network namespaces
joined by a veth pair. The server's side (C{SERVER_ADDRESS}) holds the
server, coturn and any unfiltered client; on the client's side
(C{CLIENT_ADDRESS}) iptables drops every UDP packet in and out, as a
corporate firewall that lets only TCP through. Media from there can only
go through TURN over TCP.

    with Firewall() as net:
        with net.entered(net.server):   # sockets and children made here: server side
            turn = Coturn(workdir, SERVER_ADDRESS, secret)
        with net.entered(net.client):   # ... client side, UDP dropped
            ...
        net.udpDropped()                # packets the firewall dropped

Each namespace lives as long as a small holder process (C{unshare --net}),
which ends when the firewall closes or its parent dies (EOF on its stdin).
Needs root: L{unavailable} says why not.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.netlab.lab import enteredNamespace

SERVER_ADDRESS = "10.77.0.1"
CLIENT_ADDRESS = "10.77.0.2"
START_TIMEOUT = 10.0
HOLDER = ["unshare", "--net", "sh", "-c", "ip link set lo up && exec cat >/dev/null"]
FIREWALL = [["-A", "INPUT", "-p", "udp", "-j", "DROP"],
            ["-A", "OUTPUT", "-p", "udp", "-j", "DROP"]]


def unavailable() -> str | None:
    """Why this machine cannot make the firewall, or None."""
    if os.geteuid() != 0:
        return "network namespaces and iptables need root"
    for tool in ("unshare", "nsenter", "ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = subprocess.run(["unshare", "--net", "iptables", "-L", "-n"],
                           capture_output=True, timeout=10)
    if probe.returncode != 0:
        return f"cannot make a network namespace with iptables: {probe.stderr.decode()[-200:]}"
    return None


class Side:
    def __init__(self):
        self.proc = subprocess.Popen(HOLDER, stdin=subprocess.PIPE)

    @property
    def nsPath(self) -> str:
        return f"/proc/{self.proc.pid}/ns/net"

    def waitForNamespace(self, timeout: float = START_TIMEOUT) -> None:
        # The holder unshares, then brings lo up: until then its ns is ours.
        home = os.stat("/proc/self/ns/net").st_ino
        deadline = time.monotonic() + timeout
        while os.stat(self.nsPath).st_ino == home:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("could not make a network namespace")
            time.sleep(0.01)

    def run(self, *command: str) -> str:
        done = subprocess.run(["nsenter", f"--net={self.nsPath}", *command],
                              capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")
        return done.stdout

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # the holder's cat ends, and the namespace with it
        _end(self.proc)


class Firewall:
    def __init__(self):
        self.server: Side | None = None
        self.client: Side | None = None

    def __enter__(self) -> "Firewall":
        try:
            self.server, self.client = Side(), Side()
            self._waitForNamespaces()
            self.server.run("ip", "link", "add", "wcs0", "type", "veth", "peer", "name", "cli0",
                            "netns", str(self.client.proc.pid))
            self.server.run("ip", "addr", "add", f"{SERVER_ADDRESS}/24", "dev", "wcs0")
            self.server.run("ip", "link", "set", "wcs0", "up")
            self.client.run("ip", "addr", "add", f"{CLIENT_ADDRESS}/24", "dev", "cli0")
            self.client.run("ip", "link", "set", "cli0", "up")
            for rule in FIREWALL:
                self.client.run("iptables", *rule)
        except BaseException:
            self.close()
            raise
        return self

    def _waitForNamespaces(self) -> None:
        for side in (self.server, self.client):
            side.waitForNamespace()

    def __exit__(self, *exc) -> None:
        self.close()

    def entered(self, side: Side):
        """Run the block on C{side}: its new sockets and children live there."""
        return enteredNamespace(side.nsPath, self)

    def udpDropped(self) -> int:
        """UDP packets the client side's firewall dropped so far, both ways."""
        out = self.client.run("iptables", "-L", "-v", "-x", "-n")
        return sum(int(line.split()[0]) for line in out.splitlines()
                   if " DROP " in f" {line} " and line.split()[0].isdigit())

    def close(self) -> None:
        for side in (self.client, self.server):
            if side is not None:
                side.close()


class Coturn:
    """
    Debian's coturn (C{turnserver}) as docs/networks.md runs it beside wcs:
    C{use-auth-secret} (TURN REST API credentials), relaying to C{peer} (the
    wcs media address) and nowhere else; here listening on
    C{address}:C{port} for TURN over UDP and TCP, no TLS, relaying from
    C{address}. Started in the caller's network namespace.
    """

    def __init__(self, workdir: Path, address: str, port: int, secret: str, peer: str,
                 realm: str = "wcs.test"):
        self.address, self.port = address, port
        workdir.mkdir(parents=True, exist_ok=True)
        self.logPath = workdir / "turnserver.log"
        args = ["turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls",
                f"--listening-ip={address}", f"--listening-port={port}",
                f"--relay-ip={address}", "--min-port=49152", "--max-port=49407",
                "--use-auth-secret", f"--static-auth-secret={secret}", f"--realm={realm}",
                "--denied-peer-ip=0.0.0.0-255.255.255.255", f"--allowed-peer-ip={peer}",
                "--fingerprint", f"--pidfile={workdir / 'turnserver.pid'}",
                f"--userdb={workdir / 'turndb'}", "--log-file=stdout", "--simple-log",
                "--verbose"]
        with open(self.logPath, "wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=workdir)
        try:
            self._waitListening()
        except BaseException:
            self.stop()
            raise

    def _waitListening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with contextlib.suppress(OSError), socket.create_connection(
                    (self.address, self.port), timeout=0.5):
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"coturn did not listen: {self.log()[-2000:]}")
            time.sleep(0.05)

    def log(self) -> str:
        return self.logPath.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        _end(self.proc)


def _end(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Wait for C{proc} to end, killing it after C{grace} seconds."""
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace)
