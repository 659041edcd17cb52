"""
RTX (RFC 4588, wcs/media/rtx.py): wrapping and unwrapping, the offer/answer
with and without it, and its use on both legs, sans I/O on a
L{twisted.internet.task.Clock}. tests/media/test_rtx_peers.py runs it with
aiortc peers.
"""

from types import SimpleNamespace

from aiortc import sdp
from twisted.internet.task import Clock

from tests.fuzz.target_sdp import FINGERPRINTS, iceAgent
from tests.media.peers import Listener, Request, asyncTest, makeEngine
from tests.media.test_feedback import SIZE, _packet, _player, _seqs, _trackWithPlayer
from tests.media.test_rtp import _Wire
from wcs.media import negotiate, rtp, rtx
from wcs.media.feedback import RoundTrip
from wcs.media.track import IncomingTrack, Subscription

PREFS = {"video": ["H264", "VP8"], "audio": ["opus"]}


def _offer(direction: str, withRtx: bool, ssrcs: bool = True) -> str:
    """A browser-shaped offer: H.264 (102) and VP8 (96), each with its rtx."""
    fmt = "102 103 96 97" if withRtx else "102 96"
    lines = ["v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0",
             "a=msid-semantic:WMS *",
             f"m=video 9 UDP/TLS/RTP/SAVPF {fmt}", "c=IN IP4 0.0.0.0", "a=mid:0",
             f"a={direction}", "a=rtcp-mux", "a=ice-ufrag:abcd", "a=ice-pwd:abcdabcdabcdabcdabcdabcd",
             "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass",
             "a=rtpmap:102 H264/90000", "a=rtcp-fb:102 nack", "a=rtcp-fb:102 nack pli",
             "a=fmtp:102 packetization-mode=1;profile-level-id=42e01f",
             "a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 nack"]
    if withRtx:
        lines += ["a=rtpmap:103 rtx/90000", "a=fmtp:103 apt=102",
                  "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96;rtx-time=500"]
    if ssrcs and direction == "sendonly":
        if withRtx:
            lines.append("a=ssrc-group:FID 1111 2222")
        lines += ["a=ssrc:1111 cname:x"] + (["a=ssrc:2222 cname:x"] if withRtx else [])
    return "\r\n".join(lines) + "\r\n"


def _answer(offer, sections) -> sdp.MediaDescription:
    agent = iceAgent()
    transports = {id(s): agent for s in sections if not s.rejected}
    text = negotiate.buildAnswer(offer, sections, transports, FINGERPRINTS,
                                 negotiate.dtlsRole(offer), "cname", "stream")
    [media] = sdp.SessionDescription.parse(text).media
    return media


# Wrapping

def test_wrapUnwrapRoundTrip():
    """The RTX packet: own PT, SSRC and number; marker, timestamp, padding and payload kept."""
    payload = b"\x10\x01payload" + b"\x00\x00\x03"  # three bytes of padding
    original = rtp.HEADER.pack(0x80 | rtp.PADDING_BIT, 0x80 | 100, 4660, 123456, 0xAAAA) + payload
    wrapped = rtx.wrap(original, 101, 7, 0xBBBB)
    first, second, seq, timestamp, ssrc = rtp.HEADER.unpack_from(wrapped)
    assert (first, second, seq, timestamp, ssrc) == (0x80 | rtp.PADDING_BIT, 0x80 | 101, 7,
                                                     123456, 0xBBBB)
    assert wrapped[12:14] == (4660).to_bytes(2, "big") and wrapped[14:] == payload
    assert rtx.unwrap(wrapped, 100, 0xAAAA) == original


def test_unwrapKeepsCsrcAndExtension():
    csrc = (77).to_bytes(4, "big")
    extension = b"\xbe\xde\x00\x01" + b"\x10\xff\x00\x00"
    header = rtp.HEADER.pack(0x80 | 0x10 | 1, 97, 9, 5000, 0xBBBB)
    data = header + csrc + extension + b"\x01\x02" + b"media"
    original = rtx.unwrap(data, 96, 0xAAAA)
    assert rtp.HEADER.unpack_from(original) == (0x80 | 0x10 | 1, 96, 0x0102, 5000, 0xAAAA)
    assert original[12:24] == csrc + extension and original[24:] == b"media"


