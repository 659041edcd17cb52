"""
One connection's session over a recording channel with an injected clock:
command order, errors, keep-alive and stream bookkeeping.
"""

import pytest
from twisted.internet.task import Clock

from tests.support.channels import ANSWER, HeldMediaEngine, RecordingChannel
from wcs.config import Settings
from wcs.server import RoomServer

OFFER = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def server(clock):
    server = RoomServer(Settings({"ws_ping_interval": 1000, "ws_dead_peer_timeout": 5000}),
                        clock)
    server.engine = HeldMediaEngine()
    server.registerMediaEngine(server.engine)
    return server


def connect(server, login="alice"):
    channel = RecordingChannel(login)
    session = server.openSession(channel)
    session.messageReceived("connection", [{"appKey": "roomApp", "custom": {"login": login}}])
    return session, channel


def command(session, command, options, operationId="op"):
    session.messageReceived("sendData", [{"operationId": operationId,
                                          "payload": {"command": command, "options": options}}])


def publish(session, name, room="r", mediaSessionId="m1", **extra):
    session.messageReceived("publishStream", [dict(
        mediaSessionId=mediaSessionId, name=name, published=True, sdp=OFFER,
        custom={"name": room}, **extra)])


def test_connection_answers_getUserData(server):
    session, channel = connect(server)
    [frame] = channel.take()
    assert frame["message"] == "getUserData"
    assert frame["data"][0]["login"] == "alice"


def test_commands_before_connection_are_refused(server):
    channel = RecordingChannel()
    session = server.openSession(channel)
    command(session, "join", {"name": "r"})
    [frame] = channel.take()
    assert frame == {"message": "fail", "data": [{
        "apiMethod": "sendData", "info": "sendData before connection: send 'connection' first"}]}
    session.messageReceived("ping", [None])
    assert channel.take() == [{"message": "pong", "data": [None]}]


def test_join_accepted_then_state(server):
    session, channel = connect(server)
    channel.take()
    command(session, "join", {"name": "r", "record": False}, "op1")
    assert channel.take() == [
        {"message": "DataStatusEvent", "data": [{"operationId": "op1", "status": "ACCEPTED"}]},
        {"message": "OnDataEvent", "data": [{"payload": {
            "roomName": "r", "name": "STATE", "info": []}}]},
    ]


@pytest.mark.parametrize("payload, info", [
    ({"command": "join", "options": {}}, "join.name is required"),
    ({"command": "join", "options": {"name": ""}}, "join.name must not be empty"),
    ({"command": "join", "options": {"name": "x" * 129}},
     "join.name is longer than 128 characters"),
    ({"command": "leave", "options": {"name": "r"}}, "not in room 'r'"),
    ({"command": "fly", "options": {}}, "unknown command 'fly'"),
    ({"command": "sendMessage", "options": {"roomConfig": {"name": "r"}, "to": "b", "text": "x"}},
     "not in room 'r': join it before sending messages"),
])
def test_failed_commands_answer_failed_with_info(server, payload, info):
    session, channel = connect(server)
    channel.take()
    session.messageReceived("sendData", [{"operationId": 7, "payload": payload}])
    assert channel.take() == [{"message": "DataStatusEvent", "data": [{
        "operationId": 7, "status": "FAILED", "info": info}]}]


def test_join_without_login_fails_clearly(server):
    channel = RecordingChannel()
    session = server.openSession(channel)
    session.messageReceived("connection", [{"appKey": "roomApp"}])
    command(session, "join", {"name": "r"})
    [status] = channel.named("DataStatusEvent")
    assert status["status"] == "FAILED" and "custom.login" in status["info"]


def test_unknown_message_and_protocol_error(server):
    session, channel = connect(server)
    channel.take()
    session.messageReceived("teleport", [{}])
    session.protocolError("malformed JSON: x")
    session.messageReceived("pushLogs", [{"logs": "ignored"}])
    assert channel.take() == [
        {"message": "fail", "data": [{"apiMethod": "teleport", "info": "unknown message 'teleport'"}]},
        {"message": "fail", "data": [{"apiMethod": None, "info": "malformed JSON: x"}]},
    ]


