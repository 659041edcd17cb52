"""Room lifetime and events, with an injected clock."""

import pytest
from twisted.internet.task import Clock

from tests.support.channels import RecordingChannel
from wcs.errors import RoomError
from wcs.room.rooms import Rooms


class Member(RecordingChannel):
    pass


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def rooms(clock):
    return Rooms(clock, idleTimeout=60.0)


class Observer:
    def __init__(self):
        self.started, self.ended = [], []

    def roomStarted(self, room):
        self.started.append(room.name)

    def roomEnded(self, room):
        self.ended.append(room.name)


def test_first_join_makes_the_room_last_leave_ends_it(rooms):
    observer = Observer()
    rooms.observers.append(observer)
    alice = rooms.join("r", "alice", Member())
    bob = rooms.join("r", "bob", Member())
    assert list(rooms.get("r").participants) == ["alice", "bob"]
    rooms.leave(alice)
    assert rooms.get("r") is not None
    rooms.leave(bob)
    assert rooms.get("r") is None
    assert observer.started == ["r"] and observer.ended == ["r"]


def test_joined_and_left_go_to_the_others(rooms):
    a, b = Member(), Member()
    alice = rooms.join("r", "alice", a)
    rooms.join("r", "bob", b)
    assert a.roomEvents("JOINED") == [{"roomName": "r", "name": "JOINED", "info": "bob"}]
    assert b.roomEvents("JOINED") == []
    rooms.leave(alice)
    assert b.roomEvents("LEFT") == [{"roomName": "r", "name": "LEFT", "info": "alice"}]


def test_state_lists_logins_and_streams(rooms):
    alice = rooms.join("r", "alice", Member())
    rooms.join("r", "bob", Member())
    rooms.announceStream(alice, "r-alice-1a2b")
    rooms.announceStream(alice, "r-alice-3c4d-screen")
    room = rooms.get("r")
    assert room.state("carol") == [
        {"login": "alice", "name": "r-alice-1a2b"},
        {"login": "alice", "name": "r-alice-3c4d-screen"},
        "bob",
    ]
    assert room.state("bob") == [{"login": "alice", "name": "r-alice-1a2b"},
                                 {"login": "alice", "name": "r-alice-3c4d-screen"}]


def test_published_and_unpublished_go_to_the_others_only(rooms):
    a, b = Member(), Member()
    alice = rooms.join("r", "alice", a)
    rooms.join("r", "bob", b)
    rooms.announceStream(alice, "s1")
    rooms.withdrawStream(alice, "s1")
    rooms.withdrawStream(alice, "s1")  # twice: once only
    assert [e["name"] for e in b.roomEvents()] == ["PUBLISHED", "UNPUBLISHED"]
    assert b.roomEvents("PUBLISHED")[0]["info"] == {"login": "alice", "name": "s1"}
    assert a.roomEvents("PUBLISHED") == []
    rooms.announceStream(alice, "s2")
    rooms.withdrawStream(alice, "s2", failed=True)
    assert b.roomEvents()[-1] == {"roomName": "r", "name": "FAILED",
                                  "info": {"login": "alice", "name": "s2"}}


def test_leaving_withdraws_streams_before_left(rooms):
    b = Member()
    alice = rooms.join("r", "alice", Member())
    rooms.join("r", "bob", b)
    rooms.announceStream(alice, "s1")
    rooms.leave(alice)
    assert [e["name"] for e in b.roomEvents()] == ["PUBLISHED", "UNPUBLISHED", "LEFT"]


def test_login_is_unique_but_free_again_right_after_leave(rooms):
    first = rooms.join("r", "alice", Member())
    rooms.join("r", "keeper", Member())
    with pytest.raises(RoomError, match="already has a participant with login 'alice'"):
        rooms.join("r", "alice", Member())
    for _ in range(100):
        rooms.leave(first)
        first = rooms.join("r", "alice", Member())
    assert list(rooms.get("r").participants) == ["keeper", "alice"]


def test_same_member_joining_twice_is_the_same_participant(rooms):
    member = Member()
    assert rooms.join("r", "alice", member) is rooms.join("r", "alice", member)


def test_participant_limit(clock):
    rooms = Rooms(clock, maxParticipants=2)
    rooms.join("r", "a", Member())
    rooms.join("r", "b", Member())
    with pytest.raises(RoomError, match="Room 'r' is full: at most 2 participants"):
        rooms.join("r", "c", Member())
    rooms.join("other", "c", Member())