def test_unwrapNothingInIt():
    """Bandwidth probes (padding only), a payload without OSN, a broken extension: None."""
    probe = rtp.HEADER.pack(0x80 | rtp.PADDING_BIT, 97, 1, 0, 1) + bytes(199) + b"\xc8"
    assert rtx.unwrap(probe, 96, 2) is None
    assert rtx.unwrap(rtp.HEADER.pack(0x80, 97, 1, 0, 1) + b"\x01", 96, 2) is None
    broken = rtp.HEADER.pack(0x90, 97, 1, 0, 1) + b"\xbe\xde\x00\x09" + b"\x00\x01"
    assert rtx.unwrap(broken, 96, 2) is None


# Offer/answer

def test_publisherOfferWithRtx():
    offer = negotiate.parseOffer(_offer("sendonly", withRtx=True))
    [section] = negotiate.planPublish(offer, PREFS)
    assert section.name == "H264" and section.ssrc == 1111 and section.rtxSsrc == 2222
    assert (section.rtx.payloadType, section.rtx.parameters) == (103, {"apt": 102})
    media = _answer(offer, [section])
    assert media.fmt == [102, 103]
    assert [(c.name, c.payloadType, c.parameters) for c in media.rtp.codecs] == [
        ("H264", 102, {"packetization-mode": "1", "profile-level-id": "42e01f"}),
        ("rtx", 103, {"apt": 102})]
    assert media.ssrc == [] and media.ssrc_group == []  # we send nothing to a publisher


def test_publisherOfferWithRtxEchoesItsRtxTime():
    offer = negotiate.parseOffer(_offer("sendonly", withRtx=True))
    [section] = negotiate.planPublish(offer, {"video": ["VP8"]})
    assert section.rtx.payloadType == 97
    assert section.rtx.parameters == {"apt": 96, "rtx-time": 500}


def test_publisherOfferWithoutFidGroup():
    """RTX offered, no SSRC announced: its stream is learned by payload type."""
    offer = negotiate.parseOffer(_offer("sendonly", withRtx=True, ssrcs=False))
    [section] = negotiate.planPublish(offer, PREFS)
    assert section.rtx.payloadType == 103 and section.rtxSsrc is None and section.ssrc is None


def test_publisherOfferWithSsrcsOutOfRange():
    """aiortc reads any integer as an SSRC; one no packet can carry is not
    believed: the streams are learned by payload type (found by the rtx fuzz target)."""
    for media, rtxSsrc in (("-1", "2222"), ("1111", "-7"), ("4294967296", "99999999999")):
        text = _offer("sendonly", withRtx=True).replace(
            "FID 1111 2222", f"FID {media} {rtxSsrc}").replace("a=ssrc:1111 ", f"a=ssrc:{media} ")
        [section] = negotiate.planPublish(negotiate.parseOffer(text), PREFS)
        assert section.ssrc == (1111 if media == "1111" else None)
        assert section.rtxSsrc == (2222 if rtxSsrc == "2222" else None)


def test_offersWithoutRtx():
    """No rtx offered: none answered, retransmissions stay plain."""
    for direction, plan in (("sendonly", lambda o: negotiate.planPublish(o, PREFS)),
                            ("recvonly", lambda o: negotiate.planPlay(o, {"video": "H264"},
                                                                      PREFS))):
        offer = negotiate.parseOffer(_offer(direction, withRtx=False))
        [section] = plan(offer)
        assert section.rtx is None and section.rtxSsrc is None
        media = _answer(offer, [section])
        assert media.fmt == [102] and [c.name for c in media.rtp.codecs] == ["H264"]
        assert media.ssrc_group == []


def test_playerOfferWithRtx():
    """Our answer: the rtx of the forwarded codec, our rtx-time, an FID group media first."""
    offer = negotiate.parseOffer(_offer("recvonly", withRtx=True))
    [section] = negotiate.planPlay(offer, {"video": "VP8"}, PREFS)
    assert section.name == "VP8" and section.rtxSsrc not in (None, section.ssrc)
    media = _answer(offer, [section])
    assert media.fmt == [96, 97]
    assert media.rtp.codecs[1].parameters == {"apt": 96, "rtx-time": str(rtx.RTX_TIME)}
    assert [s.ssrc for s in media.ssrc] == [section.ssrc, section.rtxSsrc]
    [group] = media.ssrc_group
    assert (group.semantic, group.items) == ("FID", [section.ssrc, section.rtxSsrc])


