"""
Hostile offers and clients: what an offer can make the engine bind and
parse before ICE, and how the media port range is shared out.
"""

import asyncio
import random

import pytest

from tests.media.offers import answeredPorts, craftedOffer
from tests.media.peers import Listener, Request, asyncTest, makeEngine
from tests.support.wait import waitUntil
from wcs.config import Settings
from wcs.errors import StreamError
from wcs.media import limits, negotiate

PREFS = {"video": ["H264", "VP8"], "audio": ["opus"]}


def socketsOf(session) -> int:
    return sum(t.ice.socketCount() for t in session.uniqueTransports)


# The plan: which m-lines get a transport

def test_mlinesPastTheCapAreRefused():
    """Of 250 non-BUNDLE m-lines, 16 are planned, 4 get a transport."""
    offer = negotiate.parseOffer(craftedOffer(250))
    sections = negotiate.planPublish(offer, PREFS, maxLines=16)
    assert len(sections) == 250
    assert sum(s.active for s in sections) == 16
    assert all(s.rejected and s.codec is None for s in sections[16:])
    groups = negotiate.transportGroups(offer, sections, maxTransports=4)
    assert [[s.mid for s in g] for g in groups] == [["0"], ["1"], ["2"], ["3"]]
    assert sum(not s.rejected for s in sections) == 4
    assert sum(s.active for s in sections) == 4


def test_transportCapAlone():
    """Without the transport cap, the m-line cap still bounds the transports."""
    offer = negotiate.parseOffer(craftedOffer(250))
    sections = negotiate.planPublish(offer, PREFS, maxLines=16)
    assert len(negotiate.transportGroups(offer, sections, maxTransports=1000)) == 16


def test_bundledOfferHasOneTransport():
    offer = negotiate.parseOffer(craftedOffer(250, bundle=True))
    sections = negotiate.planPublish(offer, PREFS, maxLines=16)
    groups = negotiate.transportGroups(offer, sections, maxTransports=4)
    assert len(groups) == 1 and len(groups[0]) == 16


def test_playerLinesWithNothingToCarryGetNoTransport():
    """
    A player's m-lines past the one per kind it is sent are inactive: without
    BUNDLE they are refused rather than given sockets of their own.
    """
    offer = negotiate.parseOffer(craftedOffer(250, direction="recvonly",
                                              kinds=("video", "audio")))
    sections = negotiate.planPlay(offer, {"video": "H264", "audio": "opus"}, PREFS)
    groups = negotiate.transportGroups(offer, sections, maxTransports=4)
    assert [[s.mid for s in g] for g in groups] == [["0"], ["1"]]
    assert [s.kind for g in groups for s in g] == ["video", "audio"]
    assert sum(not s.rejected for s in sections) == 2


@asyncTest()
async def test_engineBindsCappedSockets():
    """
    A 250 m-line non-BUNDLE offer, answered: 4 sockets bound (one per
    transport on the one address), every other m-line refused with port 0.
    """
    engine = makeEngine()
    session = engine.publish(Request("many", craftedOffer(250)), Listener())
    try:
        assert len(session.uniqueTransports) == 4
        answer = await asyncio.wait_for(
            session.answer.asFuture(asyncio.get_running_loop()), 10)
        ports = answeredPorts(answer)
        assert len(ports) == 250
        assert all(ports[:4]) and not any(ports[4:])
        assert socketsOf(session) == 4
    finally:
        session.stop()
        await engine.close()


# The pre-scan: attributes aiortc's parser is quadratic in

def _ssrcs(n):
    return "".join(f"a=ssrc:{i} cname:x\r\n" for i in range(n))


def _codecs(n, feedback=0):
    return ("".join(f"a=rtpmap:{i} VP8/90000\r\n" for i in range(n))
            + "a=rtcp-fb:* nack\r\n" * feedback)


@pytest.mark.parametrize("offer, what", [
    (craftedOffer(300), "more than 256 m-lines"),
    (craftedOffer(1, media=_ssrcs(100)), "more than 64 a=ssrc lines"),
    (craftedOffer(1, media=_codecs(300)), "more than 256 a=rtpmap lines"),
    # 200 codecs and 10 '*' lines: 2000 feedback objects from 210 lines.
    (craftedOffer(1, media=_codecs(200, feedback=10)), "more than 1024 a=rtcp-fb entries"),
    (craftedOffer(1, media="a=rtcp-fb:102 nack\r\n" * 1100), "more than 1024 a=rtcp-fb"),
    (craftedOffer(1, session="a=fingerprint:sha-256 AA\r\n" * 100),
     "more than 64 a=fingerprint lines"),
    (craftedOffer(1, session="a=group:BUNDLE 0\r\n" * 100), "more than 64 a=group lines"),
])
def test_offerRefusedBeforeParsing(offer, what):
    with pytest.raises(StreamError) as caught:
        limits.checkOffer(offer, Settings())
    assert caught.value.info.startswith("Invalid SDP offer: more than ")
    assert what in caught.value.info


def test_ordinaryOffersPass():
    """What browsers send fits: a few dozen codecs, feedback, simulcast SSRCs."""
    media = (_codecs(40, feedback=0) + "".join(f"a=rtcp-fb:{i} nack\r\na=rtcp-fb:{i} nack pli\r\n"
                                               for i in range(40))
             + _ssrcs(12) + "a=ssrc-group:FID 0 1\r\n")
    limits.checkOffer(craftedOffer(2, bundle=True, kinds=("audio", "video"), media=media),
                      Settings())