def test_server_pings_and_drops_a_silent_client(server, clock):
    session, channel = connect(server)
    channel.take()
    clock.advance(1)
    assert channel.take() == [{"message": "ping", "data": [None]}]
    session.messageReceived("pong", [None])  # at 1 s: the tick at 2 s counts it
    clock.pump([1] * 5)
    assert channel.closedWith is None
    clock.advance(1)
    assert channel.closedWith == "nothing heard from the client for 5 s"


def test_a_pause_of_the_server_itself_is_not_the_clients_silence(server, clock):
    """
    A tick that comes long after the last (a paused virtual machine that
    resumed, a frozen loop, a stepped wall clock) does not count the time
    between against the client: it gets a whole timeout from there.
    """
    session, channel = connect(server)
    clock.advance(1)  # the tick that counts its `connection`
    clock.advance(30)  # the next tick, 30 s on
    assert channel.closedWith is None
    clock.pump([1] * 4)
    assert channel.closedWith is None
    clock.advance(1)
    assert channel.closedWith == "nothing heard from the client for 5 s"


def test_any_sign_of_life_keeps_a_client_that_sends_no_message(server, clock):
    quiet, q = connect(server, "quiet")
    active, a = connect(server, "active")
    for second in range(1, 31):  # six timeouts
        active.peerActive()  # what a transport says on media, acks, pongs
        clock.advance(1)
        if second == 6:  # its `connection` at 0 s was counted by the tick at 1 s
            assert q.closedWith == "nothing heard from the client for 5 s"
            quiet.connectionLost("closed")
    assert a.closedWith is None
    assert len(a.named("ping")) == 30  # still pinged: the client may need a reason to speak


def test_a_client_that_never_sends_connection_is_timed_out_too(server, clock):
    channel = RecordingChannel()
    server.openSession(channel)
    clock.pump([1] * 4)
    assert [f["message"] for f in channel.take()] == ["ping"] * 4
    assert channel.closedWith is None
    clock.advance(1)
    assert channel.closedWith == "nothing heard from the client for 5 s"


def test_disconnect_stops_pinging_and_leaves_rooms(server, clock):
    alice, a = connect(server, "alice")
    bob, b = connect(server, "bob")
    command(alice, "join", {"name": "r"})
    command(bob, "join", {"name": "r"})
    b.take()
    alice.connectionLost("gone")
    assert b.roomEvents("LEFT")[0]["info"] == "alice"
    assert alice not in server.sessions
    a.take()
    clock.advance(10)
    assert a.take() == []


def test_publish_bookkeeping(server):
    alice, a = connect(server, "alice")
    bob, b = connect(server, "bob")
    command(alice, "join", {"name": "r"})
    command(bob, "join", {"name": "r"})
    a.take(), b.take()
    publish(alice, "r-alice-1a2b")
    assert a.take() == [{"message": "setRemoteSDP",
                         "data": ["m1", ANSWER]}]
    assert b.roomEvents() == []  # not live yet
    server.engine.last().listener.mediaStarted()
    [status] = a.named("notifyStreamStatusEvent")
    assert status["status"] == "PUBLISHING" and status["mediaSessionId"] == "m1"
    assert b.roomEvents("PUBLISHED")[0]["info"] == {"login": "alice", "name": "r-alice-1a2b"}
    # A third participant sees the stream in STATE.
    carol, c = connect(server, "carol")
    command(carol, "join", {"name": "r"})
    assert c.roomEvents("STATE")[0]["info"] == [
        {"login": "alice", "name": "r-alice-1a2b"}, "bob"]
    # Unpublish.
    a.take()
    alice.messageReceived("unPublishStream", [{"mediaSessionId": "m1", "name": "r-alice-1a2b"}])
    assert a.named("notifyStreamStatusEvent")[0]["status"] == "UNPUBLISHED"
    assert server.engine.last().stopped
    assert b.roomEvents()[-1]["name"] == "UNPUBLISHED"
    assert server.streams.published == {}


