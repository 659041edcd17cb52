"""
A headless Chromium player of the SDK's Room API on the `wifi` profile, as
CI runs it: the probe proves the profile, an aiortc publisher's stamped
picture reaches the page through its own impaired link (its own network
namespace and address), and the page reads the stamps back. Only what must
hold whatever the machine's load is asserted; the figures are printed.
"""

import asyncio
import json

from tests.netlab.chromium import ChromiumRoomRun
from tests.netlab.lab import NetLab, playerAddress
from tests.netlab.media import WcsRoom, clients
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
