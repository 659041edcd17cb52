"""
A headless Chromium player of the SDK's Room API on the `wifi` profile, as
CI runs it: the probe proves the profile, an aiortc publisher's stamped
picture reaches the page through its own impaired link (its own network
namespace and address), and the page reads the stamps back; and a Chromium player of Janus's
VideoRoom in a clean lab. Only what must hold whatever the machine's load
is asserted; the figures are printed.
"""

import asyncio
import json

import pytest

from tests.netlab import janus
from tests.netlab.chromium import ChromiumRoomRun
from tests.netlab.janus_chromium import JanusChromiumRoomRun
from tests.netlab.lab import NetLab, playerAddress
from tests.netlab.media import BITRATE, WcsRoom, clients
from tests.netlab.profiles import PROFILES, proveInLab
from tests.support.rooms import MEDIA
from tests.web.browser import requireChromium

SECONDS = 15


async def test_chromium_player_on_wifi_is_measured_through_its_link(serverFactory):
    requireChromium()
    profile = PROFILES["wifi"]
    labClients = clients(players=1)
    with NetLab() as lab:
        lab.setLinks(profile.links(labClients))
        report, problems = await asyncio.to_thread(proveInLab, lab, profile, labClients)
        assert problems == []
        with lab.entered():
            server = serverFactory(settings=MEDIA, enable=("ws", "http"))
        run = ChromiumRoomRun("vp8", players=1, seconds=SECONDS, width=320, height=240,
                              httpURL=f"http://127.0.0.1:{server.ports['http']}")
        with lab.entered():
            result = await asyncio.wait_for(run.run(WcsRoom(server), lab), SECONDS + 150)
    print("wifi vp8 chromium", json.dumps(result))
    assert result["publisherFps"] > 0 and result["uplinkKbit"] > 0
    (player,) = result["perPlayer"]
    # Its media went through its own link: the impairer counted both ways,
    # and Chromium's selected candidate is the player's address.
    assert player["downlinkKbit"] > 100 and player["uplinkKbit"] > 0
    assert player["stats"]["localAddress"] == playerAddress(0)
    assert result["unmatchedPackets"] == 0
    assert player["fps"] > 0 and player["stats"]["framesDecoded"] > 0
    assert player["delayP50"] is not None  # stamps were read back from the page's frames
    # A frame crosses two links (publisher up, player down) of 30 +- 10 ms:
    # none arrives sooner than 40 ms; the page's clock is known within clockErrorMs.
    assert player["delayP50"] >= 40 - player["clockErrorMs"]
    # Split at the frame's arrival: the links' share, then the browser's.
    assert player["arrivalP50"] >= 40 - player["clockErrorMs"]
    assert player["browserP50"] > 0


async def test_chromium_player_of_janus_connects_through_its_own_link(tmp_path):
    """
    Janus's VideoRoom with a Chromium player in its own namespace: ICE used to
    fail (Janus's answers to the checks went to lo, tests/netlab/janus_chromium.py).
    A clean lab; what is asserted is that media flows on the player's link.
    """
    requireChromium()
    if not janus.available():
        pytest.skip("Debian's janus is not installed")
    labClients = clients(players=1)
    with NetLab() as lab:
        lab.setLinks(PROFILES["clean"].links(labClients))
        with lab.entered():
            server = janus.JanusServer(tmp_path / "janus").start()
        try:
            run = JanusChromiumRoomRun("vp8", players=1, seconds=5, width=320, height=240)
            with lab.entered():
                room = await janus.JanusRoom(server, "vp8", BITRATE).open()
                result = await asyncio.wait_for(run.run(room, lab), 150)
        finally:
            server.stop()
    print("clean vp8 janus chromium", json.dumps(result))
    (player,) = result["perPlayer"]
    assert player["stats"]["localAddress"] == playerAddress(0)
    assert player["downlinkKbit"] > 100 and result["unmatchedPackets"] == 0
    assert player["stats"]["framesDecoded"] > 0 and player["delayP50"] is not None
