"""
The media path of a WebRTC publisher, from decrypted packets on: RTP routed
by SSRC (learnt by payload type), RTX unwrapped (video: the codec's payload
type + 1), keyframe detection, forwarding to a player
(with its history for NACKs, answered as RTX), frames assembled for sinks and converted to
FLV as for RTMP players; RTCP routed: sender reports to the publisher's
track, PLI/FIR/NACK to the player. Real MediaTransport (not connected: what
would be sent is dropped), real tracks.

Input: packets as [kind 0=RTP 1=RTCP][u16 length][bytes].
"""

import struct

from aiortc.rtcdtlstransport import RTCCertificate
from twisted.internet.task import Clock
from zope.interface import implementer

from wcs.interfaces import IMediaSink
from wcs.media import rtp, rtx
from wcs.media.ice import IceConnection, PortRange
from wcs.media.source import WebRTCSource
from wcs.media.track import IncomingTrack, Subscription
from wcs.media.transport import MediaTransport
from wcs.rtmp import flv

EXPECTED = ()
MAX_LEN = 8192
PACKET = struct.Struct(">BH")
RTP, RTCP = 0, 1
PAYLOAD_TYPES = {"H264": ("video", 102), "VP8": ("video", 96), "opus": ("audio", 111)}
CLOCK_RATES = {"video": 90000, "audio": 48000}
SUBSCRIBER_SSRC = 0x0000F00D  # the first player's; the seeds' feedback names it
CERTIFICATE = RTCCertificate.generateCertificate()
PORTS = PortRange(0, 0)


@implementer(IMediaSink)
class FLVSink:
    """Frames to FLV bodies, as the RTMP relay does with H.264."""

    def __init__(self):
        self.video = flv.FramesToVideo()

    def writeFrame(self, frame) -> None:
        if frame.codec == "H264":
            self.video.convert(frame, int(frame.pts))

    def sourceEnded(self) -> None:
        pass


def packets(data: bytes):
    pos = 0
    while pos + PACKET.size <= len(data):
        kind, size = PACKET.unpack_from(data, pos)
        pos += PACKET.size
        yield kind & 1, data[pos:pos + size]
        pos += size


def complete(coroutine) -> None:
    """Run a receive handler of the transport: they never wait on anything."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise AssertionError("a packet handler waited")


def fuzz(data: bytes) -> None:
    transport = MediaTransport(IceConnection(PORTS, []), CERTIFICATE)
    clock = Clock()  # the tracks' NACK and keyframe timers
    sources = []
    for number, (codec, (kind, payloadType)) in enumerate(PAYLOAD_TYPES.items()):
        track = IncomingTrack(transport, kind, codec, CLOCK_RATES[kind], payloadType, None,
                              clock)
        transport.receiversByType[payloadType] = track
        subscription = Subscription(track, transport, SUBSCRIBER_SSRC + number, payloadType)
        if kind == "video":
            transport.receiversByType[payloadType + 1] = rtx.RtxReceiver(
                track, payloadType + 1, None)
            subscription.rtx = rtx.RtxSender(payloadType + 1, 0xBEEF + number)
        subscription.attach()
        source = WebRTCSource(codec)
        source.addTrack(track)
        source.attach(FLVSink())
        sources.append(source)
    for kind, packet in packets(data):
        if kind == RTP:
            complete(transport._handle_rtp_data(packet, 0))
            if len(packet) > 12:
                rtp.frameIsKeyframe("VP8", packet[12:])
                rtp.h264IsKeyframe(packet[12:])
        else:
            complete(transport._handle_rtcp_data(packet))
        clock.advance(0.02)  # a NACK batch, a held keyframe request
    for source in sources:
        for track in source.incoming.values():
            track.receptionReport()
        source.end()