def test_rtxOfAnotherCodecIgnored():
    """An rtx whose apt names a codec we did not choose is not answered."""
    text = _offer("recvonly", withRtx=True).replace("a=fmtp:97 apt=96;rtx-time=500\r\n",
                                                    "a=fmtp:97 apt=102\r\n")
    offer = negotiate.parseOffer(text)
    [section] = negotiate.planPlay(offer, {"video": "VP8"}, PREFS)
    assert section.name == "VP8" and section.rtx is None


# Player leg

def test_playerNackAnsweredWithRtx():
    """A NACK for a packet in the history: resent on the RTX stream, budgets as before."""
    track, wire, subscription = _player()
    subscription.rtx = rtx.RtxSender(101, 0x5678)
    for i in range(50):
        track.fanout(0, i == 49 and 0x80, i, i * 3000, bytes([i]) * SIZE, i == 0)
    sent = list(wire.sent)
    wanted = [_seqs(wire)[10], _seqs(wire)[49]]
    wire.sent.clear()
    subscription.nackReceived(wanted)
    subscription.nackReceived(wanted)  # within the RTT: not again
    assert len(wire.sent) == 2 and subscription.retransmitTooSoon == 2
    first = rtp.HEADER.unpack_from(wire.sent[0])
    assert first[1] == 101 and first[4] == 0x5678
    assert rtp.HEADER.unpack_from(wire.sent[1])[1] == 0x80 | 101  # the marker kept
    assert (rtp.HEADER.unpack_from(wire.sent[1])[2] - first[2]) & 0xFFFF == 1  # own numbers
    for data, original in zip(wire.sent, (sent[10], sent[49])):
        assert rtx.unwrap(data, 100, 0x1234) == original
    track.clock.advance(RoundTrip.DEFAULT)
    subscription.nackReceived(wanted[:1])
    assert subscription.retransmitted == 3 and subscription.rtx.packets == 3


# Publisher leg

def test_publisherRtxFillsGap():
    """
    A packet lost on the way in comes back on the RTX stream: the gap is
    filled (no more NACKs, a round-trip sample), the player gets it under
    its own numbering, and padding probes are counted and dropped.
    """
    clock, wire = Clock(), _Wire()
    wire.rtcpSsrc = 99
    track = IncomingTrack(wire, "video", "VP8", 90000, 96, 5, clock=clock)
    receiver = rtx.RtxReceiver(track, 97, 6)
    player = Subscription(track, _Wire(), ssrc=0x1234, payloadType=100)
    player.attach()
    for seq in [*range(1, 11), 12]:
        track.rtpReceived(_packet(seq, seq == 1))
        clock.advance(0.01)
    assert track.missing == {11}
    clock.advance(0.03)  # the NACK goes
    assert track.nacks.nacksSent == 1
    clock.advance(0.05)
    resent = rtx.wrap(_packet(11), 97, 500, 6)
    receiver.rtpReceived(rtp.HEADER.pack(0xA0, 97, 501, 0, 6) + bytes(99) + b"\x64")
    receiver.rtpReceived(resent)
    assert track.missing == set() and track.nacks.retransmitsReceived == 1
    assert track.nacks.rtt.samples == 1
    assert (receiver.packets, receiver.padding) == (2, 1)
    forwarded = player.transport.sent[-1]
    assert forwarded[12:] == _packet(11)[12:]
    assert rtp.SEQ_TS.unpack_from(forwarded, 2)[0] == (11 + player.seqDelta) & 0xFFFF
    # Packets resent unasked (a browser's probe with old payloads, or a
    # second copy): counted, not forwarded again.
    count = len(player.transport.sent)
    receiver.rtpReceived(rtx.wrap(_packet(10), 97, 502, 6))
    receiver.rtpReceived(rtx.wrap(_packet(11), 97, 503, 6))
    assert receiver.unasked == 2 and len(player.transport.sent) == count
    clock.advance(1)
    assert track.nacks.nacksSent == 1  # nothing more asked for


