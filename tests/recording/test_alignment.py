"""
Aligned recordings (C{enable_empty_shift_writer}) and a room's mix line up on
the moment each file starts, its first video keyframe, not on when its
recording began: that keyframe may come a connection set-up or a PLI's round
trip later, and not as late for every stream. On a task.Clock, with the
core's test channels and a source the test feeds.
"""

from fractions import Fraction

from twisted.internet.task import Clock
from zope.interface import implementer

from tests.support.channels import HeldMediaEngine
from tests.test_session import command, connect, publish
from wcs.admin import Admin
from wcs.config import Settings
from wcs.frames import EncodedFrame
from wcs.interfaces import IMediaSource
from wcs.recording import Recorder, StartWatchingSink
from wcs.server import RoomServer

# An IDR slice's start code and header: the TS muxer wants start codes.
KEY = b"\x00\x00\x00\x01\x65\x88\x84\x00"
DELTA = b"\x00\x00\x00\x01\x41\x9a\x00\x00"


def video(pts: int, keyframe: bool) -> EncodedFrame:
    return EncodedFrame("video", "H264", KEY if keyframe else DELTA, pts, Fraction(1, 90000),
                        keyframe=keyframe)


def audio(pts: int) -> EncodedFrame:
    return EncodedFrame("audio", "opus", b"\xfc\xff\xfe", pts, Fraction(1, 48000))


@implementer(IMediaSource)
class FedSource:
    """A published stream's frames, as the test hands them in."""

    def __init__(self, tracks: dict[str, str]):
        self.tracks = tracks
        self.sinks: list = []
        self.keyframeRequests = 0

    def attach(self, sink) -> None:
        self.sinks.append(sink)

    def detach(self, sink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)

    def requestKeyframe(self) -> None:
        self.keyframeRequests += 1

    def feed(self, frame: EncodedFrame) -> None:
        for sink in list(self.sinks):
            sink.writeFrame(frame)


class Frames:
    """An IMediaSink keeping what it got."""

    def __init__(self):
        self.frames: list = []

    def writeFrame(self, frame) -> None:
        self.frames.append(frame)

    def sourceEnded(self) -> None:
        pass


def inline(job):
    job()


def watching(video: bool):
    starts, kept = [], Frames()
    sink = StartWatchingSink("test", kept, video, lambda: starts.append(len(kept.frames)),
                             callInThread=inline, callFromThread=inline)
    return sink, starts, kept


def test_start_is_told_once_at_the_first_video_keyframe():
    sink, starts, kept = watching(video=True)
    for frame in (audio(0), video(0, False), audio(960), video(3000, True), video(6000, True)):
        sink.writeFrame(frame)
    assert starts == [3]  # told before the keyframe, the fourth frame, is passed on
    assert len(kept.frames) == 5


def test_start_of_a_stream_without_video_is_its_first_frame():
    sink, starts, _ = watching(video=False)
    for pts in (0, 960, 1920):
        sink.writeFrame(audio(pts))
    assert starts == [0]


def test_aligned_files_and_mix_parts_start_at_their_first_keyframe(tmp_path):
    """
    Alice's recording begins first but her keyframe comes last: hers is
    padded, Bob's is not, and each mix part starts at its keyframe.
    """
    clock = Clock()
    server = RoomServer(Settings({"ws_ping_interval": 0}), clock)
    engine = HeldMediaEngine()
    server.registerMediaEngine(engine)
    recorder = Recorder(tmp_path, clock, Settings({"enable_empty_shift_writer": "true",
                                                  "record_min_free_mb": 0}))
    server.streamObservers.append(recorder)
    sources = {}
    for login, mediaSessionId in (("alice", "m1"), ("bob", "m2")):
        session, _ = connect(server, login)
        command(session, "join", {"name": "r", "record": True})
        publish(session, login, mediaSessionId=mediaSessionId)
        sources[login] = engine.last().source = FedSource({"video": "H264"})
        engine.last().listener.mediaStarted()  # the recording begins: alice at 0, bob at 1
        if login == "alice":
            clock.advance(1)
    assert all(source.keyframeRequests for source in sources.values())
    sources["alice"].feed(video(0, False))  # not a start: the file waits for a keyframe
    clock.advance(0.2)  # 1.2
    sources["bob"].feed(video(0, True))
    clock.advance(0.3)  # 1.5
    sources["alice"].feed(video(3000, True))
    targets = {login: recorder.writers[id(stream)][2] for login in ("alice", "bob")
               for stream in Admin(server).streams() if stream.name == login}
    assert recorder.shifts[targets["bob"]] == 0.0
    assert abs(recorder.shifts[targets["alice"]] - 0.3) < 1e-9
    [mix] = recorder.mixes.values()
    starts = {part.login: part.start for part in mix.parts}
    assert abs(starts["alice"] - 1.5) < 1e-9 and abs(starts["bob"] - 1.2) < 1e-9
    recorder.close()
