"""
The operator's API of the core (wcs.admin.Admin, IAdmin) over recording
channels with an injected clock: finding clients, streams and rooms by id,
ending them, kicking, per-client log levels, recordings' file names.
"""

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from tests.support.channels import HeldMediaEngine, RecordingChannel
from tests.test_session import command, connect, publish
from wcs.admin import KICKED, ROOM_ENDED, TERMINATED, Admin
from wcs.config import Settings
from wcs.errors import StreamError
from wcs.interfaces import IAdmin
from wcs.recording import Recorder
from wcs.server import RoomServer


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def server(clock):
    server = RoomServer(Settings({"ws_ping_interval": 0}), clock)
    server.engine = HeldMediaEngine()
    server.registerMediaEngine(server.engine)
    return server


@pytest.fixture
def admin(server):
    return Admin(server)


def live(server, session, name, room="r", mediaSessionId="m1"):
    publish(session, name, room=room, mediaSessionId=mediaSessionId)
    server.engine.last().listener.mediaStarted()


def test_provides_IAdmin(admin):
    assert verifyObject(IAdmin, admin)


def test_sessionId_is_known_before_connection_and_told_in_getUserData(server, admin):
    channel = RecordingChannel("x")
    session = server.openSession(channel)
    assert admin.connection(session.sessionId) is session
    session.messageReceived("connection", [{"appKey": "a", "custom": {"login": "x"}}])
    assert channel.named("getUserData")[0]["sessionId"] == session.sessionId


def test_connections_oldest_first_and_close(server, admin, clock):
    alice, aliceChannel = connect(server, "alice")
    clock.advance(1)
    bob, _ = connect(server, "bob")
    assert admin.connections() == [alice, bob]
    assert admin.closeConnection(alice.sessionId)
    assert aliceChannel.closedWith == TERMINATED
    assert admin.connections() == [bob]
    assert not admin.closeConnection(alice.sessionId)
    assert not admin.closeConnection("nobody")


def test_streams_found_by_mediaSessionId_and_ended(server, admin):
    alice, channel = connect(server, "alice")
    command(alice, "join", {"name": "r"})
    live(server, alice, "s1")
    [stream] = admin.streams()
    assert admin.stream("m1") is stream and stream.status == "PUBLISHING"
    channel.take()
    assert admin.endStream("m1")
    status = channel.named("notifyStreamStatusEvent")[-1]
    assert (status["status"], status["info"]) == ("UNPUBLISHED", TERMINATED)
    assert admin.streams() == [] and not admin.endStream("m1")
    assert server.engine.last().stopped


def test_kick_ends_the_participants_streams_and_tells_the_others(server, admin):
    alice, aliceChannel = connect(server, "alice")
    bob, bobChannel = connect(server, "bob")
    command(alice, "join", {"name": "r"})
    command(bob, "join", {"name": "r"})
    live(server, alice, "s1")
    assert [s.name for s in admin.streamsOf(admin.room("r").participants["alice"])] == ["s1"]
    aliceChannel.take()
    bobChannel.take()
    assert admin.kick("r", "alice")
    assert [e["info"] for e in bobChannel.roomEvents("UNPUBLISHED")] == [
        {"login": "alice", "name": "s1"}]
    assert [e["info"] for e in bobChannel.roomEvents("LEFT")] == ["alice"]
    assert aliceChannel.named("notifyStreamStatusEvent")[-1]["info"] == KICKED
    assert list(admin.room("r").participants) == ["bob"]
    assert not admin.kick("r", "alice") and not admin.kick("nope", "bob")
    # Out of the room for good: its commands there are refused, a rejoin works.
    command(alice, "sendMessage", {"roomConfig": {"name": "r"}, "to": "bob", "text": "hi"})
    assert aliceChannel.named("DataStatusEvent")[-1]["status"] == "FAILED"
    command(alice, "join", {"name": "r"})
    assert aliceChannel.named("DataStatusEvent")[-1]["status"] == "ACCEPTED"


def test_endRoom_removes_everyone_and_ends_an_idle_room(server, admin):
    ended = []
    server.rooms.observers.append(type("O", (), {
        "roomStarted": lambda self, room: None,
        "roomEnded": lambda self, room: ended.append(room.name)})())
    alice, aliceChannel = connect(server, "alice")
    bob, _ = connect(server, "bob")
    command(alice, "join", {"name": "r"})
    command(bob, "join", {"name": "r"})
    live(server, bob, "s1")
    assert admin.endRoom("r")
    assert ended == ["r"] and admin.room("r") is None and admin.streams() == []
    assert alice.participants == {} and bob.participants == {}
    # An idle room (its last participant disconnected) ends at once too.
    command(alice, "join", {"name": "idle"})
    alice.connectionLost()
    assert admin.room("idle").idleCall is not None
    assert admin.endRoom("idle") and admin.room("idle") is None
    assert ended == ["r", "idle"] and not admin.endRoom("idle")
    assert ROOM_ENDED  # the info a removed publisher's stream gets


def test_log_level_traces_a_clients_messages(server, admin):
    from twisted.logger import globalLogPublisher

    alice, _ = connect(server, "alice")
    with pytest.raises(ValueError):
        admin.setLogLevel(alice.sessionId, "LOUD")
    assert not admin.setLogLevel("nobody", "DEBUG")
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        alice.messageReceived("ping", [])
        assert admin.setLogLevel(alice.sessionId, "DEBUG")
        alice.messageReceived("ping", [{"n": 1}])
        assert admin.setLogLevel(alice.sessionId, "INFO")
        alice.messageReceived("ping", [{"n": 2}])
    finally:
        globalLogPublisher.removeObserver(events.append)
    traced = [e["args"] for e in events if e.get("log_format", "").endswith("sent {name} {args}")]
    assert traced == ['[{"n": 1}]']


def test_recordings_start_stop_refusals(server, admin, tmp_path, clock):
    server.recorder = Recorder(tmp_path, clock)
    alice, _ = connect(server, "alice")
    with pytest.raises(LookupError):
        admin.startRecording("m1")
    command(alice, "join", {"name": "r"})
    publish(alice, "s1")
    with pytest.raises(StreamError):  # not live yet
        admin.startRecording("m1")
    with pytest.raises(StreamError):
        admin.stopRecording("m1")
    assert admin.recordings() == []
    with pytest.raises(ValueError):
        admin.deleteRecording("../x")
    with pytest.raises(LookupError):
        admin.deleteRecording("missing.mp4")
