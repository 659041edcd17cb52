"""
A stream's last frames at its end (wcs/media/source.py, L{heldFrames}):
aiortc's jitter buffer cuts a frame only when a packet of the next one
arrives, so the frame a publisher sent last is still held when it
unpublishes. The source's end gives the sinks every complete frame held,
before it tells them of the end, and drops the incomplete ones.
"""

from twisted.internet.task import Clock
from zope.interface import implementer

from tests.media.test_rtp import _Wire
from wcs.interfaces import IMediaSink
from wcs.media import rtp
from wcs.media.internals import JitterBuffer
from wcs.media.source import FrameAssembler, WebRTCSource
from wcs.media.track import IncomingTrack

TICK = 6000  # RTP time of one frame at 15 fps


@implementer(IMediaSink)
class Events:
    """What a sink was given, in order: the frames' payloads, then 'end'."""

    def __init__(self):
        self.seen = []

    def writeFrame(self, frame):
        self.seen.append(frame.data)

    def sourceEnded(self):
        self.seen.append("end")

    close = sourceEnded  # a recording's writer is closed


def vp8(seq: int, frame: int, body: bytes, first: bool = True, marker: bool = True,
        timestamp: int | None = None) -> bytes:
    """A VP8 packet of frame number C{frame}: its descriptor says whether it starts it."""
    second = 96 | (rtp.MARKER_BIT if marker else 0)
    ts = frame * TICK if timestamp is None else timestamp
    return rtp.HEADER.pack(0x80, second, seq & 0xFFFF, ts, 5) + \
        (b"\x10" if first else b"\x00") + body


TWO_FRAMES = (vp8(1, 1, b"f1"), vp8(2, 2, b"f2"))


def wire() -> _Wire:
    wire = _Wire()
    wire.rtcpSsrc = 99  # for the keyframe request a sink's attaching sends
    return wire


def publisher(*packets: bytes):
    """A source with one VP8 track and a sink attached (so frames are assembled), and
    C{packets} received."""
    track = IncomingTrack(wire(), "video", "VP8", 90000, 96, 5, clock=Clock())
    source = WebRTCSource("stream")
    source.addTrack(track)
    sink = Events()
    source.attach(sink)
    for packet in packets:
        track.rtpReceived(packet)
    return source, track, sink


def test_theLastFrameIsWrittenBeforeTheEnd():
    """Frame 3, whose packets are all there, reaches the sink before the end."""
    source, track, sink = publisher(*TWO_FRAMES, vp8(3, 3, b"f3a", marker=False),
                                    vp8(4, 3, b"f3b", first=False))
    assert sink.seen == [b"f1", b"f2"]  # aiortc waits for frame 4's first packet
    source.end()
    assert sink.seen == [b"f1", b"f2", b"f3af3b", "end"]


def test_anIncompleteLastFrameIsDropped():
    """Frame 3's marker packet never came: the sink never gets half a frame."""
    source, track, sink = publisher(*TWO_FRAMES, vp8(3, 3, b"f3a", marker=False))
    assembler = track.frameListener
    assert assembler.flush() == (0, 1, 1)  # frame 3 dropped, its 1 packet
    assert sink.seen == [b"f1", b"f2"]
    assert assembler.flush() == (0, 0, 0)  # each frame once
    source.end()
    assert sink.seen == [b"f1", b"f2", "end"]


def test_framesBehindAHoleAreDropped():
    """Frame 2 lost its second packet: it and frame 3 after it are not complete."""
    source, track, sink = publisher(vp8(1, 1, b"f1"), vp8(2, 2, b"f2a", marker=False),
                                    vp8(4, 3, b"f3"))  # 3 lost
    assert track.frameListener.flush() == (0, 2, 2)
    assert sink.seen == [b"f1"]


def test_framesHeldBehindAFilledHoleAreAllWritten():
    """
    aiortc gives one frame per packet that arrives: after a hole is filled
    the frames behind it are still held; the end gives them all, in order.
    """
    source, track, sink = publisher(vp8(1, 1, b"f1a", marker=False), vp8(3, 2, b"f2"),
                                    vp8(4, 3, b"f3"),
                                    vp8(2, 1, b"f1b", first=False))  # repaired last
    assert sink.seen == [b"f1af1b"]
    source.end()
    assert sink.seen == [b"f1af1b", b"f2", b"f3", "end"]


def test_paddingAfterTheMarkerDoesNotMakeTheFrameIncomplete():
    padding = rtp.HEADER.pack(0x80, 96, 3, 2 * TICK, 5)  # no payload
    source, track, sink = publisher(*TWO_FRAMES, padding)
    source.end()
    assert sink.seen == [b"f1", b"f2", "end"]


def test_theFlushLooksAtNoMoreThanTheBuffer():
    """
    A publisher that sends a frame of more packets than the buffer holds,
    none with the marker bit: aiortc drops what does not fit, and the end
    looks at no more than its capacity and gives nothing of it.
    """
    source, track, sink = publisher(vp8(1, 1, b"f1"))
    capacity = JitterBuffer(capacity=512).capacity
    for seq in range(2, 2 + capacity * 2):
        track.rtpReceived(vp8(seq, 2, b"x", first=seq == 2, marker=False))
    written, dropped, packets = track.frameListener.flush()
    assert (written, dropped) == (0, 1) and 0 < packets <= capacity
    source.end()
    assert sink.seen == [b"f1", "end"]


def test_audioIsGivenPacketByPacket():
    """Nothing of an audio track waits: its last packet is already with the sinks."""
    track = IncomingTrack(wire(), "audio", "opus", 48000, 111, 6, clock=Clock())
    source = WebRTCSource("stream")
    source.addTrack(track)
    sink = Events()
    source.attach(sink)
    for seq in range(1, 4):
        track.rtpReceived(rtp.HEADER.pack(0x80, 111, seq, seq * 960, 6) + bytes([seq]))
    assert isinstance(track.frameListener, FrameAssembler)
    assert track.frameListener.flush() == (0, 0, 0)
    source.end()
    assert sink.seen == [b"\x01", b"\x02", b"\x03", "end"]