def _lateOnTheMediaSsrc(after: float) -> tuple[IncomingTrack, list[int]]:
    """
    An RTX publisher's packet 51 is missing and NACKed; it comes late by
    itself on the media SSRC C{after} s after it went missing (the player's
    budget has credit to spare). Returns the track and the numbers the
    player was sent (ours, less its offset).
    """
    clock, _, track, subscription, player = _trackWithPlayer()
    track.rtx = rtx.RtxReceiver(track, 97, 6)
    for seq in [*range(1, 51), 52]:
        track.rtpReceived(_packet(seq, seq == 1))
        clock.advance(0.01)
    clock.advance(after - 0.01)
    assert track.nacks.nacksSent >= 1 and track.missing == {51}
    track.rtpReceived(_packet(51))
    clock.advance(track.REPEAT_AFTER)
    sent = [(seq - subscription.seqDelta) & 0xFFFF for seq in _seqs(player)]
    return track, sent


def test_aPacketLateByItselfARoundTripAfterItsNackGoesTwice():
    """
    A packet that comes by itself on the media SSRC after our NACK for it
    went and a round trip after it went missing reached the players as
    late as a repair: it goes to them twice (C{media_repeat_repairs}), as
    a repair does. In a traced `mobile` run one came 0.5 s after its gap,
    and its one copy was lost on a player's link: a freeze.
    """
    track, sent = _lateOnTheMediaSsrc(RoundTrip.DEFAULT + 0.01)
    assert sent[-3:] == [52, 51, 51]
    assert track.nacks.reordered == track.nacks.lateAsRepairs == track.repairsRepeated == 1
    assert track.nacks.rtt.samples == 0  # no answer of the publisher's: no round trip


def test_aPacketLateByLessThanARoundTripGoesOnce():
    """Late by itself soon after its NACK: reordered, sent once."""
    track, sent = _lateOnTheMediaSsrc(RoundTrip.DEFAULT - 0.03)
    assert sent[-2:] == [52, 51] and sent.count(51) == 1
    assert track.nacks.reordered == 1 and track.nacks.lateAsRepairs == 0
    assert track.repairsRepeated == 0


def test_rtxStreamLearnedByPayloadType():
    """No FID group: the first SSRC sending the rtx payload type is the RTX stream."""
    from wcs.media.liveness import Silence
    from wcs.media.transport import MediaTransport

    class _Transport(MediaTransport):
        def __init__(self):  # routing only: no ICE, no DTLS
            self.receivers, self.receiversByType = {}, {}
            self.transportWide = None
            self.peer = self.rtp = Silence(Clock(), 0)

    transport = _Transport()
    track = _Counting()
    track.nacks.missing[11] = [0, 0, 1]
    receiver = rtx.RtxReceiver(track, 97, None)
    transport.receiversByType[97] = receiver
    transport.rtpReceived(rtx.wrap(_packet(11), 97, 1, 0xCAFE))
    assert receiver.ssrc == 0xCAFE and transport.receivers[0xCAFE] is receiver
    assert [rtp.SEQ_TS.unpack_from(d, 2)[0] for d in track.got] == [11] and track.repaired


class _Counting:
    payloadType, ssrc = 96, 5

    def __init__(self):
        self.got = []
        missing = {}
        self.nacks = SimpleNamespace(
            missing=missing, received=lambda seq, retransmission: bool(missing.pop(seq)))

    def rtpReceived(self, data, repaired=False):
        self.got.append(data)
        self.repaired = repaired



@asyncTest(timeout=30)
async def test_fidGroupNamingMediaSsrcNotBelieved():
    """An offer whose FID group names the media SSRC as RTX: media still reaches the track."""
    engine = makeEngine()
    text = _offer("sendonly", withRtx=True).replace("FID 1111 2222", "FID 1111 1111")
    session = engine.publish(Request("hostile", text), Listener())
    try:
        track = session.source.incoming["video"]
        [transport] = session.uniqueTransports
        assert transport.receivers[1111] is track
        assert track.rtx.ssrc is None and transport.receiversByType[103] is track.rtx
    finally:
        session.stop()
        await engine.close()
