"""
tests/support/server.py: a port taken between choosing it and the server's
bind does not fail the test, nor hand it someone else's socket.
"""

import socket

from tests.support import server as support
from tests.support.wsclient import Client


async def test_portTakenBeforeTheBindIsRetried(tmp_path, monkeypatch):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        chosen = iter([taken])
        realFreePort = support.freePort
        monkeypatch.setattr(support, "freePort", lambda: next(chosen, None) or realFreePort())
        running = support.startServer(tmp_path, enable=("ws", "rtmp"))
        try:
            assert taken not in running.ports.values()
            assert "Address already in use" in (tmp_path / "server.0.log").read_text()
            # The test talks to its own server, not to the squatter.
            client = await Client.open(running.wsURL, "alice")
            await client.close()
            assert running.proc.poll() is None
        finally:
            running.stop()


def test_everyPublicPortListensWithTheConfiguredBacklog(tmp_path):
    """A join storm must not overflow the accept queue (Twisted's default: 50)."""
    import subprocess

    running = support.startServer(tmp_path, enable=("ws", "rtmp", "http"),
                                  settings={"listen_backlog": "777"})
    try:
        for name in ("ws", "rtmp", "http"):
            port = running.ports[name]
            # For a listening socket, ss shows the backlog as Send-Q.
            line = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                                  text=True, check=True, timeout=10).stdout.split()
            assert line[0] == "LISTEN" and int(line[2]) == 777, (name, line)
    finally:
        running.stop()