def test_hugeFmtpIsLinear():
    """A 60 KB fmtp is one parse of its text: accepted, its codec planned."""
    fmtp = ";".join(f"x{i}={i}" for i in range(6000))
    text = craftedOffer(1).replace("profile-level-id=42e01f", "profile-level-id=42e01f;" + fmtp)
    assert len(text) > 60000
    limits.checkOffer(text, Settings())
    sections = negotiate.planPublish(negotiate.parseOffer(text), PREFS)
    assert sections[0].name == "H264" and len(sections[0].codec.parameters) == 6002


def test_refusedOfferBindsNothing():
    engine = makeEngine()
    with pytest.raises(StreamError):
        engine.publish(Request("ssrcs", craftedOffer(1, media=_ssrcs(100))), Listener())
    assert not engine.sessions and not engine.quota.claims


# The quota: a fair share of the port range

def quota(**values):
    return limits.Quota(Settings({key: str(value) for key, value in values.items()}), 40, 1)


def test_connectionShare():
    q = quota()  # 10% of 40 ports: 4 per connection
    q.claim("s1", "alice", "10.0.0.1", 3)
    q.claim("s2", "alice", "10.0.0.1", 1)
    with pytest.raises(StreamError, match="port share of this connection used up: at most 4"):
        q.claim("s3", "alice", "10.0.0.1", 1)
    q.claim("s4", "bob", "10.0.0.1", 4)
    q.release("s1")
    q.claim("s3", "alice", "10.0.0.1", 3)
    q.release("never claimed")
    assert q.connectionPorts == {"alice": 4, "bob": 4}


def test_addressShare():
    """One address may hold half of the range: the other half stays for others."""
    q = quota()
    for n in range(5):
        q.claim(f"s{n}", f"c{n}", "10.0.0.1", 4)
    with pytest.raises(StreamError, match="port share of this address used up: at most 20"):
        q.claim("s5", "c5", "10.0.0.1", 1)
    for n in range(5):
        q.claim(f"t{n}", f"d{n}", "10.0.0.2", 4)
    for n in range(5):
        q.release(f"s{n}")
    assert dict(q.addressPorts) == {"10.0.0.2": 20}
    assert dict(q.addressSessions) == {"10.0.0.2": 5}
    assert not q.connectionPorts.get("c0")


def test_sessionCounts():
    q = quota(media_max_sessions_per_address=2, media_max_sessions=3)
    q.claim("s1", "c1", "10.0.0.1", 1)
    q.claim("s2", "c2", "10.0.0.1", 1)
    with pytest.raises(StreamError, match="Too many media sessions from this address: at most 2"):
        q.claim("s3", "c3", "10.0.0.1", 1)
    q.claim("s3", "c3", "10.0.0.2", 1)
    with pytest.raises(StreamError, match="Server media capacity reached: at most 3"):
        q.claim("s4", "c4", "10.0.0.3", 1)


def test_zeroSessionLimitsAreNoLimits():
    q = limits.Quota(Settings({"media_max_sessions_per_address": "0",
                               "media_max_sessions": "0"}), 0, 1)  # no port range
    for n in range(1200):  # over both defaults
        q.claim(f"s{n}", f"c{n}", "10.0.0.1", 1)
    assert q.addressSessions["10.0.0.1"] == 1200


def test_anyPortRangeBoundsSessionsOnly():
    q = limits.Quota(Settings(), 0, 1)
    q.claim("s1", "c1", "10.0.0.1", 1000)
    q.claim("s2", "c1", "10.0.0.1", 1000)


def test_leastShareIsOneTransport():
    """A tiny range still lets each connection have a transport."""
    q = limits.Quota(Settings(), 5, 2)  # 10% of 5 ports is 0; a transport binds 2
    assert q.share(10) == 2


@asyncTest()
async def test_engineRefusesPastTheShareAndFreesOnClose():
    """
    With 10 ports a connection may hold one: its second publish is refused
    before any socket is bound, another connection's is not, and the ports
    of a stopped session count until they are closed.
    """
    first = random.randrange(40000, 60000, 10)
    engine = makeEngine(media_port_from=first, media_port_to=first + 9)
    alice, bob = Listener(), Listener()
    alice.connection, bob.connection = "alice", "bob"
    offer = craftedOffer(2, bundle=True, kinds=("audio", "video"))
    one = engine.publish(Request("one", offer), alice)
    try:
        with pytest.raises(StreamError, match="connection used up: at most 1 ports"):
            engine.publish(Request("two", offer), alice)
        assert engine.sessions == {one}
        other = engine.publish(Request("other", offer), bob)
        await asyncio.wait_for(other.answer.asFuture(asyncio.get_running_loop()), 10)
        assert socketsOf(other) == 1
        one.stop()
        with pytest.raises(StreamError):
            engine.publish(Request("three", offer), alice)  # still closing
        await waitUntil(lambda: "alice" not in engine.quota.connectionPorts, 5,
                        "alice's ports to be released")
        again = engine.publish(Request("again", offer), alice)
        assert engine.sessions == {other, again}
    finally:
        await engine.close()