def test_stream_name_in_use_and_stream_not_found(server):
    alice, a = connect(server, "alice")
    command(alice, "join", {"name": "r"})
    publish(alice, "s", mediaSessionId="m1")
    publish(alice, "s", mediaSessionId="m2")
    failed = [s for s in a.named("notifyStreamStatusEvent") if s["status"] == "FAILED"]
    assert failed == [{"mediaSessionId": "m2", "name": "s", "published": True,
                       "status": "FAILED", "info": "Stream name is already in use"}]
    alice.messageReceived("playStream", [{"mediaSessionId": "p1", "name": "nothing",
                                          "sdp": OFFER}])
    assert a.named("notifyStreamStatusEvent")[-1]["info"] == "Stream not found"


def test_publish_into_a_room_not_joined_fails(server):
    alice, a = connect(server, "alice")
    publish(alice, "s", room="elsewhere")
    [status] = a.named("notifyStreamStatusEvent")
    assert status["status"] == "FAILED"
    assert status["info"] == "not in room 'elsewhere': join it before publishing"


def test_publish_with_bad_fields_fails_that_stream(server):
    alice, a = connect(server, "alice")
    a.take()
    alice.messageReceived("publishStream", [{"mediaSessionId": "m9", "name": "s", "sdp": 5}])
    [status] = a.named("notifyStreamStatusEvent")
    assert (status["mediaSessionId"], status["status"]) == ("m9", "FAILED")
    assert status["info"] == "publishStream.sdp must be a string"
    alice.messageReceived("publishStream", [{"name": "s"}])
    assert a.named("fail")[-1]["info"] == "publishStream.mediaSessionId is required"


def test_player_stopped_when_publisher_stops(server):
    alice, a = connect(server, "alice")
    bob, b = connect(server, "bob")
    command(alice, "join", {"name": "r"})
    publish(alice, "s")
    server.engine.last().listener.mediaStarted()
    bob.messageReceived("playStream", [{"mediaSessionId": "p1", "name": "s", "sdp": OFFER}])
    server.engine.last().listener.mediaStarted()
    assert b.named("notifyStreamStatusEvent")[-1]["status"] == "PLAYING"
    alice.connectionLost("gone")
    assert b.named("notifyStreamStatusEvent")[-1] == {
        "mediaSessionId": "p1", "name": "s", "published": False, "hasVideo": True,
        "hasAudio": True, "status": "STOPPED", "record": False,
        "info": "Stopped by publisher stop"}


def test_media_failure_reports_failed_to_client_and_room(server):
    alice, a = connect(server, "alice")
    bob, b = connect(server, "bob")
    command(alice, "join", {"name": "r"})
    command(bob, "join", {"name": "r"})
    publish(alice, "s")
    server.engine.last().listener.mediaStarted()
    server.engine.last().listener.mediaFailed("Failed by ICE timeout")
    assert a.named("notifyStreamStatusEvent")[-1]["info"] == "Failed by ICE timeout"
    assert b.roomEvents()[-1] == {"roomName": "r", "name": "FAILED",
                                  "info": {"login": "alice", "name": "s"}}
    assert server.streams.published == {}


def test_leave_stops_own_streams_then_late_unpublish_is_quiet(server):
    alice, a = connect(server, "alice")
    command(alice, "join", {"name": "r"})
    publish(alice, "s")
    server.engine.last().listener.mediaStarted()
    a.take()
    command(alice, "leave", {"name": "r"}, "op2")
    frames = a.take()
    assert [f["message"] for f in frames] == ["notifyStreamStatusEvent", "DataStatusEvent"]
    assert frames[0]["data"][0]["status"] == "UNPUBLISHED"
    alice.messageReceived("unPublishStream", [{"mediaSessionId": "m1", "name": "s"}])
    assert a.take() == []
    alice.messageReceived("stopStream", [{"mediaSessionId": "never", "name": "s"}])
    assert a.named("fail")[0]["info"] == "no stream with mediaSessionId 'never'"


