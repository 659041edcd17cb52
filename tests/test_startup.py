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