def test_room_count_limit_counts_idle_rooms_too(clock):
    rooms = Rooms(clock, idleTimeout=60.0, maxRooms=2)
    a = rooms.join("a", "x", Member())
    rooms.join("b", "x", Member())
    message = "Room 'c' cannot be made: the server has its maximum of 2 rooms"
    with pytest.raises(RoomError, match=message):
        rooms.join("c", "x", Member())
    rooms.join("b", "y", Member())  # joining an existing room is no new room
    rooms.disconnect(a)  # "a" lives on, idle
    with pytest.raises(RoomError, match=message):
        rooms.join("c", "x", Member())
    clock.advance(60)  # "a" ends: room for one more
    rooms.join("c", "x", Member())
    assert sorted(rooms.rooms) == ["b", "c"]


def test_default_settings_bound_rooms_and_participants():
    from wcs.config import Settings
    from wcs.server import RoomServer

    server = RoomServer(Settings(), Clock())
    assert server.rooms.maxParticipants == 100 and server.rooms.maxRooms == 1000


def test_room_names_and_logins_are_logged_quoted(rooms):
    from twisted.logger import formatEvent, globalLogPublisher

    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        rooms.join("r\nforged line", "bad\nlogin", Member())
    finally:
        globalLogPublisher.removeObserver(events.append)
    lines = [formatEvent(e) for e in events]
    assert "'bad\\nlogin' joined 'r\\nforged line'" in lines
    assert not any("\n" in line for line in lines)


def test_disconnect_of_last_keeps_room_for_idle_timeout(rooms, clock):
    observer = Observer()
    rooms.observers.append(observer)
    alice = rooms.join("r", "alice", Member(), record=True)
    rooms.disconnect(alice)
    room = rooms.get("r")
    assert room is not None and not room.participants
    clock.advance(59.9)
    assert rooms.get("r") is room
    clock.advance(0.2)
    assert rooms.get("r") is None and observer.ended == ["r"]


def test_rejoin_within_idle_timeout_resumes_the_room(rooms, clock):
    alice = rooms.join("r", "alice", Member(), record=True)
    room = rooms.get("r")
    rooms.disconnect(alice)
    clock.advance(30)
    rooms.join("r", "alice", Member())
    clock.advance(60)
    assert rooms.get("r") is room and room.record
    assert not clock.getDelayedCalls()


def test_disconnect_with_others_present_is_a_leave(rooms, clock):
    b = Member()
    alice = rooms.join("r", "alice", Member())
    rooms.join("r", "bob", b)
    rooms.disconnect(alice)
    assert b.roomEvents("LEFT")[0]["info"] == "alice"
    assert not clock.getDelayedCalls()


def test_zero_idle_timeout_ends_at_once(clock):
    rooms = Rooms(clock, idleTimeout=0)
    rooms.disconnect(rooms.join("r", "alice", Member()))
    assert rooms.get("r") is None


def test_chat_is_delivered_exactly(rooms):
    b = Member()
    alice = rooms.join("r", "alice", Member())
    rooms.join("r", "bob", b)
    text = "Привет, 你好, 🎉👋🏽 <b>x</b> \"q\" \\ \n"
    rooms.chat(alice, "bob", text)
    assert b.roomEvents("MESSAGE") == [
        {"roomName": "r", "name": "MESSAGE", "info": {"from": "alice", "text": text}}]
    with pytest.raises(RoomError, match="has no participant with login 'nobody'"):
        rooms.chat(alice, "nobody", "x")


def test_a_failing_observer_does_not_stop_the_others(rooms):
    class Broken(Observer):
        def roomEnded(self, room):
            raise RuntimeError("boom")

    good = Observer()
    rooms.observers += [Broken(), good]
    rooms.leave(rooms.join("r", "a", Member()))
    assert good.ended == ["r"]


def test_dissolve_ends_the_room_with_no_event_and_tells_observers(rooms):
    """A cluster's split moves the members elsewhere: nobody hears a LEFT here."""
    observer = Observer()
    observer.left = []
    observer.participantLeft = lambda p: observer.left.append(p.login)
    rooms.observers.append(observer)
    a, b = Member(), Member()
    alice = rooms.join("r", "alice", a)
    rooms.join("r", "bob", b)
    rooms.announceStream(alice, "r-alice")
    a.take(), b.take()
    assert [p.login for p in rooms.dissolve(rooms.get("r"))] == ["alice", "bob"]
    assert rooms.get("r") is None and observer.ended == ["r"]
    assert observer.left == ["alice", "bob"]
    assert a.frames == [] and b.frames == []
    assert alice.streams == {"r-alice": None}  # the mover carries what it announced
    # A late leave of a dissolved participant changes nothing.
    rooms.leave(alice)
    assert a.frames == [] and b.frames == [] and observer.ended == ["r"]
