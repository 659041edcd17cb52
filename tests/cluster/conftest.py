import pytest

from tests.support.wsclient import Client

# A client's wait when not told, in the cluster tests: each step crosses
# processes and Redis (a join goes client -> node -> Redis -> the room's node
# and back, and the nodes' own join timeout is 5 s: a client waiting no longer
# than that could not see their answer). On a loaded 2-core machine, with three
# nodes, redis-server and ffmpeg sharing it, 5 s was too tight; a wait that
# ends early on its condition costs nothing on a quiet one.
CLUSTER_TIMEOUT = 15.0


@pytest.fixture(autouse=True)
def patientClients(monkeypatch):
    monkeypatch.setattr(Client, "timeout", CLUSTER_TIMEOUT)