def test_no_media_engine_fails_clearly(clock):
    server = RoomServer(Settings(), clock)
    alice, a = connect(server)
    publish(alice, "s", room=None)
    [status] = a.named("notifyStreamStatusEvent")
    assert status["info"] == "media provider 'WebRTC' is not available on this server"


class Source:
    tracks = {"video": "H264", "audio": "AAC"}


def test_transport_published_source_goes_live_in_the_room(server):
    flash, f = connect(server, "flash")
    bob, b = connect(server, "bob")
    command(flash, "join", {"name": "r"})
    command(bob, "join", {"name": "r"})
    stops = []
    # Flash clients name their stream ROOM-LOGIN and send no room: found from the name.
    stream = flash.streams.publishSource("r-flash", Source(), provider="RTMP",
                                         onStop=lambda: stops.append(1))
    assert b.roomEvents("PUBLISHED")[-1]["info"] == {"login": "flash", "name": "r-flash"}
    assert server.streams.live("r-flash") is stream
    bob.messageReceived("playStream", [{"mediaSessionId": "p1", "name": "r-flash", "sdp": OFFER}])
    assert server.engine.last().source is stream.media.source
    flash.connectionLost("gone")
    assert stops == [1]
    assert b.roomEvents("UNPUBLISHED")[-1]["info"] == {"login": "flash", "name": "r-flash"}
    assert b.named("notifyStreamStatusEvent")[-1]["info"] == "Stopped by publisher stop"


def test_transport_published_source_name_in_use(server):
    from wcs.errors import StreamError

    one, _ = connect(server, "one")
    two, _ = connect(server, "two")
    one.streams.publishSource("live1", Source(), provider="RTMP")
    with pytest.raises(StreamError, match="Stream name is already in use"):
        two.streams.publishSource("live1", Source(), provider="RTMP")


def test_stream_observers_see_live_streams_and_may_name_the_recording(server):
    seen = []

    class Recorder:
        def streamStarted(self, stream):
            seen.append(("started", stream.name))
            if stream.request.record:
                stream.recordName = f"stream-x-{stream.name}.mp4"

        def streamEnded(self, stream):
            seen.append(("ended", stream.name))

    class Broken:
        def streamStarted(self, stream):
            raise RuntimeError("recorder bug")

        streamEnded = streamStarted

    server.streamObservers += [Broken(), Recorder()]
    alice, a = connect(server, "alice")
    command(alice, "join", {"name": "r"})
    publish(alice, "s", record=True)
    server.engine.last().listener.mediaStarted()
    [publishing] = [s for s in a.named("notifyStreamStatusEvent") if s["status"] == "PUBLISHING"]
    assert publishing["recordName"] == "stream-x-s.mp4"
    alice.messageReceived("unPublishStream", [{"mediaSessionId": "m1", "name": "s"}])
    assert a.named("notifyStreamStatusEvent")[-1]["status"] == "UNPUBLISHED"
    assert seen == [("started", "s"), ("ended", "s")]


def test_streams_per_connection_are_limited(clock):
    server = RoomServer(Settings({"session_max_streams": 2}), clock)
    server.registerMediaEngine(HeldMediaEngine())
    alice, a = connect(server)
    for i in range(3):
        publish(alice, f"s{i}", room=None, mediaSessionId=f"m{i}")
    failed = [s for s in a.named("notifyStreamStatusEvent") if s["status"] == "FAILED"]
    assert [(s["mediaSessionId"], s["info"]) for s in failed] == [
        ("m2", "too many streams on this connection: at most 2")]
    alice.messageReceived("unPublishStream", [{"mediaSessionId": "m0", "name": "s0"}])
    publish(alice, "s3", room=None, mediaSessionId="m3")
    assert "s3" in server.streams.published
