"""
Hostile WebRTC offers over the real WebSocket port, while two bystanders
keep a room going: one connection cannot take the media port range (nor
freeze the server with an offer that is costly to parse) from the others.
"""

import json
import random
import uuid

from tests.media.offers import answeredPorts, craftedOffer
from tests.support.bystanders import Bystanders
from tests.support.rooms import MEDIA, SKIP, streamRequest
from tests.support.wsclient import Client

PORTS = 40  # the whole media range: two hostile offers would exhaust it unbounded
RSS_GROWTH = 60 << 20


async def reply(client, mediaSessionId, timeout=15.0) -> dict:
    """The answer to a publish, or its status: whichever comes first."""
    while True:
        frame = await client.next(timeout)
        if frame["message"] == "setRemoteSDP" and frame["data"][0] == mediaSessionId:
            return frame
        if frame["message"] == "notifyStreamStatusEvent" and \
                frame["data"][0]["mediaSessionId"] == mediaSessionId:
            return frame
        assert frame["message"] in SKIP, frame


def rtcpFeedbackBomb() -> str:
    # Fits in a message; aiortc alone would make 375,000 feedback objects of it.
    return craftedOffer(1, media="".join(f"a=rtpmap:{i} V/9\r\n" for i in range(250))
                        + "a=rtcp-fb:* n\r\n" * 1500)


async def test_hostile_offers_cannot_take_the_media_ports(serverFactory):
    first = random.randrange(20000, 30000, PORTS)
    server = serverFactory(settings={**MEDIA, "media_port_from": str(first),
                                     "media_port_to": str(first + PORTS - 1)})
    async with Bystanders(server) as room:
        rss = server.rss()
        mallory = await Client.open(server.wsURL, "mallory")
        hostile = f"hostile-{uuid.uuid4().hex[:6]}"
        await mallory.join(hostile)
        answers, refusals = [], []
        # 19 non-BUNDLE m-lines took 19 ports each for the ICE timeout: two
        # such offers were the whole range. 250 fit in one message too.
        offers = [craftedOffer(250 if n % 3 == 2 else 19) for n in range(36)]
        offers += [craftedOffer(300), rtcpFeedbackBomb(),
                   craftedOffer(1, media="".join(f"a=ssrc:{i} c:x\r\n" for i in range(3000)))]
        for n, sdp in enumerate(offers):
            body = streamRequest(f"{hostile}-mallory-{n}", hostile, sdp, True)
            assert len(json.dumps({"message": "publishStream", "data": [body]})) < 65536
            await mallory.send("publishStream", body)
            frame = await reply(mallory, body["mediaSessionId"])
            if frame["message"] == "setRemoteSDP":
                answers.append(frame["data"][1])
            else:
                assert frame["data"][0]["status"] == "FAILED"
                refusals.append(frame["data"][0]["info"])

        # One answer, with four transports (one port each here) of its 19 m-lines.
        assert len(answers) == 1
        ports = answeredPorts(answers[0])
        assert len(ports) == 19 and sum(1 for port in ports if port) == 4
        assert refusals[:35] == ["Media port share of this connection used up: at most 4 ports"] * 35
        assert refusals[35:] == ["Invalid SDP offer: more than 256 m-lines",
                                 "Invalid SDP offer: more than 1024 a=rtcp-fb entries",
                                 "Invalid SDP offer: more than 64 a=ssrc lines"]

        await room.assertHealthy()
        # A new honest publisher and player, in another room, still get media.
        async with Bystanders(server) as newcomers:
            await newcomers.assertHealthy()
        assert server.rss() - rss < RSS_GROWTH, (rss, server.rss())
        await mallory.close()

    log = server.log()
    # Logged once (rate-limited), not once per refusal.
    assert 1 <= log.count("Media port share of this connection used up") <= 3
